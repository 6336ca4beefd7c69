"""Disk image formats: the qemu-img command that makes each one, and how to check the result.

qcow2 is compressed with zlib by default: any qemu-img/libvirt from the last decade reads it
(RHEL 8.0-8.5 ship qemu 2.12/4.2). zstd (`compression="zstd"`) is about four times faster to
write but needs qemu >= 5.1 wherever the image is read. vmdk is streamOptimized (what OVAs and
VMware's importers expect), vhdx dynamic (Hyper-V), raw sparse. `ova` is built by builder.images.ova
from the streamOptimized vmdk.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from builder.core.errors import ValidationFailed
from builder.core.run import Runner

Format = Literal["qcow2", "raw", "vmdk", "vhdx", "ova"]
FORMATS: tuple[Format, ...] = ("qcow2", "raw", "vmdk", "vhdx", "ova")
Compression = Literal["zlib", "zstd"]
# qemu-img check does not support raw.
CHECKABLE = ("qcow2", "vmdk", "vhdx")


def parse_formats(text: str) -> list[Format]:
    """`qcow2,ova` -> ["qcow2", "ova"]; unknown names raise a one-line error."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ValueError(f"unknown image format(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))  # type: ignore[arg-type]


def output_options(fmt: Format, compression: Compression = "zlib") -> list[str]:
    """qemu-img convert's output options for a format (ova: its vmdk)."""
    if fmt == "qcow2":
        return ["-c", "-O", "qcow2", "-o", f"compat=1.1,compression_type={compression}"]
    if fmt == "raw":
        return ["-O", "raw"]
    if fmt in ("vmdk", "ova"):
        return ["-O", "vmdk", "-o", "subformat=streamOptimized"]
    return ["-O", "vhdx", "-o", "subformat=dynamic"]


def convert_argv(src: Path, dest: Path, fmt: Format, src_format: str = "qcow2",
                 compression: Compression = "zlib") -> list[str]:
    return ["qemu-img", "convert", "-f", src_format, *output_options(fmt, compression),
            str(src), str(dest)]


def disk_format(fmt: Format) -> str:
    """The qemu format name of the disk file a format produces."""
    return "vmdk" if fmt == "ova" else fmt


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
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        runner.run(convert_argv(src, tmp, fmt, compression=compression))
        verify(runner, tmp, disk_format(fmt), virtual_size(runner, src))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
