"""`pgha-build mirror`: one local repository of exactly what the cluster installs.

For each role, the role kickstart rendered against the cluster's source repositories (BaseOS,
AppStream, PGDG <major>, common, extras, and this build's pgha RPMs) is read back as the
depsolve gate reads it; dnf then resolves its packages, groups (when a source has comps) and
exclusions into an empty installroot and downloads the whole transaction
(`dnf install --downloadonly --destdir`): the full dependency closure, as `dnf download
--resolve --alldeps` would give, with the same resolver, includepkgs and module settings as the
gate and the installer, and no plugin needed. Every downloaded package from a repository with
gpgcheck is checked (`rpm -K`, signature required) against that repository's own key before it
enters the mirror.

output/<cluster>/mirror/:
  Packages/        every RPM (the sources' closure and the pgha RPMs)
  repodata/        createrepo_c (with the BaseOS comps when a source has them), repomd.xml.asc
  keys/            each source's GPG key file and RPM-GPG-KEY-pgha
  packages.txt     package, source repository, sha256: what a security review reads

With `repos.mirror: <URL where it is served>` every kickstart, image and the nodes' pgha.repo
use that one repository; the kickstarts carry the keys and import them from files. On RHEL 8.10
with the subscription (or on any host with dnf and the repositories reachable) it is the real
thing; the tests run it against the local stand-in repositories (tests/rhel8_repos.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.log import log
from builder.core.run import missing_tool_error, require
from builder.model.repos import key_file_name
from builder.stages import depsolve, signing

FETCH_TIMEOUT_S = 30
MAX_KEY_BYTES = 1 << 20
MAX_COMPS_BYTES = 64 << 20
_REPO_NS = "{http://linux.duke.edu/metadata/repo}"


@dataclass(frozen=True)
class MirrorResult:
    root: Path
    packages: dict[str, str]  # rpm file name -> source repository id
    keys: list[str]
    comps: bool


def source_context(ctx: Context) -> Context:
    """The context whose kickstarts name the sources (the mirror setting off)."""
    repos = ctx.cluster.repos.model_copy(update={"mirror": None})
    return dataclasses.replace(ctx, cluster=ctx.cluster.model_copy(update={"repos": repos}))


def _fetch(url: str, limit: int) -> bytes:
    """A file from a source repository's URL (file://, http://, https://), bounded."""
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as resp:
            data = resp.read(limit + 1)
    except (OSError, ValueError) as exc:
        raise PghaError(f"mirror: cannot fetch {url}: {exc}",
                        hint="check the URL in the cluster file (repos) and that this host "
                             "reaches it") from None
    if len(data) > limit:
        raise PghaError(f"mirror: {url} is larger than {limit} bytes")
    return data


def source_keys(ctx: Context) -> dict[str, tuple[str, bytes]]:
    """repository id -> (key file name, key) for each source whose packages are checked."""
    out = {}
    for repo in source_context(ctx).cluster.repo_list():
        if repo.gpgkey and repo.gpgcheck:
            data = _fetch(repo.gpgkey, MAX_KEY_BYTES)
            if b"BEGIN PGP PUBLIC KEY BLOCK" not in data:
                raise PghaError(f"mirror: {repo.gpgkey} ({repo.id}) is not an armored public key")
            out[repo.id] = (key_file_name(repo.gpgkey), data)
    return out


def _comps(ctx: Context) -> bytes | None:
    """The first source's comps (group data): BaseOS's on real media."""
    for repo in source_context(ctx).cluster.repo_list():
        base = repo.url.rstrip("/") + "/"
        try:
            repomd = ET.fromstring(_fetch(base + "repodata/repomd.xml", MAX_COMPS_BYTES))
        except ET.ParseError:
            continue
        for data in repomd.findall(f"{_REPO_NS}data"):
            loc = data.find(f"{_REPO_NS}location")
            if data.get("type") == "group" and loc is not None and loc.get("href"):
                return _fetch(base + str(loc.get("href")), MAX_COMPS_BYTES)
    return None


def _download(ctx: Context, req: depsolve.Request, work: Path, dest: Path,
              groups: bool) -> dict[str, str]:
    """dnf downloads the request's whole transaction into dest; name -> repository id."""
    conf = work / "dnf.conf"
    conf.write_text(depsolve.dnf_conf(req, work))
    root = depsolve.prepare_root(req, work)
    # dnf 4 takes an environment as @id (the kickstart's @^id names it as one)
    argv = depsolve.dnf_argv(conf, root, [*req.packages, *(
        f"@{g.lstrip('^')}" for g in (req.groups if groups else ()))], req.excluded)
    argv = [a for a in argv if a != "--assumeno"]
    argv[argv.index("install"):argv.index("install")] = ["-y", "--downloadonly",
                                                          f"--destdir={dest}"]
    proc = ctx.runner.run(argv, check=False, timeout=depsolve.RUN_TIMEOUT_S * 4)
    output = proc.stdout.decode(errors="replace") + "\n" + proc.stderr.decode(errors="replace")
    missing, problems, rows = depsolve.parse(output)
    if proc.returncode != 0 or missing or problems:
        lines = [f"no package {n}{why}" for n, why in missing.items()] + problems or [
            ln for ln in output.strip().splitlines()[-3:]]
        raise PghaError(f"mirror: role {req.role} cannot be resolved: {'; '.join(lines)}",
                        hint="`pgha-build check --depsolve` lists every problem; fix repos "
                             "in the cluster file")
    return {name: repo for name, (_evr, repo) in rows.items()}


