"""Commands that build artifacts: specs, rpms, kickstart, build.

Heavy modules (model, templates, validators) are imported inside the commands, so that the
warm path of `build` (builder.core.fastpath) stays a few milliseconds of work.
"""

from __future__ import annotations

import click

from builder.cli import App, cli, pass_app

force_option = click.option("--force", is_flag=True, help="Rebuild even if inputs are unchanged.")


@cli.command()
@force_option
@pass_app
def specs(app: App, force: bool) -> None:
    """Render the RPM spec files to OUTPUT/<cluster>/specs/."""
    from builder.stages import pipeline

    pipeline.run_steps(app.context(force), [pipeline.SPECS, pipeline.MANIFEST])


@cli.command()
@force_option
@click.option("--lint/--no-lint", default=False, help="Run rpmlint (project config) after.")
@pass_app
def rpms(app: App, force: bool, lint: bool) -> None:
    """Build the noarch RPMs and SRPMs with rpmbuild, and the dnf repository metadata."""
    from builder.stages import pipeline
    from builder.stages.lint import lint_rpms

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
    from builder.model import roles
    from builder.stages import pipeline
    from builder.stages.kickstart import write_kickstarts

    for name in role_names:
        roles.get(name)
    ctx = app.context(force)
    step = ("kickstart", lambda c: write_kickstarts(c, sorted(role_names) or None))
    pipeline.run_steps(ctx, [step, pipeline.MANIFEST])


@cli.command()
@force_option
@pass_app
def build(app: App, force: bool) -> None:
    """Everything: specs, RPMs and repository, kickstarts, seeds, manifest and SHA256SUMS.

    Unchanged inputs (cluster file, tool, SOURCE_DATE_EPOCH) and intact outputs: nothing runs.
    """
    from builder.core import fastpath

    digest = fastpath.input_digest(app.cluster_file, "build")
    root = None if force or digest is None else fastpath.fresh(app.output, digest)
    if root is not None:
        click.echo(f"up to date: cluster artifacts in {root} (inputs unchanged)")
        return
    from builder.stages import pipeline

    ctx = app.context(force)
    pipeline.run_steps(ctx, pipeline.BUILD)
    if digest is not None:
        fastpath.record(app.output, digest, ctx.out.root)
    click.echo(f"built cluster '{ctx.cluster.name}' in {ctx.out.root}")


@cli.command()
@click.option("--no-groups", is_flag=True,
              help="Leave the kickstarts' package groups (@^minimal-environment) to the install "
                   "media instead of mirroring their members and the BaseOS comps.")
@pass_app
def mirror(app: App, no_groups: bool) -> None:
    """Make OUTPUT/<cluster>/mirror/: one signed repository of every package the cluster
    installs (the pgha RPMs and their whole dependency closure from the cluster's repos, as dnf
    resolves each role's kickstart), each package's signature checked, plus the GPG key files.

    Run it on a connected build host (RHEL 8.10 with the subscription, or any host with dnf
    that reaches the repositories); copy the folder to the closed site, serve it, and set
    repos.mirror to its URL: kickstarts, images, PXE and the nodes' pgha.repo then use it alone
    (docs/airgap.md).
    """
    from builder.stages import mirror as mirror_stage
    from builder.stages import pipeline

    ctx = app.context()
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS, pipeline.MANIFEST])
    result = mirror_stage.build_mirror(ctx, groups=not no_groups)
    for line in ctx.messages[-1:]:
        click.echo(line)
    click.echo(f"mirror: serve {result.root} and set repos.mirror to its URL (docs/airgap.md)")
