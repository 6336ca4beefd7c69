"""Test helpers for the image, PXE and serve tests: a minimal RHEL 8 install tree."""

from __future__ import annotations

from pathlib import Path

TREEINFO = """[header]
type = productmd.treeinfo
version = 1.2

[release]
name = {name}
short = RHEL
version = {version}

[general]
family = {name}
version = {version}
arch = x86_64

[tree]
arch = x86_64
build_timestamp = 1650000000
platforms = x86_64
variants = AppStream,BaseOS

[images-x86_64]
kernel = images/pxeboot/vmlinuz
initrd = images/pxeboot/initrd.img

[variant-AppStream]
id = AppStream
repository = AppStream

[variant-BaseOS]
id = BaseOS
repository = BaseOS
"""


def make_tree(root: Path, name: str = "Red Hat Enterprise Linux", version: str = "8.10") -> Path:
    """A minimal install tree: .treeinfo plus images/pxeboot/vmlinuz and initrd.img."""
    (root / "images" / "pxeboot").mkdir(parents=True, exist_ok=True)
    (root / ".treeinfo").write_text(TREEINFO.format(name=name, version=version))
    (root / "images" / "pxeboot" / "vmlinuz").write_bytes(b"kernel " * 100)
    (root / "images" / "pxeboot" / "initrd.img").write_bytes(b"initrd " * 100)
    return root
