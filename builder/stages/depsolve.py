"""The depsolve gate: can each role's kickstart be installed from its repositories?

For each role, the role kickstart is rendered and read back with pykickstart's RHEL 8 handler:
its `url`/`repo` lines (with includepkgs/excludepkgs), its `module --disable` lines and its
%packages (packages and exclusions; groups and environments come from the install media's comps
and are left to Anaconda). The pgha repository is this build's own (output/<cluster>/rpms).
dnf then resolves the whole set as RHEL 8 would: releasever 8, x86_64, a throwaway installroot
and cache, no plugins, no system repositories, `--assumeno` (nothing is downloaded or
installed). Signatures are not checked here (nothing is installed): see docs/rhel8.md.

On Debian dnf is the `dnf` package (4.14 in bookworm); on RHEL the system dnf. Every network
access is bounded (dnf's `timeout`/`minrate` per connection, few retries, and a time limit on
the whole run); an unreachable repository is one line naming it. No CLI here.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PghaError, ToolFailed, ValidationFailed
from builder.core.run import missing_tool_error
from builder.model import roles
from builder.stages import kickstart

ARCH = "x86_64"
RELEASEVER = "8"
CONNECT_TIMEOUT_S = 15  # dnf `timeout`: per connection, with `minrate` for stalled transfers
RUN_TIMEOUT_S = 300  # the whole dnf run
PLATFORM_ID = "platform:el8"

_UNREACHABLE = re.compile(r"Failed to (?:download|load) metadata for repo '([^']+)'(?:: (.*))?")
_NO_MATCH = re.compile(r"^No match for argument: (\S+)", re.MULTILINE)
# dnf says why a package that exists was not offered (modules, includepkgs/excludepkgs)
_UNABLE = re.compile(r"Unable to find a match: (.+)$", re.MULTILINE)
_FILTERED = re.compile(r"^All matches were filtered out by (\S+) filtering for argument: (\S+)",
                       re.MULTILINE)
_PROBLEM = re.compile(r"^\s*- (.+)$", re.MULTILINE)
_PYTHON_DEP = re.compile(r"nothing provides (python3\.\d+-[A-Za-z0-9._+-]+)")
_ROW = re.compile(r"^ (\S+)\s+(noarch|x86_64|i686)\s+(\S+)\s+(\S+)\s+\S+ \S+\s*$", re.MULTILINE)


class DepsolveFailed(ValidationFailed):
    """Some role cannot be installed; `problems` has one line per unresolvable item."""

    def __init__(self, message: str, problems: list[str], hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.problems = problems


@dataclass(frozen=True)
class KsRepo:
    id: str
    url: str
    includepkgs: tuple[str, ...] = ()
    excludepkgs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """What one role's kickstart asks the installer for."""

    role: str
    repos: tuple[KsRepo, ...]
    packages: tuple[str, ...]
    excluded: tuple[str, ...]
    groups: tuple[str, ...]
    disabled_modules: tuple[str, ...]


@dataclass
class RoleResult:
    role: str
    resolved: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (evr, repo)
    problems: list[str] = field(default_factory=list)
    groups: tuple[str, ...] = ()  # left to the install media's comps (Anaconda resolves them)
    seconds: float = 0.0


def request_from_kickstart(role: str, text: str, pgha_url: str) -> Request:
    """Read a rendered kickstart back (pykickstart RHEL 8) into a depsolve request."""
    from pykickstart.parser import KickstartParser
    from pykickstart.version import RHEL8, makeVersion

    h = makeVersion(RHEL8)
    KickstartParser(h, errorsAreFatal=True).readKickstartFromString(text)
    repos = [KsRepo("BaseOS", h.url.url)] if h.url.url else []
    for r in h.repo.repoList:
        url = pgha_url if r.name == "pgha" else r.baseurl
        repos.append(KsRepo(r.name, url, tuple(r.includepkgs or ()), tuple(r.excludepkgs or ())))
    groups = [g.name for g in h.packages.groupList]
    if h.packages.environment:
        groups.insert(0, "^" + h.packages.environment)
    return Request(role=role, repos=tuple(repos), packages=tuple(h.packages.packageList),
                   excluded=tuple(h.packages.excludedList), groups=tuple(groups),
                   disabled_modules=tuple(m.name for m in h.module.dataList() if not m.enable))


