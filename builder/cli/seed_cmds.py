"""Commands about per-node seeds: `seeds` writes them, `render` prints what a node would get."""

from __future__ import annotations

import click

from builder.cli import App, cli, pass_app
from builder.cli.model_cmds import LEADER_HELP, leader_gate
from builder.core.errors import ConfigError, PghaError


def _check_hosts(app: App, hosts: tuple[str, ...]) -> None:
    names = [n.name for n in app.cluster.nodes]
    for host in hosts:
        if host not in names:
            raise PghaError(f"unknown host '{host}'", hint=f"hosts: {', '.join(names)}")


@cli.command()
@click.option("--host", "hosts", multiple=True, metavar="HOST",
              help="Only this node (repeatable). Default: every node.")
@click.option("--rotate-secrets", is_flag=True,
              help="Generate new passwords (the running cluster must be changed to match).")
@click.option("--rotate-certs", is_flag=True,
              help="Issue new node certificates from the same CA (the agent applies them to a "
                   "running node by reloading its services).")
@click.option("--adopt-ca", is_flag=True,
              help="Accept a CA in OUTPUT/<cluster>/pki/ that pgha-build did not make (your "
                   "organisation's); its subject is printed and it is recorded in pki/ca.origin.")
@click.option("--force", is_flag=True, help="Rewrite even if inputs are unchanged.")
@pass_app
def seeds(app: App, hosts: tuple[str, ...], rotate_secrets: bool, rotate_certs: bool,
          adopt_ca: bool, force: bool) -> None:
    """Write each node's seed: OUTPUT/<cluster>/seeds/<host>/ and <host>-cidata.iso."""
    from builder.model import tlsplan
    from builder.stages import pipeline
    from builder.stages import seeds as seedmod

    _check_hosts(app, hosts)
    if rotate_secrets and hosts:
        raise PghaError("--rotate-secrets changes every node's passwords: it cannot be "
                        "combined with --host", hint="run `pgha-build seeds --rotate-secrets`")
    if rotate_certs and hosts:
        raise PghaError("--rotate-certs issues every node's certificates: it cannot be "
                        "combined with --host", hint="run `pgha-build seeds --rotate-certs`")
    ctx = app.context(force or rotate_secrets)
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster, rotate=rotate_secrets,
                              rotate_certs=rotate_certs, adopt_ca=adopt_ca)
    step = ("seeds", lambda c: seedmod.write_seeds(c, list(hosts) or None, sec))
    pipeline.run_steps(ctx, [step, pipeline.MANIFEST])
    if rotate_secrets:
        click.echo(f"rotated the secrets in {ctx.out.secrets}", err=True)
    if sec.tls is not None and sec.tls.reissued:
        click.echo(f"issued certificate(s) for {', '.join(sec.tls.reissued)} from the CA in "
                   f"{ctx.out.pki}", err=True)
    click.echo(f"seeds of {', '.join(hosts) or 'every node'} in {ctx.out.seeds}")


@cli.command()
@click.option("--host", required=True, metavar="HOST", help="The node to render.")
@click.option("--file", "file_path", metavar="PATH",
              help="Print only this file's content (its path on the node).")
@pass_app
def render(app: App, host: str, file_path: str | None) -> None:
    """Print the files HOST's seed carries, each after a header `==> path owner:group mode`.

    The output holds the cluster's passwords: do not paste it anywhere public.
    """
    from builder.model import tlsplan
    from builder.stages import seeds as seedmod

    _check_hosts(app, (host,))
    ctx = app.context()
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster)
    files = seedmod.render_seed(ctx, ctx.cluster.node(host), sec)["files"]
    if file_path is not None:
        match = [f for f in files if f["path"] == file_path]
        if not match:
            raise PghaError(f"{host} gets no file {file_path}",
                            hint=f"its files: {', '.join(f['path'] for f in files)}")
        click.echo(match[0]["content"], nl=False)
        return
    for f in files:
        click.echo(f"==> {f['path']} {f['owner']}:{f['group']} {f['mode']}")
        click.echo(f["content"], nl=not f["content"].endswith("\n"))


@cli.command()
@click.option("--leader", metavar="NODE", help=LEADER_HELP)
@pass_app
def plan(app: App, leader: str | None) -> None:
    """Each node's fate for the cluster file against the last build's seeds, before anything
    is applied: new seed (boot a new VM), reload, restart, re-image, remove, or unchanged
    (docs/lifecycle.md). Writes no seed; a new node's certificates are issued as build would."""
    from builder.model import tlsplan
    from builder.stages import plan as planmod

    ctx = app.context()
    problems = planmod.membership_problems(ctx.cluster, ctx.out)
    fates = planmod.plan(ctx, tlsplan.load_secrets(ctx.out, ctx.cluster))
    width = max(len(f.node) for f in fates)
    for fate in fates:
        click.echo(f"{fate.node:<{width}}  {fate.fate:<9}  {fate.detail}".rstrip())
    for problem in problems:
        click.echo(f"error: nodes: {problem}", err=True)
    if not planmod.previous_seeds(ctx.out):
        click.echo(f"(no seeds in {ctx.out.seeds} yet: every node is new)")
    if problems:
        raise ConfigError("the cluster file would lose etcd quorum against the last build",
                          hint="remove fewer etcd members at once (docs/lifecycle.md)")
    leader_gate(app, leader)
