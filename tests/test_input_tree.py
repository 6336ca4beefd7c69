"""Install trees are inputs: .treeinfo may not name a file outside the tree (issue 27).

A hostile tree (a mirror, a shared mount, a crafted ISO) once made `pxe` copy secrets.yaml and
the CA key into the PXE tree. Paths must be relative, plain and stay inside the tree after
symlinks are resolved; a Rock Ridge symlink in an ISO is refused.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder.core.run import Runner
from builder.stages import installsrc
from tests.test_images_support import TREEINFO, make_tree


def _treeinfo(root: Path, kernel: str = "images/pxeboot/vmlinuz",
              repo: str = "BaseOS") -> None:
    text = TREEINFO.format(name="Red Hat Enterprise Linux", version="8.10")
    text = text.replace("kernel = images/pxeboot/vmlinuz", f"kernel = {kernel}")
    text = text.replace("repository = BaseOS", f"repository = {repo}")
    (root / ".treeinfo").write_text(text)


@pytest.mark.parametrize("kernel", [
    "/etc/hostname", "../secret/secrets.yaml", "images/../../pki/ca.key", "images/./x",
    "images//vmlinuz", "images/pxe boot/vmlinuz", "images/%2e%2e/x", "a" * 300,
])
def test_treeinfo_path_outside_or_odd_is_refused(tmp_path: Path, kernel: str) -> None:
    tree = make_tree(tmp_path / "tree")
    _treeinfo(tree, kernel=kernel)
    with pytest.raises(installsrc.SourceError, match="not a path inside the tree"):
        installsrc.load(str(tree))


def test_variant_repository_outside_is_refused(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    _treeinfo(tree, repo="../../etc")
    with pytest.raises(installsrc.SourceError, match="variant-BaseOS repository"):
        installsrc.load(str(tree))


def test_symlink_leaving_the_tree_is_refused_and_nothing_copied(tmp_path: Path) -> None:
    secret = tmp_path / "secrets.yaml"
    secret.write_text("superuser: {password: hunter2}\n")
    tree = make_tree(tmp_path / "tree")
    kernel = tree / "images" / "pxeboot" / "vmlinuz"
    kernel.unlink()
    kernel.symlink_to(secret)
    with pytest.raises(installsrc.SourceError, match="outside the tree"):
        installsrc.load(str(tree))
    src = installsrc.parse_treeinfo((tree / ".treeinfo").read_text(), str(tree))
    dest = tmp_path / "pxe"
    with pytest.raises(installsrc.SourceError, match="outside the tree"):
        installsrc.copy_boot_files(src, dest, Runner())
    assert not any(p.is_file() and p.read_bytes().startswith(b"superuser")
                   for p in dest.rglob("*"))


def test_treeinfo_itself_a_symlink_out_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_tree(elsewhere)
    tree = make_tree(tmp_path / "tree")
    (tree / ".treeinfo").unlink()
    (tree / ".treeinfo").symlink_to(elsewhere / ".treeinfo")
    with pytest.raises(installsrc.SourceError, match="outside the tree"):
        installsrc.load(str(tree))


def test_symlink_inside_the_tree_is_followed(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    (tree / "boot").mkdir()
    os.rename(tree / "images" / "pxeboot" / "vmlinuz", tree / "boot" / "vmlinuz")
    (tree / "images" / "pxeboot" / "vmlinuz").symlink_to("../../boot/vmlinuz")
    src = installsrc.load(str(tree))
    kernel, _ = installsrc.copy_boot_files(src, tmp_path / "pxe", Runner())
    assert kernel.read_bytes() == (tree / "boot" / "vmlinuz").read_bytes()


@pytest.mark.integration
def test_iso_with_a_rock_ridge_symlink_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "ca.key"
    secret.write_text("-----BEGIN PRIVATE KEY-----\n")
    tree = make_tree(tmp_path / "tree")
    kernel = tree / "images" / "pxeboot" / "vmlinuz"
    kernel.unlink()
    kernel.symlink_to(secret)
    iso = tmp_path / "dvd.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-R", "-o", str(iso), str(tree)],
                   check=True, capture_output=True)
    src = installsrc.load(str(iso))
    dest = tmp_path / "pxe"
    with pytest.raises(installsrc.SourceError, match="is a symlink"):
        installsrc.copy_boot_files(src, dest, Runner())
    assert not any(p.is_symlink() or (p.is_file() and b"PRIVATE" in p.read_bytes())
                   for p in dest.rglob("*"))