def role_request(ctx: Context, role: str, media: dict[str, str] | None = None) -> Request:
    """The role kickstart's request; `media` replaces repositories by id with the install
    media's (BaseOS/AppStream of the tree the image is installed from)."""
    text = kickstart.render_role(ctx, roles.get(role))
    req = request_from_kickstart(role, text, ctx.out.rpms.resolve().as_uri() + "/")
    if not media:
        return req
    return dataclasses.replace(req, repos=tuple(
        dataclasses.replace(r, url=media[r.id]) if r.id in media else r for r in req.repos))


def dnf_conf(req: Request, work: Path) -> str:
    """dnf.conf for the run: only the kickstart's repositories, bounded network access."""
    lines = ["[main]", f"reposdir={work / 'repos.d'}", f"cachedir={work / 'cache'}",
             f"logdir={work / 'log'}", f"persistdir={work / 'persist'}", "plugins=0",
             "gpgcheck=0", "repo_gpgcheck=0", "install_weak_deps=False", "best=False",
             "skip_if_unavailable=False", f"module_platform_id={PLATFORM_ID}",
             f"timeout={CONNECT_TIMEOUT_S}", "minrate=100", "retries=1", "metadata_expire=-1",
             "keepcache=0", ""]
    for repo in req.repos:
        lines += [f"[{repo.id}]", f"name={repo.id}", f"baseurl={repo.url}", "enabled=1",
                  "max_parallel_downloads=4"]
        if repo.includepkgs:
            lines.append(f"includepkgs={','.join(repo.includepkgs)}")
        if repo.excludepkgs:
            lines.append(f"excludepkgs={','.join(repo.excludepkgs)}")
        lines.append("")
    return "\n".join(lines)


def prepare_root(req: Request, work: Path) -> Path:
    """A throwaway installroot with the kickstart's `module --disable` already applied."""
    root = work / "root"
    modules = root / "etc/dnf/modules.d"
    modules.mkdir(parents=True, exist_ok=True)
    (work / "repos.d").mkdir(exist_ok=True)
    for name in req.disabled_modules:
        (modules / f"{name}.module").write_text(
            f"[{name}]\nname={name}\nstream=\nprofiles=\nstate=disabled\n")
    return root


def dnf_argv(conf: Path, root: Path, packages: list[str], excluded: tuple[str, ...]) -> list[str]:
    argv = ["dnf", "-c", str(conf), f"--installroot={root}", f"--releasever={RELEASEVER}",
            f"--forcearch={ARCH}", "--assumeno", "--nodocs"]
    argv += [f"--exclude={name}" for name in excluded]
    return argv + ["install", *packages]


def _unreachable(req: Request, output: str) -> None:
    m = _UNREACHABLE.search(output)
    if m is None:
        return
    url = next((r.url for r in req.repos if r.id == m.group(1)), "?")
    reason = next((ln.strip(" -") for ln in output.splitlines()
                   if "Curl error" in ln or "Cannot download" in ln), m.group(2) or "")
    raise PghaError(f"depsolve: repository {m.group(1)} ({url}) cannot be reached: "
                    f"{reason[:200]}",
                    hint="check its URL in the cluster file (repos) and that this host reaches "
                         "it (proxy, DNS, firewall); `pgha-build images --no-depsolve` skips the "
                         "gate")


def parse(output: str) -> tuple[dict[str, str], list[str], dict[str, tuple[str, str]]]:
    """(packages not offered -> why, dependency problems, resolved name -> (evr, repo))."""
    missing = {name: "" for name in _NO_MATCH.findall(output)}
    for how, name in _FILTERED.findall(output):
        missing[name] = f" (all matches filtered out by {how} filtering)"
    m = _UNABLE.search(output)
    for name in (m.group(1).split() if m else []):
        missing.setdefault(name, "")
    problems = [p.strip() for p in _PROBLEM.findall(output)
                if "conflicting requests" not in p and not p.startswith("Curl error")]
    rows = {m.group(1): (m.group(3), m.group(4)) for m in _ROW.finditer(output)}
    return missing, list(dict.fromkeys(problems)), rows


