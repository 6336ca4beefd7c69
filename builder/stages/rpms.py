"""The `rpms` stage: rpmbuild each rendered spec in a private _topdir, then createrepo_c.

RHEL 8 compatible output: noarch, xz payload, dist tag .el8. Reproducible: SOURCE_DATE_EPOCH
with build time and file mtimes clamped to it and a fixed build host. Cached per package on
the hash of its spec, its payload and the rpmbuild options: an unchanged package is not rebuilt.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from builder import __version__
from builder.core.context import Context
from builder.core.fsutil import replacing, sha256_file
from builder.core.log import log
from builder.core.run import require
from builder.core.state import Artifact, artifact, cached_stage, input_key, up_to_date
from builder.stages import pydeps, signing
from builder.stages.rpmbuild import DIST, rpmbuild_defines
from builder.stages.specs import Package, Spec, SpecsResult


def rpm_names(pkg: Package) -> tuple[str, str]:
    nvr = f"{pkg.name}-{pkg.version}-{pkg.release}{DIST}"
    return f"{nvr}.noarch.rpm", f"{nvr}.src.rpm"


@dataclass(frozen=True)
class RpmsResult:
    """The `rpms` step's result: each package's binary RPM and SRPM (by package name), the
    repository folder (repodata included) and every artifact."""

    rpms: dict[str, Path]
    srpms: dict[str, Path]
    repo: Path
    artifacts: list[Artifact]

    def for_packages(self, names: list[str]) -> list[Path]:
        return [self.rpms[n] for n in names]


def _build_one(ctx: Context, spec_: Spec, key: signing.SigningKey) -> None:
    """rpmbuild in a private _topdir: a fresh mkdtemp folder (0700), removed afterwards.

    Nothing predictable in /tmp (no lock, no fixed name a symlink could be planted at); builds
    stay byte-identical because the spec never expands the _topdir path (it uses rpmbuild's
    $RPM_SOURCE_DIR and $RPM_BUILD_ROOT).
    """
    pkg, spec = spec_.package, spec_.spec
    topdir = Path(tempfile.mkdtemp(prefix="pgha-rpmbuild-"))
    try:
        (topdir / "SOURCES").mkdir()
        shutil.copy2(spec_.source, topdir / "SOURCES" / pkg.source)
        ctx.runner.run(["rpmbuild", "-ba", "--quiet", *rpmbuild_defines(topdir), str(spec)],
                       env={"SOURCE_DATE_EPOCH": str(ctx.epoch), "HOME": str(topdir),
                            "LC_ALL": "C", "TZ": "UTC"})
        rpm, srpm = rpm_names(pkg)
        built_rpm, built_srpm = topdir / "RPMS" / "noarch" / rpm, topdir / "SRPMS" / srpm
        signing.sign_rpms(ctx, key, [built_rpm, built_srpm])
        ctx.out.rpms.mkdir(parents=True, exist_ok=True)
        for built, name in ((built_rpm, rpm), (built_srpm, srpm)):
            with replacing(ctx.out.rpms / name) as tmp:
                shutil.copyfile(built, tmp)
                os.utime(tmp, (ctx.epoch, ctx.epoch))  # repodata records file times
    finally:
        shutil.rmtree(topdir, ignore_errors=True)


def _package_key(ctx: Context, spec: Spec, key: signing.SigningKey) -> str:
    return input_key("rpm", __version__, sha256_file(spec.spec), sha256_file(spec.source),
                     ctx.epoch, rpmbuild_defines(Path("T")), key.fingerprint,
                     key.sign_time(ctx.epoch))


def build_rpms(ctx: Context) -> RpmsResult:
    """Build every package the `specs` step wrote whose inputs changed (in parallel: each
    rpmbuild is its own process in its own _topdir); refresh repodata if anything did. One
    owner (state "rpm-<pkg>") per package, "repodata" for the metadata."""
    specs = ctx.result("specs", SpecsResult).specs
    if shutil.which("gpg") is None:
        require("rpmbuild", "rpmsign")  # with both missing, name the build tool first
    key = signing.signing_key(ctx)
    keys = {s.package.name: _package_key(ctx, s, key) for s in specs}
    stale = [s for s in specs
             if ctx.force or not up_to_date(ctx.out, f"rpm-{s.package.name}", keys[s.package.name])]
    _build_all(ctx, stale, key)
    built = [s.package.name for s in stale]
    arts: list[Artifact] = []
    rpms, srpms = {}, {}
    for spec in specs:
        pkg = spec.package
        rpm, srpm = (ctx.out.rpms / name for name in rpm_names(pkg))
        rpms[pkg.name], srpms[pkg.name] = rpm, srpm
        pkg_arts = [artifact(ctx.out, "rpm", rpm, role=pkg.role.name),
                    artifact(ctx.out, "srpm", srpm, role=pkg.role.name)]
        # Built above when stale: recording it is all that is left (force: record anew).
        arts += cached_stage(ctx, f"rpm-{pkg.name}", keys[pkg.name], pkg_arts,
                             lambda: None, force=pkg.name in built)
    arts += pydeps.build_all(ctx, key)
    _drop_stale(ctx, {a.path for a in arts})
    arts += _repodata(ctx, [a for a in arts if a.kind in ("rpm", "srpm")], bool(built), key)
    pub = ctx.out.rpms / signing.KEY_FILE
    arts += cached_stage(ctx, "gpgkey", input_key("gpgkey", key.public),
                         [artifact(ctx.out, "gpgkey", pub)] if pub.is_file() else [],
                         lambda: [artifact(ctx.out, "gpgkey",
                                           signing.write_public_key(ctx, key, ctx.out.rpms))])
    if built:
        ctx.messages.append(f"rpms: built {', '.join(built)}")
    else:
        ctx.messages.append("rpms: up to date, rpmbuild not run")
    return RpmsResult(rpms, srpms, ctx.out.rpms, arts)


def _build_all(ctx: Context, specs: list[Spec], key: signing.SigningKey) -> None:
    """rpmbuild the specs, as many at once as there are CPUs; the first failure is raised
    after the others finished (their packages are then rebuilt by the next run: no state is
    recorded for any of them)."""
    if not specs:
        return
    require("rpmbuild")
    for spec in specs:
        log.info("rpmbuild %s", spec.package.name)
    workers = max(1, min(len(specs), os.cpu_count() or 1))
    if workers == 1:
        for spec in specs:
            _build_one(ctx, spec, key)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpmbuild") as pool:
        futures = [pool.submit(_build_one, ctx, spec, key) for spec in specs]
    for future in futures:
        future.result()


def _drop_stale(ctx: Context, keep: set[str]) -> None:
    """Remove RPMs of packages or versions no longer produced, so the repo stays exact."""
    if not ctx.out.rpms.is_dir():
        return
    for path in ctx.out.rpms.glob("*.rpm"):
        if ctx.out.rel(path) not in keep:
            log.info("rpms: removed %s (no longer built)", ctx.out.rel(path))
            path.unlink()


def _repodata(ctx: Context, rpms: list[Artifact], changed: bool,
              signer: signing.SigningKey) -> list[Artifact]:
    """createrepo_c, then repomd.xml.asc (a detached signature for dnf's repo_gpgcheck)."""
    key = input_key("repodata", sorted((a.path, a.sha256) for a in rpms), ctx.epoch,
                    signer.fingerprint)
    repomd = artifact(ctx.out, "repodata", ctx.out.rpms / "repodata" / "repomd.xml")

    def write() -> list[Artifact]:
        require("createrepo_c")
        ctx.runner.run(["createrepo_c", "--quiet", "--no-database",
                        "--revision", str(ctx.epoch), "--set-timestamp-to-revision",
                        str(ctx.out.rpms)])
        signing.sign_file(ctx, signer, ctx.out.rpms / "repodata" / "repomd.xml")
        files = sorted((ctx.out.rpms / "repodata").iterdir())
        return [repomd] + [artifact(ctx.out, "repodata", f) for f in files
                           if f.name != "repomd.xml"]

    return cached_stage(ctx, "repodata", key, [repomd], write, force=changed)
