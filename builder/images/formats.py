"""Disk image formats: one class per format, each with its convert (and pack) steps.

Which formats exist, with their help, is the model's list (builder/model/imageformats.py); how
each is made is its class here, found by name through `of()`, so the images stage names no
format. qcow2 is compressed with zlib by default: any qemu-img/libvirt from the last decade
reads it (RHEL 8.0-8.5 ship qemu 2.12/4.2); zstd (`compression="zstd"`) is about four times
faster to write but needs qemu >= 5.1 wherever the image is read. vmdk is streamOptimized (what
OVAs and VMware's importers expect), vhdx dynamic (Hyper-V), raw sparse; the OVA packs that
vmdk with an OVF descriptor (builder.images.ova).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

from builder.core.context import Context
from builder.core.errors import ValidationFailed
from builder.core.fsutil import replacing
from builder.core.run import Runner, quote
from builder.images import ova
from builder.images.common import ImageOptions, image_path, work_dir
from builder.model.imageformats import FORMATS, Compression, Format


def info(runner: Runner, path: Path, fmt: str) -> dict[str, object]:
    proc = runner.run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)])
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def virtual_size(runner: Runner, path: Path, fmt: str = "qcow2") -> int:
    return int(info(runner, path, fmt)["virtual-size"])  # type: ignore[call-overload]


class DiskFormat:
    """A format qemu-img writes directly: convert the base disk, verify, move into place."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]]  # qemu-img convert's output options
    disk: ClassVar[str]  # the qemu format of the disk file it writes
    checkable: ClassVar[bool] = True  # qemu-img check supports it
    extra_copies: ClassVar[int] = 1  # output copies counted by the disk-space preflight

    def output_options(self, compression: Compression = "zlib") -> list[str]:
        return [o.format(compression=compression) for o in self.options]

    def convert_argv(self, src: Path, dest: Path, src_format: str = "qcow2",
                     compression: Compression = "zlib") -> list[str]:
        return ["qemu-img", "convert", "-f", src_format, *self.output_options(compression),
                str(src), str(dest)]

    def verify(self, runner: Runner, path: Path, expect_size: int) -> None:
        """qemu-img info (format, virtual size) and, where supported, qemu-img check."""
        data = info(runner, path, self.disk)
        if data.get("format") != self.disk or data.get("virtual-size") != expect_size:
            raise ValidationFailed(
                f"{path.name}: qemu-img reports {data.get('format')} of "
                f"{data.get('virtual-size')} bytes, expected {self.disk} of {expect_size}")
        if self.checkable:
            runner.run(["qemu-img", "check", "-q", "-f", self.disk, str(path)])

    def convert(self, runner: Runner, src: Path, dest: Path,
                compression: Compression = "zlib") -> None:
        """Convert into a temporary file, verify it, then move it into place."""
        with replacing(dest) as tmp:
            runner.run(self.convert_argv(src, tmp, compression=compression))
            self.verify(runner, tmp, virtual_size(runner, src))

    def key_extra(self, ctx: Context, opts: ImageOptions) -> object:
        """What besides the base disk decides this format's output (its cache key)."""
        return None

    def make(self, ctx: Context, opts: ImageOptions, base: Path) -> Path:
        dest = image_path(ctx, opts.role, self.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.convert(ctx.runner, base, dest, opts.compression)
        return dest

    def dry_run(self, ctx: Context, opts: ImageOptions, base: Path) -> list[str]:
        dest = image_path(ctx, opts.role, self.name)
        return [quote(self.convert_argv(base, dest, compression=opts.compression))]


class Qcow2(DiskFormat):
    name = "qcow2"
    options = ("-c", "-O", "qcow2", "-o", "compat=1.1,compression_type={compression}")
    disk = "qcow2"

    def key_extra(self, ctx: Context, opts: ImageOptions) -> object:
        return opts.compression


class Raw(DiskFormat):
    name = "raw"
    options = ("-O", "raw")
    disk = "raw"
    checkable = False


class Vmdk(DiskFormat):
    name = "vmdk"
    options = ("-O", "vmdk", "-o", "subformat=streamOptimized")
    disk = "vmdk"


class Vhdx(DiskFormat):
    name = "vhdx"
    options = ("-O", "vhdx", "-o", "subformat=dynamic")
    disk = "vhdx"


class Ova(Vmdk):
    """The streamOptimized vmdk, packed with an OVF descriptor and a SHA256 manifest; checked
    as its vmdk (qemu-img cannot read the OVA itself). The vmdk is scratch in .work/."""

    name = "ova"
    extra_copies = 2

    def key_extra(self, ctx: Context, opts: ImageOptions) -> object:
        image = ctx.cluster.image
        return (image.vcpus, image.memory_mib, ctx.epoch)

    def make(self, ctx: Context, opts: ImageOptions, base: Path) -> Path:
        dest = image_path(ctx, opts.role, self.name)
        dest.parent.mkdir(parents=True, exist_ok=True)
        vmdk = work_dir(ctx, opts.role) / "ova-disk.vmdk"
        self.convert(ctx.runner, base, vmdk)
        image = ctx.cluster.image
        machine = ova.Machine(name=f"{ctx.cluster.name}-{opts.role}", vcpus=image.vcpus,
                              memory_mib=image.memory_mib,
                              capacity_bytes=virtual_size(ctx.runner, base),
                              description=f"pgha {opts.role} role image of cluster "
                                          f"{ctx.cluster.name}")
        try:
            ova.write_ova(dest, vmdk, machine, ctx.epoch)
        finally:
            vmdk.unlink(missing_ok=True)
        return dest

    def dry_run(self, ctx: Context, opts: ImageOptions, base: Path) -> list[str]:
        vmdk = work_dir(ctx, opts.role) / "ova-disk.vmdk"
        dest = image_path(ctx, opts.role, self.name)
        return [quote(self.convert_argv(base, vmdk)),
                f"# then pack {dest} (OVF descriptor, that vmdk, SHA256 manifest)"]


# One instance per class above; every name of the model's list must have exactly one.
REGISTRY: dict[str, DiskFormat] = {cls.name: cls() for cls in (Qcow2, Raw, Vmdk, Vhdx, Ova)}
CHECKABLE = tuple(name for name, f in REGISTRY.items() if f.checkable)
if tuple(REGISTRY) != FORMATS:  # pragma: no cover - caught by tests/test_registries.py
    raise RuntimeError("builder/model/imageformats.py and builder/images/formats.py disagree")


def of(name: Format | str) -> DiskFormat:
    return REGISTRY[name]