def _run_dnf(ctx: Context, req: Request, work: Path, packages: list[str]) -> str:
    conf = work / "dnf.conf"
    conf.write_text(dnf_conf(req, work))
    root = prepare_root(req, work)
    try:
        proc = ctx.runner.run(dnf_argv(conf, root, packages, req.excluded), check=False,
                              timeout=RUN_TIMEOUT_S)
    except ToolFailed as err:  # the time limit of the whole run
        raise PghaError(f"depsolve: dnf did not finish within {RUN_TIMEOUT_S} s for role "
                        f"{req.role} (repositories {', '.join(r.id for r in req.repos)})",
                        hint="a repository answers too slowly: check the mirrors in repos, or "
                             "skip the gate with `pgha-build images --no-depsolve`") from err
    output = proc.stdout.decode(errors="replace") + "\n" + proc.stderr.decode(errors="replace")
    _unreachable(req, output)
    return output


def solve(ctx: Context, req: Request, work: Path) -> RoleResult:
    """Resolve the request; a package that does not exist is reported, and the rest is still
    resolved so every unresolvable dependency appears in one list."""
    start = time.monotonic()
    result = RoleResult(req.role, groups=req.groups)
    packages = list(req.packages)
    for _ in range(2):
        missing, problems, rows = parse(_run_dnf(ctx, req, work, packages))
        result.problems += [f"no package {name} in the role's repositories{why}"
                            for name, why in missing.items()]
        result.problems += problems
        result.resolved.update(rows)
        packages = [p for p in packages if p not in missing]
        if not missing or not packages:
            break
    result.problems = list(dict.fromkeys(result.problems))
    result.seconds = time.monotonic() - start
    return result


def run(ctx: Context, role_names: list[str] | None = None,
        media: dict[str, str] | None = None) -> list[RoleResult]:
    """The gate for each role (default: every role of the cluster); raises DepsolveFailed
    listing every problem of every role, PghaError for an unreachable repository. `media`:
    repository id -> URL of the install media's own repositories (see role_request)."""
    if shutil.which("dnf") is None:
        raise missing_tool_error("dnf")
    names = role_names or sorted({r for n in ctx.cluster.nodes for r in n.roles})
    results = []
    ctx.out.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="depsolve-", dir=ctx.out.work) as tmp:
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            (work / "cache").symlink_to(Path(tmp) / "cache", target_is_directory=True)
            (Path(tmp) / "cache").mkdir(exist_ok=True)
            results.append(solve(ctx, role_request(ctx, name, media), work))
    failed = [f"{r.role}: {p}" for r in results for p in r.problems]
    if failed:
        python = sorted(set(_PYTHON_DEP.findall("\n".join(failed))))
        extra = (f"; {', '.join(python)}: if no repository has it and it is pure Python, "
                 "build it from its sdist into the pgha repository (python_deps in the "
                 "cluster file, docs/rhel8.md)") if python else ""
        raise DepsolveFailed(
            f"depsolve failed: {len(failed)} unresolvable item(s) in {len(names)} role(s)",
            problems=failed,
            hint="each line names what is missing: add the repository that carries it to "
                 "repos (docs/rhel8.md lists which repository carries what), or choose a "
                 "release that has it" + extra)
    return results


def summary(result: RoleResult, names: tuple[str, ...] = ("patroni", "etcd", "haproxy")) -> str:
    shown = [f"{n} {result.resolved[n][0]} ({result.resolved[n][1]})" for n in names
             if n in result.resolved]
    groups = f"; groups left to the media: {', '.join(result.groups)}" if result.groups else ""
    return (f"depsolve: {result.role}: ok, {len(result.resolved)} package(s) resolved in "
            f"{result.seconds:.1f}s" + (f"; {', '.join(shown)}" if shown else "") + groups)
