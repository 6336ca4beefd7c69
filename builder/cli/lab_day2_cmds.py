"""`pgha-build lab` day-2 commands: change the running lab (config, rolling restart, upgrade),
back it up and restore it, replace, add and remove nodes. Loaded by the `lab` group
(builder/cli/lab_cmds.py) only when one of them runs.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from builder.cli import App, pass_app
from builder.cli.labapp import running_lab
from builder.core.errors import PghaError


def _node_command(func: Callable[..., None]) -> Callable[..., None]:
    """NODE and --timeout, as replace, add and remove take them."""
    func = click.option("--timeout", default=180, show_default=True,
                        help="Seconds to wait until the cluster can fail over again.")(func)
    return click.argument("node")(func)

@click.command()
@click.option("--apply", "do_apply", is_flag=True,
              help="PATCH /config with the difference, then restart (rolling) the members that "
                   "report a pending restart.")
@click.option("--no-restart", is_flag=True,
              help="With --apply: leave pending restarts (`lab status` shows them).")
@click.option("--timeout", default=120, show_default=True,
              help="Seconds each step may take to get the cluster failover-ready again.")
@pass_app
def config(app: App, do_apply: bool, no_restart: bool, timeout: int) -> None:
    """`pgha-build config` on the lab: the cluster file's dynamic settings against the running
    lab's GET /config; --apply PATCHes them and restarts pending members one at a time
    (replicas, one switchover, the old primary)."""
    from builder.lab import changes
    from builder.ops import change

    lab_ = running_lab(app)
    change.run(lab_.cluster, changes.target(lab_), click.echo, apply=do_apply,
               restart=not no_restart, timeout=timeout,
               restart_command="pgha-build lab restart --rolling")


@click.command()
@click.option("--rolling", is_flag=True, required=True,
              help="One member at a time (the only kind there is; required to say so).")
@click.option("--all", "everything", is_flag=True,
              help="Every member, not only those with a pending restart.")
@click.option("--plan", "plan_only", is_flag=True, help="Print the steps; change nothing.")
@click.option("--timeout", default=120, show_default=True,
              help="Seconds each step may take to get the cluster failover-ready again.")
@pass_app
def restart(app: App, rolling: bool, everything: bool, plan_only: bool, timeout: int) -> None:
    """Rolling restart of the lab's PostgreSQL: replicas first, one switchover, the old
    primary; each step from a failover-ready cluster."""
    from builder.lab import changes
    from builder.ops import change
    from builder.ops import rolling as roll

    lab_ = running_lab(app)
    tgt = changes.target(lab_)
    steps = roll.plan(roll.view(tgt), everything)
    if plan_only or not steps:
        click.echo(change.plan_text(lab_.cluster, steps,
                                    "restart" if everything else "pending restart",
                                    "pgha-build lab restart --rolling"))
        return
    roll.execute(tgt, steps, click.echo, timeout)


@click.command()
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the steps (as `pgha-build upgrade-plan` would); change nothing.")
@click.option("--timeout", default=120, show_default=True,
              help="Seconds each node may take to be back and the cluster failover-ready.")
@pass_app
def upgrade(app: App, plan_only: bool, timeout: int) -> None:
    """Rolling upgrade of the lab to the build of the cluster file's `release` (raise it):
    replicas one at a time (rpm -U into the node, Patroni restarted, lag 0 and failover-ready
    before the next), one switchover, the old primary, the load balancers. A node that does
    not come back is rolled back and the upgrade stops, the cluster failover-ready."""
    from builder.lab import changes
    from builder.lab import upgrade as lab_upgrade
    from builder.ops import rolling
    from builder.ops import upgrade as ops_upgrade

    lab_ = running_lab(app)
    if plan_only:
        leader = rolling.leader(rolling.view(changes.target(lab_)))
        if leader is None:
            raise PghaError("the lab has no leader now", hint="see `pgha-build lab status`")
        click.echo(ops_upgrade.text(lab_.cluster, ops_upgrade.plan(lab_.cluster, leader),
                                    lab_.cluster.release))
        return
    lab_upgrade.run(lab_, click.echo, timeout)
    click.echo(f"lab '{lab_.cluster.name}' runs release {lab_.cluster.release} on every node")


@click.command(name="backup")
@click.option("--type", "kind", type=click.Choice(["full", "diff", "incr"]), default="full",
              show_default=True, help="full: every file; diff: changed since the last full; "
              "incr: changed since the last backup of any type.")
@click.option("--restore-point", "point", metavar="NAME",
              help="Take no backup: mark a named restore point on the primary now "
              "(pg_create_restore_point) and archive it, for `lab restore --name NAME` "
              "(e.g. before a migration).")
@pass_app
def backup_(app: App, kind: str, point: str | None) -> None:
    """Back up the cluster now with pgBackRest, on the repository node (the backup role),
    from whichever node is the primary, as its systemd timers do; or mark a named restore
    point (docs/backup.md)."""
    import time

    from builder.lab import backup

    lab_ = running_lab(app)
    if point is not None:
        lsn = backup.restore_point(lab_, point)
        click.echo(f"restore point {point!r} at {lsn}, archived in the repository on "
                   f"{backup.repo_node(lab_).name}: pgha-build lab restore --name {point}")
        return
    t0 = time.monotonic()
    last = backup.run_backup(lab_, kind)
    click.echo(f"backup {last['label']} ({last['type']}) done in {time.monotonic() - t0:.1f}s: "
               f"{last['size'] / 1e6:.1f} MB of data, {last['repo_size'] / 1e6:.1f} MB stored "
               f"in the repository on {backup.repo_node(lab_).name}; WAL "
               f"{last['wal_start']}..{last['wal_stop']}")


def _target(target: str | None, name: str | None, latest: bool,
            default_latest: bool = False) -> tuple[str, str | None]:
    """--time T | --name NAME | --latest as (kind, value); exactly one unless a default."""
    given = [k for k, v in (("time", target), ("name", name), ("latest", latest)) if v]
    if not given and default_latest:
        return "latest", None
    if len(given) != 1:
        raise click.UsageError("give exactly one of --time TIME, --name NAME or --latest")
    return given[0], target if given[0] == "time" else name


def _target_options(func: Callable[..., None]) -> Callable[..., None]:
    func = click.option("--latest", is_flag=True, help="The end of the WAL archive.")(func)
    func = click.option("--name", "name", metavar="NAME",
                        help="A named restore point (`lab backup --restore-point NAME`).")(func)
    return click.option("--time", "target", metavar="TIME",
                        help="This moment, e.g. '2026-12-03 17:00:00+00' (with its time "
                        "zone).")(func)


@click.command()
@_target_options
@click.option("--timeout", default=300, show_default=True, help="Seconds per step.")
@pass_app
def restore(app: App, target: str | None, name: str | None, latest: bool, timeout: int) -> None:
    """Point-in-time restore of the whole cluster from the backup repository, to a time, a
    named restore point or the latest: Patroni stopped and its DCS state removed, the restore
    on one node, Patroni leading from the restored data, a new full backup, the other nodes
    restored from it (docs/backup.md)."""
    from builder.lab import restore as restoremod

    kind, value = _target(target, name, latest)
    done = restoremod.restore(running_lab(app), value, timeout, kind=kind)
    ck = done["checksums"]
    click.echo(f"restored to {done['target']} on {done['node']}: data back (pg_checksums: "
               f"{ck['blocks']} blocks, {ck['bad']} bad) after {done['restore_s']}s, leading "
               f"after {done['leader_s']}s, new full backup {done['backup']}, every node "
               f"streaming after {done['ready_s']}s")


@click.command()
@_target_options
@click.option("--query", metavar="SQL",
              help="Also run this query on the restored copy (database postgres) and print "
              "its rows, e.g. to read a dropped table as of --time.")
@pass_app
def verify(app: App, target: str | None, name: str | None, latest: bool,
           query: str | None) -> None:
    """Prove the backup repository restorable without touching the cluster: `pgbackrest
    verify`, a copy restored on the repository node (default: to the end of the archive),
    pg_amcheck on every database of it, pg_checksums on every data file, the copy removed.
    Exits non-zero on any damage (docs/backup.md)."""
    from builder.lab import verify as verifymod

    kind, value = _target(target, name, latest, default_latest=True)
    for line in verifymod.lines(verifymod.verify(running_lab(app), kind, value, query)):
        click.echo(line)


@click.command()
@_node_command
@pass_app
def replace(app: App, node: str, timeout: int) -> None:
    """Re-image NODE: kill it, wipe its disk (folder) and boot it again from the same RPMs and
    seed. A db node's agent rejoins etcd (the stale member removed, added as a learner,
    promoted) and Patroni clones it; a load balancer serves again (the virtual IP, if it held
    it, moved to the other one and stays there). Process and systemd engines
    (docs/lifecycle.md)."""
    from builder.lab import lifecycle

    lab_ = running_lab(app)
    done = lifecycle.replace(lab_, node, timeout)
    what = "streaming and the cluster able to fail over"
    if node in (n.name for n in lab_.lb_nodes):
        what = "every load balancer serving" + (
            f", the virtual IP on {done['vip_holder']}" if done["vip_holder"] else "")
    click.echo(f"{node} replaced: wiped in {done['wipe_s']:.1f}s, {what} "
               f"{done['ready_s']:.1f}s after its boot started")
    click.echo(f"  etcd members: {lifecycle.etcd_line(done['etcd'])}")


@click.command()
@_node_command
@pass_app
def add(app: App, node: str, timeout: int) -> None:
    """Boot NODE, new in the cluster file: the running nodes apply their changed seeds (reload:
    pg_hba, HAProxy backends, etcd and Patroni hosts) while NODE boots from its seed and joins
    (docs/lifecycle.md). Check first with `pgha-build plan`."""
    from builder.lab import lifecycle

    done = lifecycle.add(running_lab(app), node, timeout)
    click.echo(f"{node} added: streaming and the cluster able to fail over after "
               f"{done['ready_s']:.1f}s (every agent done after {done['total_s']:.1f}s)")
    click.echo(f"  etcd members: {lifecycle.etcd_line(done['etcd'])}")


@click.command()
@_node_command
@pass_app
def remove(app: App, node: str, timeout: int) -> None:
    """Shut NODE down after it was deleted from the cluster file; the other nodes apply their
    changed seeds (reload; etcd member removed, HAProxy and pg_hba no longer admit it).
    Refused for the primary: switch over first."""
    from builder.lab import lifecycle

    done = lifecycle.remove(running_lab(app), node, timeout)
    click.echo(f"{node} removed in {done['total_s']:.1f}s (the others reloaded in "
               f"{done['reload_s']:.1f}s)")
    click.echo(f"  etcd members: {lifecycle.etcd_line(done['etcd'])}")


# The commands the `lab` group adds from this module, by their command names.
COMMANDS: dict[str, click.Command] = {cmd.name or "": cmd for cmd in (config, restart, upgrade, backup_, restore, verify, replace, add, remove)}