def _verify(ctx: Context, rpms: dict[Path, str], keys: dict[str, tuple[str, bytes]],
            work: Path) -> None:
    """Each package of a checked repository must carry a good signature by its key."""
    for repo_id, (name, data) in keys.items():
        files = [p for p, rid in rpms.items() if rid == repo_id]
        if not files:
            continue
        db = work / f"rpmdb-{repo_id}"
        db.mkdir()
        key = work / name
        key.write_bytes(data)
        ctx.runner.run(["rpm", "--dbpath", str(db), "--import", str(key)])
        proc = ctx.runner.run(["rpm", "--dbpath", str(db), "--define",
                               "_pkgverify_level signature", "-K", *map(str, files)],
                              check=False)
        bad = [ln for ln in proc.stdout.decode(errors="replace").splitlines() if "NOT OK" in ln]
        if proc.returncode != 0 or bad:
            raise PghaError(f"mirror: {len(bad) or 'some'} package(s) of {repo_id} fail their "
                            f"signature check against {name}: {'; '.join(bad[:3])}",
                            hint="the source repository or the download was tampered with, or "
                                 "repos.<source>.gpgkey names the wrong key; nothing was "
                                 "added to the mirror")


def build_mirror(ctx: Context, media: dict[str, str] | None = None,
                 groups: bool = True) -> MirrorResult:
    """Resolve and download every role's closure, check it, and write the mirror (replaced
    whole: a failure leaves the previous mirror as it was)."""
    if shutil.which("dnf") is None:
        raise missing_tool_error("dnf")
    require("createrepo_c", "rpm")
    src = source_context(ctx)
    names = sorted({r for n in ctx.cluster.nodes for r in n.roles})
    keys = source_keys(ctx)
    comps = _comps(ctx) if groups else None
    target = signing.mirror_dir(ctx)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".mirror-", dir=target.parent))
    try:
        pkgs = stage / "Packages"
        pkgs.mkdir()
        found: dict[Path, str] = {}
        for name in names:
            work = stage / ".work" / name
            work.mkdir(parents=True)
            req = depsolve.role_request(src, name, media)
            where = _download(ctx, req, work, work / "rpms", groups and comps is not None)
            for rpm in sorted((work / "rpms").glob("*.rpm")):
                if pkgs / rpm.name not in found:
                    found[pkgs / rpm.name] = where.get(_rpm_name(rpm.name), "?")
                    shutil.move(rpm, pkgs / rpm.name)
        pgha = signing.signing_key(ctx).public.encode()
        _verify(ctx, found, {**keys, "pgha": (signing.KEY_FILE, pgha)}, stage / ".work")
        _finish(ctx, stage, found, keys, comps)
        shutil.rmtree(target, ignore_errors=True)
        stage.rename(target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    result = MirrorResult(target, {p.name: r for p, r in found.items()},
                          sorted(p.name for p in (target / "keys").iterdir()), comps is not None)
    ctx.messages.append(f"mirror: {len(found)} package(s) from "
                        f"{len(set(found.values()))} repositories, {len(result.keys)} key(s), "
                        f"{'with' if comps else 'without'} comps in {target}")
    return result


def _rpm_name(filename: str) -> str:
    """The package name of name-version-release.arch.rpm."""
    return filename.rsplit("-", 2)[0]


def _finish(ctx: Context, stage: Path, found: dict[Path, str],
            keys: dict[str, tuple[str, bytes]], comps: bytes | None) -> None:
    shutil.rmtree(stage / ".work")
    (stage / "keys").mkdir()
    for name, data in keys.values():
        (stage / "keys" / name).write_bytes(data)
    key = signing.signing_key(ctx)
    (stage / "keys" / signing.KEY_FILE).write_text(key.public)
    argv = ["createrepo_c", "--quiet", "--no-database", str(stage)]
    if comps is not None:
        (stage / "comps.xml").write_bytes(comps)
        argv[1:1] = ["-g", str(stage / "comps.xml")]
    ctx.runner.run(argv)
    signing.sign_file(ctx, key, stage / "repodata" / "repomd.xml")
    lines = ["# package\tsource repository\tsha256"]
    for path, repo in sorted(found.items()):
        lines.append(f"{path.name}\t{repo}\t{hashlib.sha256(path.read_bytes()).hexdigest()}")
    atomic_write(stage / "packages.txt", "\n".join(lines) + "\n")
    log.info("mirror: %d package(s) checked and indexed", len(found))
