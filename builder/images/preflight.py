"""Preflight of the image build: everything checked before any long work, each problem one line
that says what to do. Problems are collected and reported together (PreflightFailed)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import ConfigError, PghaError
from builder.core.run import Runner, missing_tool_error
from builder.images import formats as imageformats
from builder.images import vminstall
from builder.model import minorpolicy
from builder.model.cluster import Cluster
from builder.stages import installsrc
from builder.stages.installsrc import InstallSource

GIB = 1 << 30
DiskUsage = Callable[[Path], "shutil._ntuple_diskusage"]


class PreflightFailed(ConfigError):
    """One or more preflight checks failed; `problems` has one line each."""


@dataclass
class Report:
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: InstallSource | None = None
    kvm: bool = False

    def raise_if_failed(self) -> None:
        if self.problems:
            raise PreflightFailed(f"preflight failed ({len(self.problems)} problem(s))",
                                  problems=self.problems,
                                  hint="fix the lines above, then run the command again")


def require_login(cluster: Cluster) -> None:
    """An image nobody can log in to is refused unless the cluster file says so on purpose
    (admin.login: none); `build`, `pxe` and the lab do not ask."""
    if cluster.admin.login == "ssh_key" and cluster.admin.ssh_key is None:
        raise ConfigError("images: admin.ssh_key is not set: nobody could log in to a node "
                          "built from this image",
                          hint="set admin.ssh_key to your OpenSSH public key in the cluster "
                               "file (or admin.login: none to build images without any login, "
                               "on purpose)")


def check_tools(report: Report, tools: list[str]) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            err = missing_tool_error(tool)
            report.problems.append(f"{err.message}: {err.hint}")
        else:
            report.notes.append(f"tool: {tool} found")


def check_source(report: Report, location: str | None, runner: Runner,
                 cluster: Cluster | None = None) -> None:
    """The install source: readable, RHEL 8 x86_64, and (with the cluster) a minor release
    that can run the chosen Patroni (builder.model.minorpolicy)."""
    if not location:
        report.problems.append("no install source: set image.install_source in the cluster "
                               "file or pass --install-source (RHEL 8 DVD ISO, tree or URL)")
        return
    try:
        report.source = installsrc.load(location, runner)
    except PghaError as err:
        report.problems.append(f"{err.message}: {err.hint}" if err.hint else err.message)
        return
    report.notes.append(f"install source: {report.source.describe()}")
    problem = minorpolicy.minor_problem(cluster, report.source.version) if cluster else None
    if problem:
        report.problems.append(problem)


def check_file(report: Report, what: str, path: str | None, hint: str) -> None:
    if not path:
        report.problems.append(f"no {what}: {hint}")
    elif not Path(path).is_file():
        report.problems.append(f"{what} {path} does not exist: {hint}")
    else:
        report.notes.append(f"{what}: {path}")


def check_disk(report: Report, where: Path, need_bytes: int,
               disk_usage: DiskUsage = shutil.disk_usage) -> None:
    probe = where
    while not probe.exists():
        probe = probe.parent
    free = disk_usage(probe).free
    if free < need_bytes:
        report.problems.append(
            f"not enough disk space in {probe}: {free / GIB:.1f} GiB free, "
            f"{need_bytes / GIB:.1f} GiB needed: free some space or use -o on a larger disk")
    else:
        report.notes.append(f"disk: {free / GIB:.1f} GiB free in {probe}, "
                            f"{need_bytes / GIB:.1f} GiB needed")


def space_needed(disk_gb: int, formats: list[str]) -> int:
    """The install disk can fill up; each output format (compressed or sparse images of a fresh
    install, a few GiB) is counted at a quarter of it, the OVA's vmdk once more."""
    extra = sum(imageformats.of(f).extra_copies for f in formats)
    return disk_gb * GIB + extra * disk_gb * GIB // 4


def check_kvm(report: Report, want: bool | None,
              status: Callable[[], tuple[bool, str]] = vminstall.kvm_status) -> None:
    """want: None auto, False never. A KVM problem is a note (software emulation still works)."""
    if want is False:
        report.kvm = False
        report.notes.append("KVM: off (--no-kvm): software emulation, expect hours")
        return
    usable, line = status()
    report.kvm = usable
    report.notes.append(line)


def check_depsolve(report: Report, ctx: Context, role: str) -> None:
    """The depsolve gate for the role (builder.stages.depsolve): every unresolvable item, or
    the unreachable repository, is a problem line; without the role's RPMs it is skipped. With
    an install tree (folder or URL) its own BaseOS/AppStream replace the cluster's, as in the
    install itself."""
    from builder.stages import depsolve

    if not (ctx.out.rpms / "repodata" / "repomd.xml").is_file():
        report.notes.append("depsolve: skipped, no RPM repository yet (run `pgha-build rpms`)")
        return
    media = installsrc.media_repos(report.source) if report.source else {}
    if media:
        report.notes.append("depsolve: BaseOS/AppStream from the install source: "
                            + ", ".join(f"{k} {v}" for k, v in sorted(media.items())))
    try:
        results = depsolve.run(ctx, [role], media)
    except depsolve.DepsolveFailed as err:
        report.problems += [f"depsolve: {p}" for p in err.problems]
        return
    except PghaError as err:
        report.problems.append(f"{err.message}: {err.hint}" if err.hint else err.message)
        return
    report.notes += [depsolve.summary(r) for r in results]
