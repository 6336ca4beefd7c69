"""Day-2 commands on a running cluster, through Patroni's REST API with the operator's
certificate from output/<cluster>/pki: `config` (dynamic configuration) and `restart`
(rolling restart). The lab has the same as `lab config` and `lab restart`."""

from __future__ import annotations

import click

from builder.cli import App, cli, pass_app


@cli.command()
@click.option("--apply", "do_apply", is_flag=True,
              help="PATCH /config with the difference, then restart (rolling) the members that "
                   "report a pending restart.")
@click.option("--no-restart", is_flag=True,
              help="With --apply: leave pending restarts; print the rolling restart plan.")
@click.option("--timeout", default=180, show_default=True,
              help="Seconds each step may take to get the cluster failover-ready again.")
@pass_app
def config(app: App, do_apply: bool, no_restart: bool, timeout: int) -> None:
    """Compare the cluster file's dynamic settings (what patroni.yml's bootstrap.dcs holds:
    ttl, loop_wait, retry_timeout, maximum_lag_on_failover, synchronous_mode*, failsafe_mode,
    PostgreSQL parameters) with the running cluster's GET /config, print the difference, and
    with --apply change it (PATCH /config, as `patronictl edit-config`). Parameters that need a
    restart are applied by a rolling restart: replicas first, one switchover, the old primary.
    Settings in a node's local files travel by seed reload instead (docs/changes.md)."""
    from builder.ops import change, target

    tgt = target.of_cluster(app.cluster, app.output)
    change.run(app.cluster, tgt, click.echo, apply=do_apply, restart=not no_restart,
               timeout=timeout)


@cli.command()
@click.option("--rolling", is_flag=True, required=True,
              help="One member at a time (the only kind there is; required to say so).")
@click.option("--all", "everything", is_flag=True,
              help="Every member, not only those with a pending restart.")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the ordered steps (with the patronictl commands) and change nothing.")
@click.option("--timeout", default=180, show_default=True,
              help="Seconds each step may take to get the cluster failover-ready again.")
@pass_app
def restart(app: App, rolling: bool, everything: bool, plan_only: bool, timeout: int) -> None:
    """Rolling restart of PostgreSQL through Patroni: replicas first (each streaming with lag 0
    again before the next), then one switchover, then the old primary. Each step starts only
    from a failover-ready cluster; a failure stops there."""
    from builder.ops import change, target
    from builder.ops import rolling as roll

    tgt = target.of_cluster(app.cluster, app.output)
    steps = roll.plan(roll.view(tgt), everything)
    if plan_only or not steps:
        click.echo(change.plan_text(app.cluster, steps,
                                    "restart" if everything else "pending restart"))
        return
    roll.execute(tgt, steps, click.echo, timeout)


@cli.command("upgrade-plan")
@click.option("--leader", metavar="NODE",
              help="The current primary (as `patronictl list` shows it). Default: asked from "
                   "the running cluster's Patroni REST API.")
@pass_app
def upgrade_plan(app: App, leader: str | None) -> None:
    """Print the ordered steps of a rolling upgrade to the build of this cluster file (raise
    `release` for each build): each db replica (`dnf upgrade` from the new repository, restart
    Patroni, check lag 0 and failover-ready), one switchover, the old primary, then the load
    balancers. Changes nothing; `pgha-build lab upgrade` runs the same steps in the lab."""
    from builder.core.errors import PghaError
    from builder.ops import rolling, target, upgrade

    cluster = app.cluster
    if leader is None:
        leader = rolling.leader(rolling.view(target.of_cluster(cluster, app.output)))
        if leader is None:
            raise PghaError("the running cluster has no leader now",
                            hint="fix that first (`patronictl list`), or pass --leader NODE")
    try:
        steps = upgrade.plan(cluster, leader)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--leader") from None
    click.echo(upgrade.text(cluster, steps, cluster.release))
