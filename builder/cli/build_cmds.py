"""Commands that build artifacts: specs, rpms, kickstart, build."""

from __future__ import annotations

import click

from builder import pipeline, roles
from builder.cli import App, cli, pass_app
from builder.kickstart import write_kickstarts
from builder.lint import lint_rpms

force_option = click.option("--force", is_flag=True, help="Rebuild even if inputs are unchanged.")


@cli.command()
@force_option
@pass_app
def specs(app: App, force: bool) -> None:
    """Render the RPM spec files to OUTPUT/<cluster>/specs/."""
    pipeline.run_steps(app.context(force), [pipeline.SPECS, pipeline.MANIFEST])


@cli.command()
@force_option
@click.option("--lint/--no-lint", default=False, help="Run rpmlint (project config) after.")
@pass_app
def rpms(app: App, force: bool, lint: bool) -> None:
    """Build the noarch RPMs and SRPMs with rpmbuild, and the dnf repository metadata."""
    ctx = app.context(force)
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS, pipeline.MANIFEST])
    if lint:
        click.echo(lint_rpms(ctx))


@cli.command()
@click.option("--role", "role_names", multiple=True, metavar="ROLE",
              help="Only this role (repeatable). Default: every role the cluster uses.")
@force_option
@pass_app
def kickstart(app: App, role_names: tuple[str, ...], force: bool) -> None:
    """Render and validate one RHEL 8 kickstart per role to OUTPUT/<cluster>/kickstart/."""
    for name in role_names:
        roles.get(name)
    ctx = app.context(force)
    step = ("kickstart", lambda c: write_kickstarts(c, sorted(role_names) or None))
    pipeline.run_steps(ctx, [step, pipeline.MANIFEST])


@cli.command()
@force_option
@pass_app
def build(app: App, force: bool) -> None:
    """Everything: specs, RPMs and repository, kickstarts, manifest and SHA256SUMS."""
    ctx = app.context(force)
    pipeline.run_steps(ctx, pipeline.BUILD)
    click.echo(f"built cluster '{ctx.cluster.name}' in {ctx.out.root}")
