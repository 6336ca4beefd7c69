"""RHEL 8 install sources: a DVD ISO, an install tree folder or an install tree URL.

Reads the tree's productmd `.treeinfo` (from the folder, from inside the ISO with xorriso, or over
HTTP), checks that it is RHEL 8 (or a RHEL 8 rebuild) for x86_64, finds the kernel and initrd, and
computes the source's identity for cache keys: the .treeinfo text plus the kernel's and initrd's
size and sha256 (from the tree for folders, from .treeinfo's [checksums] otherwise, plus the ISO
size). No model or CLI here: callers pass the location.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from builder.core.errors import PghaError
from builder.core.fsutil import replacing, sha256_file
from builder.core.run import Runner

RHEL8_FAMILIES = ("Red Hat Enterprise Linux", "CentOS Stream", "CentOS Linux", "Rocky Linux",
                  "AlmaLinux")
DEFAULT_KERNEL = "images/pxeboot/vmlinuz"
DEFAULT_INITRD = "images/pxeboot/initrd.img"
# A path inside the tree as .treeinfo may name it: relative, plain characters, no `.`/`..`.
TREE_PATH = re.compile(r"[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*")
TREE_PATH_MAX = 255
URL_TIMEOUT_S = 20

Kind = Literal["dir", "iso", "url"]


class SourceError(PghaError):
    """The install source is missing, unreadable or not RHEL 8."""


@dataclass(frozen=True)
class InstallSource:
    location: str
    kind: Kind
    name: str
    version: str
    arch: str
    kernel: str
    initrd: str
    variants: tuple[str, ...]
    treeinfo: str
    identity: dict[str, object] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        return f"{self.name} {self.version} {self.arch} ({self.kind} {self.location})"


def kind_of(location: str) -> Kind:
    if location.startswith(("http://", "https://", "ftp://")):
        return "url"
    return "iso" if location.lower().endswith(".iso") else "dir"


def read_treeinfo_text(location: str, runner: Runner | None = None) -> str:
    """The .treeinfo text of the source; SourceError with what to do when it cannot be read."""
    kind = kind_of(location)
    if kind == "url":
        return _fetch(location.rstrip("/") + "/.treeinfo").decode(errors="replace")
    path = Path(location)
    if not path.exists():
        raise SourceError(f"install source {location} does not exist",
                          hint="pass --install-source with a RHEL 8 DVD ISO, tree folder or URL")
    if kind == "dir":
        if not (path / ".treeinfo").is_file():
            raise SourceError(f"install source {location} has no .treeinfo",
                              hint="give the top folder of a RHEL 8 install tree (a mounted DVD)")
        return inside_tree(path, ".treeinfo", location).read_text(errors="replace")
    with tempfile.TemporaryDirectory() as tmp:
        extract_from_iso(path, ".treeinfo", Path(tmp) / "treeinfo", runner or Runner())
        return (Path(tmp) / "treeinfo").read_text(errors="replace")


def extract_from_iso(iso: Path, member: str, dest: Path, runner: Runner) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    runner.run(["xorriso", "-osirrox", "on", "-indev", str(iso),
                "-extract", f"/{member}", str(dest)])
    if dest.is_symlink():  # a Rock Ridge symlink: it could point anywhere on this host
        dest.unlink()
        raise SourceError(f"{iso}: /{member} is a symlink, not a file",
                          hint="use the vendor's unmodified RHEL 8 DVD")
    if not dest.is_file():
        raise SourceError(f"{iso} has no /{member}", hint="use a RHEL 8 DVD (not a boot ISO)")


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        raise SourceError(f"cannot fetch {url}: {exc}",
                          hint="check the install source URL and that this host reaches it") from None


def tree_path(value: str, what: str, location: str) -> str:
    """A path that .treeinfo names, checked to stay inside the tree: relative, of letters,
    digits and `._+-`, no `.` or `..` component (a hostile tree could name secrets.yaml or a
    CA key of this host otherwise)."""
    rel = value.strip()
    parts = rel.split("/")
    if (len(rel) > TREE_PATH_MAX or not TREE_PATH.fullmatch(rel)
            or any(part in (".", "..") for part in parts)):
        raise SourceError(
            f"install source {location}: .treeinfo {what} {value[:80]!r} is not a path "
            "inside the tree",
            hint="use the vendor's unmodified install tree (paths like images/pxeboot/vmlinuz)")
    return rel


def inside_tree(root: Path, rel: str, location: str) -> Path:
    """root/rel with symlinks resolved, refused unless it is a regular file inside root."""
    real_root = root.resolve()
    real = (real_root / rel).resolve()
    if real != real_root and real_root not in real.parents:
        raise SourceError(
            f"install source {location}: {rel} resolves to {real}, outside the tree",
            hint="the tree has a symlink that leaves it: use the vendor's unmodified tree")
    try:
        st = real.stat()
    except OSError:
        raise SourceError(f"install source {location} has no {rel}",
                          hint="the tree is incomplete: copy the whole DVD") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"install source {location}: {rel} is not a regular file",
                          hint="use the vendor's unmodified install tree")
    return real


def parse_treeinfo(text: str, location: str) -> InstallSource:
    """Parse and check a .treeinfo; SourceError unless it is an x86_64 RHEL 8 tree."""
    cp = configparser.ConfigParser(interpolation=None)
    try:
        cp.read_string(text)
    except configparser.Error as exc:
        raise SourceError(f"{location}: .treeinfo is not readable: {exc}".splitlines()[0]) from None
    name = str(cp.get("release", "name", fallback="") or cp.get("general", "family", fallback=""))
    version = str(cp.get("release", "version", fallback="")
                  or cp.get("general", "version", fallback=""))
    arch = str(cp.get("tree", "arch", fallback="") or cp.get("general", "arch", fallback=""))
    if not any(name.startswith(f) for f in RHEL8_FAMILIES) or version.split(".")[0] != "8":
        raise SourceError(
            f"install source {location} is {name or 'unknown'} {version or '?'}, not RHEL 8",
            hint="use a RHEL 8 DVD ISO or install tree (e.g. rhel-8.10-x86_64-dvd.iso)")
    if arch != "x86_64":
        raise SourceError(f"install source {location} is for {arch or '?'}, not x86_64",
                          hint="use the x86_64 RHEL 8 media")
    section = f"images-{arch}"
    variants = cp.get("tree", "variants", fallback=cp.get("general", "variants", fallback=""))
    return InstallSource(
        location=location, kind=kind_of(location), name=name, version=version, arch=arch,
        kernel=tree_path(cp.get(section, "kernel", fallback=DEFAULT_KERNEL), "kernel", location),
        initrd=tree_path(cp.get(section, "initrd", fallback=DEFAULT_INITRD), "initrd", location),
        variants=_variants(cp, variants, location),
        treeinfo=text,
    )


def _variants(cp: configparser.ConfigParser, listed: str, location: str) -> tuple[str, ...]:
    """The variant names, each with its repository path checked like the kernel's."""
    names = tuple(v.strip() for v in listed.split(",") if v.strip())
    for name in names:
        tree_path(name, "variant", location)
        tree_path(cp.get(f"variant-{name}", "repository", fallback=name).strip("/"),
                  f"variant-{name} repository", location)
    return names


