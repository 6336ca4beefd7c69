"""Package plans and RPM spec rendering (pure), and the `specs` stage that writes them.

For each package (pgha-common and one per role the cluster uses) the plan holds its Requires,
its payload files (rendered role files, firewalld service definitions, the role marker, the
agent) with owner and mode, and its directories. `render_spec` turns a plan into spec text;
`payload_tar` packs the payload deterministically (fixed mtime, owner, order) as Source0.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from builder import __version__
from builder.core.context import Context
from builder.core.fsutil import atomic_write
from builder.core.state import Artifact, artifact, cached_stage, input_key
from builder.model import roles
from builder.model.roles import COMMON, Role
from builder.stages import quoting, render

RELEASE = "1"
SPEC_TEMPLATE = Path("specs/pgha-role.spec.j2")
FIREWALLD_TEMPLATE = Path("specs/partials/firewalld-service.xml.j2")


@dataclass(frozen=True)
class FileEntry:
    dest: str
    content: bytes
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    config: bool = False


@dataclass(frozen=True)
class DirEntry:
    path: str
    mode: str = "0755"
    owner: str = "root"
    group: str = "root"


@dataclass
class Package:
    name: str
    role: Role
    version: str = __version__
    release: str = RELEASE
    requires: list[str] = field(default_factory=list)
    requires_pre: list[str] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    directories: list[DirEntry] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    changelog_date: str = ""

    @property
    def restart_on(self) -> dict[str, list[str]]:
        """Service -> the files of this package it reads (its drop-ins): on upgrade the spec
        try-restarts exactly the services whose files changed (%pre notes, %posttrans
        compares)."""
        out: dict[str, list[str]] = {}
        for f in self.files:
            folder = PurePosixPath(f.dest).parent.name
            if folder.endswith(".service.d"):
                out.setdefault(folder.removesuffix(".service.d"), []).append(f.dest)
        return out

    @property
    def source(self) -> str:
        return f"{self.name}-{self.version}-payload.tar.gz"


def roles_in_use(ctx: Context) -> list[Role]:
    names = sorted({r for n in ctx.cluster.nodes for r in n.roles})
    return [roles.get(COMMON), *(roles.get(n) for n in names)]


def _pinned(name: str, pins: dict[str, str]) -> str:
    """A Requires token, with its pinned version: only validated spec tokens (quoting.spec)."""
    return quoting.spec(f"{name} = {pins[name]}" if name in pins else name)


def _role_files(role: Role, context: dict[str, Any]) -> list[FileEntry]:
    out = []
    for pf in role.files:
        src = role.folder / pf.src
        dest = render.render_string(pf.dest, context)
        sources = sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                         and p.suffix != ".pyc") if src.is_dir() else [src]
        for path in sources:
            target = str(PurePosixPath(dest) / path.relative_to(src)) if src.is_dir() else dest
            content = (render.render_file(path, context).encode() if pf.render
                       else path.read_bytes())
            out.append(FileEntry(target, content, pf.mode, pf.owner, pf.group, pf.config))
    return out


def firewall_files(role: Role, context: dict[str, Any]) -> list[FileEntry]:
    out = []
    for svc in role.firewall:
        ports = [context["ports"][p] for p in svc.ports]
        text = render.render_file(render.template(FIREWALLD_TEMPLATE),
                                  {**context, "service": svc, "service_ports": ports})
        dest = f"{context['layout'].firewalld_services_dir}/{svc.name}.xml"
        out.append(FileEntry(dest, text.encode()))
    return out


def _owned_dirs(files: list[FileEntry], declared: list[DirEntry]) -> list[DirEntry]:
    """Own the systemd drop-in folders; every other folder is declared in role.yaml."""
    have = {d.path for d in declared}
    extra = set()
    for f in files:
        for parent in PurePosixPath(f.dest).parents:
            p = str(parent)
            if p not in have and p.endswith(".service.d"):
                extra.add(p)
    return declared + [DirEntry(p) for p in sorted(extra)]


def plan(ctx: Context, role: Role) -> Package:
    context = render.base_context(ctx.cluster)
    pins = ctx.cluster.pins
    pkg = Package(name=role.package, role=role, release=str(ctx.cluster.release))
    pkg.requires = [_pinned(render.render_string(r, context), pins) for r in role.requires]
    pkg.requires_pre = [render.render_string(r, context) for r in role.requires_pre]
    if role.name != COMMON:
        pkg.requires.insert(0, "pgha-common = %{version}")
    files = _role_files(role, context) + firewall_files(role, context)
    if role.name != COMMON:
        files.append(FileEntry(f"/etc/pgha/roles.d/{role.name}", f"{role.name}\n".encode()))
    pkg.files = sorted(files, key=lambda f: f.dest)
    declared = [DirEntry(render.render_string(d.path, context), d.mode, d.owner, d.group)
                for d in role.directories]
    pkg.directories = sorted(_owned_dirs(pkg.files, declared), key=lambda d: d.path)
    pkg.units = list(role.enable_units)
    pkg.changelog_date = time.strftime("%a %b %d %Y", time.gmtime(ctx.epoch))
    return pkg


def render_spec(ctx: Context, pkg: Package) -> str:
    context = {**render.base_context(ctx.cluster), "pkg": pkg, "role": pkg.role}
    return render.render_file(render.template(SPEC_TEMPLATE), context)


def payload_tar(pkg: Package, epoch: int) -> bytes:
    """A reproducible tar.gz of payload/<dest> for every file: same input, same bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for f in pkg.files:
            info = tarfile.TarInfo("payload" + f.dest)
            info.size = len(f.content)
            info.mtime = epoch
            info.mode = int(f.mode, 8)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(f.content))
    return gzip.compress(buf.getvalue(), compresslevel=9, mtime=0)


@dataclass(frozen=True)
class Spec:
    """A package as the `specs` step wrote it: its plan, spec file and payload (Source0)."""

    package: Package
    spec: Path
    source: Path


@dataclass(frozen=True)
class SpecsResult:
    """The `specs` step's result: one Spec per package, pgha-common first."""

    specs: list[Spec]
    artifacts: list[Artifact]


def write_specs(ctx: Context) -> SpecsResult:
    """The `specs` step: output/<cluster>/specs/<pkg>.spec and its payload tar, one owner
    (state "specs-<pkg>") per package."""
    out: list[Spec] = []
    arts: list[Artifact] = []
    written = []
    for role in roles_in_use(ctx):
        p = plan(ctx, role)
        spec, tar = render_spec(ctx, p), payload_tar(p, ctx.epoch)
        done = Spec(p, ctx.out.specs / f"{p.name}.spec", ctx.out.specs / p.source)
        mine = [artifact(ctx.out, "spec", done.spec, role=role.name),
                artifact(ctx.out, "source", done.source, role=role.name)]

        def write(done: Spec = done, spec: str = spec, tar: bytes = tar) -> None:
            atomic_write(done.spec, spec)
            atomic_write(done.source, tar)
            written.append(done.package.name)

        key = input_key("specs", __version__, p.name, spec, tar.hex())
        arts += cached_stage(ctx, f"specs-{p.name}", key, mine, write)
        out.append(done)
    ctx.messages.append(f"specs: wrote {', '.join(written)} to {ctx.out.specs}" if written
                        else "specs: up to date")
    return SpecsResult(out, arts)
