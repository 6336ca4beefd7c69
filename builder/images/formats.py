"""Disk image formats: the qemu-img command that makes each one, and how to check the result.

qcow2 is compressed with zlib by default: any qemu-img/libvirt from the last decade reads it
(RHEL 8.0-8.5 ship qemu 2.12/4.2). zstd (`compression="zstd"`) is about four times faster to
write but needs qemu >= 5.1 wherever the image is read. vmdk is streamOptimized (what OVAs and
VMware's importers expect), vhdx dynamic (Hyper-V), raw sparse. `ova` is built by builder.images.ova
from the streamOptimized vmdk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from builder.core.errors import ValidationFailed
from builder.core.fsutil import replacing
from builder.core.run import Runner


@dataclass(frozen=True)
class ImageFormat:
    """One output format: what qemu-img writes and how the result is checked."""

    name: str
    help: str
    options: tuple[str, ...]  # qemu-img convert's output options ({compression}: qcow2's)
    disk: str  # the qemu format of the disk file it produces
    checkable: bool  # qemu-img check supports it
    extra_copies: int = 1  # output copies counted by the disk-space preflight


# Adding a format is one entry here: the model's Literal, the CLI help and the preflight follow.
TABLE: tuple[ImageFormat, ...] = (
    ImageFormat("qcow2", "compressed, for KVM and OpenStack",
                ("-c", "-O", "qcow2", "-o", "compat=1.1,compression_type={compression}"),
                "qcow2", True),
    ImageFormat("raw", "sparse", ("-O", "raw"), "raw", False),
    ImageFormat("vmdk", "streamOptimized, for VMware",
                ("-O", "vmdk", "-o", "subformat=streamOptimized"), "vmdk", True),
    ImageFormat("vhdx", "dynamic, for Hyper-V", ("-O", "vhdx", "-o", "subformat=dynamic"),
                "vhdx", True),
    ImageFormat("ova", "OVF appliance around the vmdk",
                ("-O", "vmdk", "-o", "subformat=streamOptimized"), "vmdk", False, 2),
)
BY_NAME = {f.name: f for f in TABLE}
FORMATS: tuple[str, ...] = tuple(BY_NAME)
if TYPE_CHECKING:
    Format = str
else:
    Format = Literal[FORMATS]
Compression = Literal["zlib", "zstd"]
# qemu-img check does not support raw (nor the OVA, which is checked as its vmdk).
CHECKABLE = tuple(f.name for f in TABLE if f.checkable)


def cli_help() -> str:
    """The --format help: every format from the table."""
    return ("Comma-separated list of " + "; ".join(f"{f.name}: {f.help}" for f in TABLE)
            + ". Default: image.formats (qcow2).")


def parse_formats(text: str) -> list[Format]:
    """`qcow2,ova` -> ["qcow2", "ova"]; unknown names raise a one-line error."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ValueError(f"unknown image format(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def output_options(fmt: Format, compression: Compression = "zlib") -> list[str]:
    """qemu-img convert's output options for a format (ova: its vmdk)."""
    return [o.format(compression=compression) for o in BY_NAME[fmt].options]


def convert_argv(src: Path, dest: Path, fmt: Format, src_format: str = "qcow2",
                 compression: Compression = "zlib") -> list[str]:
    return ["qemu-img", "convert", "-f", src_format, *output_options(fmt, compression),
            str(src), str(dest)]


def disk_format(fmt: Format) -> str:
    """The qemu format name of the disk file a format produces."""
    return BY_NAME[fmt].disk


def info(runner: Runner, path: Path, fmt: str) -> dict[str, object]:
    proc = runner.run(["qemu-img", "info", "--output=json", "-f", fmt, str(path)])
    data: dict[str, object] = json.loads(proc.stdout)
    return data


def virtual_size(runner: Runner, path: Path, fmt: str = "qcow2") -> int:
    return int(info(runner, path, fmt)["virtual-size"])  # type: ignore[call-overload]


def verify(runner: Runner, path: Path, fmt: str, expect_size: int) -> None:
    """qemu-img info (format, virtual size) and, where supported, qemu-img check."""
    data = info(runner, path, fmt)
    if data.get("format") != fmt or data.get("virtual-size") != expect_size:
        raise ValidationFailed(
            f"{path.name}: qemu-img reports {data.get('format')} of "
            f"{data.get('virtual-size')} bytes, expected {fmt} of {expect_size}")
    if fmt in CHECKABLE:
        runner.run(["qemu-img", "check", "-q", "-f", fmt, str(path)])


def convert(runner: Runner, src: Path, dest: Path, fmt: Format,
            compression: Compression = "zlib") -> None:
    """Convert into a temporary file, verify it, then move it into place."""
    with replacing(dest) as tmp:
        runner.run(convert_argv(src, tmp, fmt, compression=compression))
        verify(runner, tmp, disk_format(fmt), virtual_size(runner, src))
