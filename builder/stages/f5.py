"""The `f5` stage: output/<cluster>/f5/{as3.json,tmsh.txt,README.md} for `load_balancer.kind: f5`.

The plan (builder/stages/f5plan.py) is rendered three ways: the AS3 declaration (builder/stages/f5as3.py,
dumped as JSON), tmsh commands (resources/f5/tmsh.txt.j2) and the network team's README
(resources/f5/README.md.j2), so the three always describe the same objects. Part of `build`; a
cluster with kind haproxy gets nothing here (and `pgha-build f5` says why). Cached on the
rendered output like the other stages. None of the files holds a secret.

Every value reaching tmsh.txt is typed (names matching the model's patterns, IPv4 addresses,
integers); free text goes through `text()`, which quotes it for tmsh (double quotes, CR/LF
written as \\r \\n as typed in tmsh) and then for bash (single quotes), and refuses characters
either layer would interpret.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.state import Artifact, cached_stage, forget, input_key
from builder.model.cluster import Cluster
from builder.model.f5 import monitor_timing
from builder.stages import f5as3 as as3
from builder.stages import f5plan as plan
from builder.stages import render
from builder.stages.f5plan import Plan

FILES = ("as3.json", "tmsh.txt", "README.md")
TMSH_TEMPLATE = Path("f5/tmsh.txt.j2")
README_TEMPLATE = Path("f5/README.md.j2")
SAFE_TEXT = re.compile(r"^[A-Za-z0-9 ./:,()+_-]*$")


def text(value: str) -> str:
    """A tmsh quoted string, quoted again for bash: `'"GET /primary HTTP/1.0\\r\\n\\r\\n"'`."""
    escaped = value.replace("\r", "\\r").replace("\n", "\\n")
    if not SAFE_TEXT.match(escaped.replace("\\r", "").replace("\\n", "")):
        raise ValueError(f"unsafe characters for tmsh in {value!r}")
    return shlex.quote(f'"{escaped}"')


def _context(p: Plan) -> dict[str, object]:
    return {"p": p, "text": text, "version": __version__,
            "header": render.header()}


def render_tmsh(p: Plan) -> str:
    return render.render_file(render.template(TMSH_TEMPLATE), _context(p))


def render_readme(p: Plan, cluster: Cluster) -> str:
    """README.md for the network team (with the HAProxy settings it replaces)."""
    interval, timeout = monitor_timing(cluster)
    ctx = {**_context(p), "cluster": cluster, "schema_version": as3.SCHEMA_VERSION,
           "interval": interval, "timeout": timeout}
    return render.render_file(render.template(README_TEMPLATE), ctx)


def render_all(ctx: Context) -> dict[str, str]:
    """File name -> text, for a cluster with kind f5."""
    p = plan.plan(ctx.cluster)
    return {
        "as3.json": dump(as3.declaration(p)),
        "tmsh.txt": render_tmsh(p),
        "README.md": render_readme(p, ctx.cluster),
    }


def dump(decl: dict[str, Any]) -> str:
    return json.dumps(decl, indent=2) + "\n"


def write_f5(ctx: Context) -> list[Artifact]:
    """The pipeline step: writes the F5 files when the cluster's load balancer is a BIG-IP."""
    if ctx.cluster.load_balancer.kind != "f5":  # files of an earlier kind f5 are not kept
        forget(ctx.out, "f5")
        for name in FILES:
            (ctx.out.root / "f5" / name).unlink(missing_ok=True)
        return []
    rendered = render_all(ctx)
    folder = ctx.out.root / "f5"
    key = input_key("f5", __version__, sorted(rendered.items()))
    arts = [Artifact("f5", f"f5/{name}") for name in FILES]

    def write() -> None:
        for name in FILES:
            atomic_write(folder / name, rendered[name],
                         mode=0o755 if name == "tmsh.txt" else 0o644)
        ctx.messages.append(f"f5: wrote {', '.join(FILES)} to {folder}")

    return cached_stage(ctx, "f5", key, arts, write, fresh="f5: up to date")


def require_f5(cluster: Cluster) -> None:
    if cluster.load_balancer.kind != "f5":
        raise PghaError(
            f"cluster '{cluster.name}' uses HAProxy (load_balancer.kind is haproxy)",
            hint="set load_balancer.kind: f5 and load_balancer.virtual_ip in the cluster file, "
                 "and remove the haproxy nodes")
