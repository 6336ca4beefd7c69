"""The image formats a cluster file and `pgha-build images --format` may name: names and help.

This is the user-facing list (the model's Literal, the JSON schema, the CLI's help and parsing);
how each format is made is one class per format in builder/images/formats.py, and a test checks
that both name the same formats. Adding a format: one line here, one class there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

# name -> help, in the order the CLI lists them.
TABLE: dict[str, str] = {
    "qcow2": "compressed, for KVM and OpenStack",
    "raw": "sparse",
    "vmdk": "streamOptimized, for VMware",
    "vhdx": "dynamic, for Hyper-V",
    "ova": "OVF appliance around the vmdk",
}
FORMATS: tuple[str, ...] = tuple(TABLE)
if TYPE_CHECKING:
    Format = str
else:
    Format = Literal[FORMATS]
Compression = Literal["zlib", "zstd"]


def cli_help() -> str:
    """The --format help: every format from the table."""
    return ("Comma-separated list of " + "; ".join(f"{n}: {h}" for n, h in TABLE.items())
            + ". Default: image.formats (qcow2).")


def parse_formats(text: str) -> list[Format]:
    """`qcow2,ova` -> ["qcow2", "ova"]; unknown names raise a one-line error."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ValueError(f"unknown image format(s) {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))
