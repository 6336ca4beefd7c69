"""The pgha-lab-provides RPM: the RHEL 8 names the role RPMs require, provided by Debian packages.

Boundary: reads the mapping (builder/resources/lab/provides.yaml), renders and rpmbuilds the
RPM once per content (cached beside the lab's other RPMs), and checks that the mapping covers
every requirement of the role RPMs. builder.lab.machine installs it first into each machine, so
the role RPMs then install with plain `rpm -i`: dependencies checked, scriptlets run.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from builder import __version__
from builder.core.errors import PghaError
from builder.core.fsutil import sha256_bytes
from builder.core.paths import RESOURCES
from builder.core.run import Runner, require
from builder.model.platform import Layout
from builder.stages import render
from builder.stages.rpms import rpmbuild_defines

MAPPING = RESOURCES / "lab" / "provides.yaml"
SPEC = RESOURCES / "lab" / "pgha-lab-provides.spec.j2"
UNIT = RESOURCES / "lab" / "patroni.service.j2"
NAME = "pgha-lab-provides"
# Requirements rpm satisfies itself, or that the role RPMs provide to each other.
_INTERNAL = re.compile(r"^(rpmlib\(|config\(|pgha-)")
_DEB_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


@dataclass(frozen=True)
class Provide:
    rhel: str
    debian: tuple[str, ...]
    via: str


def mapping() -> list[Provide]:
    data = yaml.safe_load(MAPPING.read_text())
    out = []
    for entry in data:
        debs = tuple(entry.get("debian") or ())
        bad = [d for d in debs if not _DEB_NAME.match(d)]
        if bad or not re.match(r"^[A-Za-z0-9/._+-]+$", entry["rhel"]):
            raise PghaError(f"{MAPPING}: bad entry {entry!r}")
        out.append(Provide(entry["rhel"], debs, " ".join(str(entry["via"]).split())))
    return out


def render_spec(lay: Layout) -> str:
    provides = mapping()
    debian = sorted({d for p in provides for d in p.debian})
    unit = render.render_file(UNIT, {"layout": lay})
    return render.render_file(SPEC, {"provides": provides, "debian": debian,
                                     "patroni_unit": unit, "version": __version__})


def build(runner: Runner, lay: Layout, out_dir: Path) -> Path:
    """The RPM in out_dir (built unless one for the same spec is there)."""
    spec_text = render_spec(lay)
    digest = sha256_bytes(spec_text.encode())[:12]
    rpm = out_dir / f"{NAME}-{__version__}-1.{digest}.noarch.rpm"
    if rpm.is_file():
        return rpm
    require("rpmbuild")
    topdir = Path(tempfile.mkdtemp(prefix="pgha-lab-provides-"))
    try:
        spec = topdir / f"{NAME}.spec"
        spec.write_text(spec_text)
        runner.run(["rpmbuild", "-bb", "--quiet", *rpmbuild_defines(topdir), spec],
                   env={"HOME": str(topdir), "LC_ALL": "C", "TZ": "UTC"})
        built = topdir / "RPMS" / "noarch" / f"{NAME}-{__version__}-1.noarch.rpm"
        out_dir.mkdir(parents=True, exist_ok=True)
        for old in out_dir.glob(f"{NAME}-*.rpm"):
            old.unlink()
        shutil.copyfile(built, rpm)
    finally:
        shutil.rmtree(topdir, ignore_errors=True)
    return rpm


def requirements(rpms: list[Path], runner: Runner | None = None) -> set[str]:
    """The names the given RPMs require from outside pgha (rpm -qpR, versions dropped)."""
    out = (runner or Runner()).run(["rpm", "-qpR", *rpms]).stdout.decode()
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    return {n for n in names if not _INTERNAL.match(n)}


def unmapped(rpms: list[Path]) -> list[str]:
    """Requirements of `rpms` that the mapping does not cover (empty when complete)."""
    known = {p.rhel for p in mapping()}
    return sorted(requirements(rpms) - known)
