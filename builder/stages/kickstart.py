"""Kickstarts: render one RHEL 8 kickstart per role (pure), validate it with pykickstart's RHEL 8
handler (the parser Anaconda uses), and the `kickstart` stage that writes them.

A kickstart passes only with no error and no warning: deprecations count as failures, since
Anaconda may drop a deprecated command in a later RHEL 8 minor release.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from builder import __version__
from builder.core.context import Context
from builder.core.errors import ValidationFailed
from builder.core.fsutil import atomic_write
from builder.core.state import Artifact, artifact, cached_stage, input_key
from builder.model import roles
from builder.model.roles import Role
from builder.stages import render, signing

ROLE_TEMPLATE = Path("kickstart/role.ks.j2")


def role_context(ctx: Context, role: Role) -> dict[str, object]:
    context = render.base_context(ctx.cluster)
    carried = roles.carried(ctx.cluster.nodes, role.name)
    data_volume = next((r.data_volume for r in carried if r.data_volume), None)
    volume = render.render_string(data_volume, context) if data_volume else None
    packages = [r.package for r in carried]
    return {**context, **signing.kickstart_context(ctx, packages), "role": role,
            "carried": carried, "packages": packages, "data_volume": volume}


def render_role(ctx: Context, role: Role) -> str:
    return render.render_file(render.template(ROLE_TEMPLATE), role_context(ctx, role))


def validate(text: str, name: str) -> list[str]:
    """Problems pykickstart's RHEL 8 parser finds: errors and warnings, each with its line."""
    # Imported here: pykickstart takes ~0.3 s to import, and cached builds never need it.
    from pykickstart.errors import KickstartError
    from pykickstart.parser import KickstartParser
    from pykickstart.version import RHEL8, makeVersion

    parser = KickstartParser(makeVersion(RHEL8), errorsAreFatal=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            parser.readKickstartFromString(text)
        except KickstartError as exc:
            line = getattr(exc, "lineno", None)
            where = f" line {line}" if line else ""
            lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
            detail = " ".join(lines[1:] or lines) or type(exc).__name__
            return [f"{name}{where}: {detail}"]
        except ValueError as exc:  # shlex: an unbalanced quote in a command line
            return [f"{name}: cannot split a command line: {exc}"]
    return [f"{name}: warning: {w.message}" for w in caught]


def render_all(ctx: Context, role_names: list[str] | None = None) -> dict[str, str]:
    names = role_names or sorted(roles.image_roles(ctx.cluster.nodes))
    return {n: render_role(ctx, roles.get(n)) for n in names}


def check_all(ctx: Context, role_names: list[str] | None = None) -> dict[str, str]:
    """Render and validate the kickstart of each role; raise on any problem."""
    return check_rendered(render_all(ctx, role_names))


def require_valid(kickstarts: dict[str, str],
                   hint: str = "fix the kickstart templates under kickstart/"
                   ) -> None:
    """Validate each kickstart (file name -> text); one error naming every problem."""
    problems = [p for name, text in kickstarts.items() for p in validate(text, name)]
    if problems:
        raise ValidationFailed(f"kickstart validation failed: {'; '.join(problems)}", hint=hint)


def check_rendered(rendered: dict[str, str]) -> dict[str, str]:
    require_valid({f"{n}.ks": text for n, text in rendered.items()})
    return rendered


@dataclass(frozen=True)
class KickstartResult:
    """The `kickstart` step's result: each written role's kickstart file, by role name."""

    files: dict[str, Path]
    artifacts: list[Artifact]


def write_kickstarts(ctx: Context, role_names: list[str] | None = None) -> KickstartResult:
    """The `kickstart` step: kickstart/<role>.ks for each role image (a role that some node has
    first; or only `role_names`), each
    validated, each owned by its own state "kickstart-<role>" whichever command wrote it."""
    rendered = render_all(ctx, role_names)
    files = {n: ctx.out.kickstart / f"{n}.ks" for n in rendered}
    arts: list[Artifact] = []
    written = []
    for name, text in rendered.items():
        def write(name: str = name, text: str = text) -> None:
            check_rendered({name: text})
            atomic_write(files[name], text)
            written.append(name)

        arts += cached_stage(ctx, f"kickstart-{name}",
                             input_key("kickstart", __version__, name, text),
                             [artifact(ctx.out, "kickstart", files[name], role=name)], write)
    ctx.messages.append(f"kickstart: wrote {', '.join(written)} to {ctx.out.kickstart}" if written
                        else "kickstart: up to date (validated when written)")
    return KickstartResult(files, arts)