def _treeinfo_checksums(text: str) -> dict[str, str]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    return dict(cp.items("checksums")) if cp.has_section("checksums") else {}


def identify(src: InstallSource) -> dict[str, object]:
    """What identifies the source for cache keys (never the location alone)."""
    ident: dict[str, object] = {"treeinfo": src.treeinfo, "kind": src.kind}
    if src.kind == "dir":
        root = Path(src.location)
        for key, rel in (("kernel", src.kernel), ("initrd", src.initrd)):
            path = inside_tree(root, rel, src.location)
            ident[key] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    else:
        sums = _treeinfo_checksums(src.treeinfo)
        ident["kernel"] = sums.get(src.kernel)
        ident["initrd"] = sums.get(src.initrd)
        if src.kind == "iso":
            ident["iso_size"] = Path(src.location).stat().st_size
    return ident


def load(location: str, runner: Runner | None = None) -> InstallSource:
    """Read, check and identify an install source (all preflight, no long work)."""
    if kind_of(location) != "url":
        location = str(Path(location).expanduser().resolve())
    src = parse_treeinfo(read_treeinfo_text(location, runner), location)
    return InstallSource(**{**src.__dict__, "identity": identify(src)})


def copy_boot_files(src: InstallSource, dest: Path, runner: Runner) -> tuple[Path, Path]:
    """Copy (or extract, or download) the installer kernel and initrd into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    out = (dest / "vmlinuz", dest / "initrd.img")
    for rel, target in zip((src.kernel, src.initrd), out, strict=True):
        with replacing(target) as tmp:
            if src.kind == "dir":
                _copy_regular(inside_tree(Path(src.location), rel, src.location), tmp)
            elif src.kind == "iso":
                extract_from_iso(Path(src.location), rel, tmp, runner)
            else:
                tmp.write_bytes(_fetch(src.location.rstrip("/") + "/" + rel))
    return out


def _copy_regular(path: Path, dest: Path) -> None:
    """Copy a file opened without following a last-moment symlink (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
        if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
            raise SourceError(f"{path} is not a regular file", hint="use an unmodified tree")
        shutil.copyfileobj(src, out)


def media_repos(src: InstallSource) -> dict[str, str]:
    """BaseOS/AppStream as rpm-md repositories of the tree ([variant-X] repository=), as URLs
    dnf reads (file:// for a folder); none for an ISO (its repositories are inside it)."""
    if src.kind == "iso":
        return {}
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(src.treeinfo)
    base = (Path(src.location).resolve().as_uri() if src.kind == "dir"
            else src.location.rstrip("/"))
    out = {}
    for variant in src.variants:
        rel = cp.get(f"variant-{variant}", "repository", fallback=variant).strip("/")
        out[variant] = f"{base}/{rel}/"
    return out
