"""`pgha-build lab ...`: the cluster booted on this machine in network namespaces (root).

The lab modules are imported inside the commands, so `pgha-build --help` stays light.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import click

from builder.cli import App, cli, pass_app
from builder.cli.labapp import lab_of, running_lab
from builder.core.errors import PghaError

if TYPE_CHECKING:
    from builder.lab.lab import Lab
    from builder.lab.machine import Machine


# Day-2 commands live in lab_day2_cmds, loaded only when one of them runs (or for --help).
DAY2 = ("add", "backup", "config", "remove", "replace", "restart", "restore", "upgrade", "verify")


class LabGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(DAY2) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in DAY2 and cmd_name not in self.commands:
            from builder.cli import lab_day2_cmds

            for name, command in lab_day2_cmds.COMMANDS.items():
                self.add_command(command, name)
        return self.commands.get(cmd_name)


@cli.group(cls=LabGroup)
def lab() -> None:
    """The cluster on this machine: one network namespace per node, real etcd, PostgreSQL 15,
    Patroni and HAProxy, reached from the host on 127.0.0.1 (needs root)."""


@lab.command()
@click.option("--nodes", "only", metavar="NODE[,NODE...]",
              help="Boot only these nodes (e.g. bring a killed node back). Default: all.")
@click.option("--timeout", default=120, show_default=True, help="Seconds to wait for health.")
@click.option("--engine", type=click.Choice(["process", "systemd", "vm"]), default=None,
              help="process: the agents start the services as processes (default); systemd: "
                   "each node a machine with systemd as PID 1, booted from a Debian image with "
                   "the role RPMs and its seed ISO (docs/lab-systemd.md); vm: each node a QEMU "
                   "machine booted from its role's disk image (images --backend debian12) with "
                   "its seed ISO as a CD-ROM (docs/lab-vm.md). Default: the running lab's "
                   "engine.")
@click.option("--monitoring", "with_monitoring", is_flag=True,
              help="Also start a real Prometheus in its own namespace that scrapes every node "
                   "with the cluster's scrape configuration and alert rules (`lab alerts`; "
                   "docs/monitoring.md), at lab-only intervals (2 s scrapes, 6 s `for:`; a real "
                   "cluster keeps its file's values). Again on a running lab: it re-reads them.")
@click.option("--data-fs", "data_fs", type=click.IntRange(64, 4096), metavar="MB", default=None,
              help="Put each db node's PostgreSQL data on a file system of its own of MB MiB "
                   "(a tmpfs with size=; 64-4096), so that `lab soak` can fill a primary's disk "
                   "(docs/soak.md). Kept for later boots of the lab; `lab down` removes it.")
@pass_app
def up(app: App, only: str | None, timeout: int, engine: str | None,
       with_monitoring: bool, data_fs: int | None) -> None:
    """Build what is missing, boot every node from its seed, wait until healthy."""
    from builder.lab.lab import up as lab_up

    lab_ = lab_of(app, engine)
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    for name in names or []:
        lab_.net.node(name)
    t = lab_up(lab_, names, timeout=timeout, engine=engine, data_fs_mb=data_fs)
    p = lab_.ports()
    click.echo(f"lab '{lab_.cluster.name}' is up: writes after {t['rw_s']:.1f}s, reads after "
               f"{t['ro_s']:.1f}s, able to fail over after {t['ready_s']:.1f}s "
               f"({t['total_s']:.1f}s in all, build included)")
    click.echo(f"  read-write  127.0.0.1:{p['rw']}  -> HAProxy {lab_.entry}:{p['rw']} "
               "-> primary")
    click.echo(f"  read-only   127.0.0.1:{p['ro']}  -> HAProxy {lab_.entry}:{p['ro']} "
               "-> replicas")
    if lab_.vip:
        lbs = " or ".join(n.name for n in lab_.lb_nodes)
        click.echo(f"  {lab_.vip} is the virtual IP: keepalived gives it to {lbs} "
                   "(`lab status` shows which)")
    scheme = "https" if lab_.cluster.tls.enabled else "http"
    click.echo(f"  stats       {scheme}://127.0.0.1:{p['stats']}/  (user and password in "
               f"{lab_.output.secrets})")
    dsn = " ".join(f"{k}={v}" for k, v in lab_.sql().dsn(p["rw"]).items())
    click.echo(f"  psql: pgha-build lab psql [--ro]   or   psql \"{dsn}\"")
    click.echo("  inside a node: ip netns exec "
               f"{lab_.net.node(lab_.cluster.nodes[0].name).netns} <command>")
    if with_monitoring:
        from builder.lab import monitor

        click.echo(f"  prometheus  {monitor.up(lab_, timeout)}  (from inside the lab; "
                   "`pgha-build lab alerts` lists what fires)")


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--all", "pending", is_flag=True, help="Pending alerts too (not only firing).")
@pass_app
def alerts(app: App, as_json: bool, pending: bool) -> None:
    """The alerts the lab's Prometheus fires now (`lab up --monitoring`), with their summary;
    exit status 0 whether or not any fires."""
    from builder.lab import monitor

    items = [a for a in monitor.alerts(running_lab(app)) if pending or a["state"] == "firing"]
    click.echo(json.dumps(items, indent=2) if as_json else monitor.table(items))


@lab.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Members, roles, lag, timeline, HAProxy's backends, and who holds the virtual IP."""
    from builder.lab.status import collect, table

    data = collect(lab_of(app))
    click.echo(json.dumps(data, indent=2) if as_json else table(data))


@lab.command()
@click.option("--ro", is_flag=True, help="The read-only port (replicas) instead.")
@click.argument("psql_args", nargs=-1)
@pass_app
def psql(app: App, ro: bool, psql_args: tuple[str, ...]) -> None:
    """A psql session through HAProxy (127.0.0.1:5000, or 6000 with --ro)."""
    lab_ = running_lab(app)
    exe = shutil.which("psql")
    if exe is None:
        raise PghaError("psql not found", hint="apt-get install postgresql-client")
    su = lab_.secrets().superuser
    port = lab_.ports()["ro" if ro else "rw"]
    env = {**os.environ, "PGPASSWORD": su.password}
    dsn = " ".join(f"{k}={v}" for k, v in lab_.sql().dsn(port).items())
    os.execve(exe, [exe, dsn, *psql_args], env)


@lab.command("rotate-certs")
@pass_app
def rotate_certs(app: App) -> None:
    """New node certificates from the lab's CA, applied to every running node by its agent
    (reload, no restart): what `seeds --rotate-certs` and the agent do on real nodes."""
    from builder.lab import tlsops

    lab_ = running_lab(app)
    if not lab_.cluster.tls.enabled:
        raise PghaError("this lab runs without TLS (tls: false)", hint="nothing to rotate")
    done = tlsops.rotate_certs(lab_)
    click.echo(f"rotated {len(done['reissued'])} certificate(s) from the same CA, applied to "
               f"every node in {done['applied_s']:.1f}s")


@lab.command()
@click.argument("node")
@pass_app
def kill(app: App, node: str) -> None:
    """SIGKILL every process of NODE (a crashed host)."""
    from builder.lab import faults

    lab_ = running_lab(app)
    click.echo(f"killed {faults.kill(lab_, node)} process(es) of {node}")


@lab.command()
@click.argument("node")
@pass_app
def partition(app: App, node: str) -> None:
    """Cut NODE off the network (its link down)."""
    from builder.lab import faults

    lab_ = running_lab(app)
    faults.partition(lab_, node)
    click.echo(f"{node} is cut off (pgha-build lab heal {node})")


@lab.command()
@click.argument("node")
@pass_app
def heal(app: App, node: str) -> None:
    """Reconnect NODE after a partition."""
    from builder.lab import faults

    lab_ = running_lab(app)
    faults.heal(lab_, node)
    click.echo(f"{node} is connected again")


@lab.command()
@click.option("--to", "candidate", metavar="NODE", help="The new primary (default: Patroni's).")
@pass_app
def switchover(app: App, candidate: str | None) -> None:
    """A planned switchover through Patroni's REST API."""
    from builder.lab import faults

    lab_ = running_lab(app)
    result = faults.switchover(lab_, candidate)
    click.echo(f"switched over from {result['from']} to {result['to']}")


@lab.command()
@pass_app
def down(app: App) -> None:
    """Stop everything; remove namespaces, links, routes and the lab's data."""
    from builder.lab.lab import down as lab_down
    from builder.lab.lab import leftovers

    lab_ = lab_of(app)
    lab_down(lab_)
    left = leftovers(lab_)
    if left:
        raise PghaError("lab down left things behind: " + "; ".join(left))
    click.echo(f"lab '{lab_.cluster.name}' is down: no process, namespace, route or file left")


def _vm_lab(app: App) -> Lab | None:
    from builder.lab.lab import engine_of

    lab_ = running_lab(app)
    return lab_ if engine_of(lab_) == "vm" else None


def _machine(app: App, node: str) -> tuple[Lab, Machine]:
    from builder.lab import machine, sysboot

    lab_ = running_lab(app)
    lab_.net.node(node)
    m = sysboot.machines(lab_, [node])[0]
    if machine.pid1(m) is None:
        raise PghaError(f"{node} is not running as a machine",
                        hint="lab exec and lab reboot need `pgha-build lab up --engine systemd`")
    return lab_, m


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def exec_(app: App, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside NODE's machine, e.g. `lab exec db1 -- systemctl status patroni`
    (a VM's through its QEMU guest agent)."""
    from builder.lab import machine

    if _vm_lab(app) is not None:
        from builder.lab import vmboot

        code, out, err = vmboot.exec_in(running_lab(app), node, list(command))
        click.echo(out, nl=False)
        click.echo(err, nl=False, err=True)
        sys.exit(code)
    _lab, m = _machine(app, node)
    pid = machine.pid1(m)
    argv = ["nsenter", "-t", str(pid), "-a", "-r", "-w", *command]
    sys.exit(subprocess.run(argv, check=False).returncode)


@lab.command()
@click.argument("node")
@pass_app
def reboot(app: App, node: str) -> None:
    """Reboot NODE's machine (`systemctl reboot` inside; it boots again)."""
    from builder.lab import machine

    if _vm_lab(app) is not None:
        from builder.lab import vmboot

        state = vmboot.reboot(running_lab(app), node)
        click.echo(f"{node} rebooted: a new kernel boot, system {state}")
        return

    lab_, m = _machine(app, node)
    pid = machine.reboot(lab_.runner, m)
    state = machine.wait_settled(lab_.runner, m, 120)
    click.echo(f"{node} rebooted: PID 1 is now host pid {pid}, system {state}")


@lab.command()
@click.option("--minutes", default=2.0, show_default=True, type=click.FloatRange(0.1),
              help="How long the nemesis injects faults (then: heal, wait, check).")
@click.option("--seed", type=int, default=None,
              help="The schedule's seed (default: from the clock, printed); the same seed "
                   "gives the same fault sequence.")
@click.option("--mode", type=click.Choice(["quorum", "sync", "strict", "async"]), default=None,
              help="Replication mode for the run (restored afterwards). Default: the "
                   "cluster's current one.")
@click.option("--faults", "kinds", metavar="KIND[,KIND...]",
              help="Only these fault kinds (default: all that apply; see --plan).")
@click.option("--writers", default=3, show_default=True, type=click.IntRange(1, 32))
@click.option("--readers", default=2, show_default=True, type=click.IntRange(0, 32))
@click.option("--stale-bound", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds a read on the read-only port may lag acknowledged writes.")
@click.option("--ready-bound", default=120.0, show_default=True, type=click.FloatRange(1),
              help="Seconds after the last heal the cluster has to be failover-ready again.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
              help="The JSON report (default: output/<cluster>/soak-<seed>.json).")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the first faults the seed gives, and the menu; touch no lab.")
@pass_app
def soak(app: App, minutes: float, seed: int | None, mode: str | None, kinds: str | None,
         writers: int, readers: int, stale_bound: float, ready_bound: float,
         report_path: str | None, plan_only: bool) -> None:
    """Random faults for MINUTES while writers and readers run, then a checker: acknowledged
    writes lost, duplicates, split brain, stale reads, time to writes and to failover-ready
    per fault. Exits 1 when a check fails (docs/soak.md)."""
    import time
    from pathlib import Path

    from builder.lab.soak import nemesis, plan, run

    lab_ = lab_of(app)
    seed = seed if seed is not None else int(time.time()) % 100_000
    names = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    has_fs = nemesis.has_data_fs(lab_) or (plan_only and "disk-full" in (names or []))
    menu = plan.menu_for(names, lab_.vip is not None, has_fs)
    if plan_only:
        click.echo(f"seed {seed}, menu: {', '.join(menu)}")
        for step in plan.first(seed, menu, 12):
            click.echo(f"  {step.line()}")
        return
    lab_ = running_lab(app)
    opts = run.Options(minutes=minutes, seed=seed, mode=mode, kinds=names, writers=writers,
                       readers=readers, stale_bound_s=stale_bound, ready_bound_s=ready_bound)
    result = run.soak(lab_, opts, click.echo)
    path = Path(report_path) if report_path else app.output / lab_.cluster.name / \
        f"soak-{seed}.json"
    run.write(result, path)
    click.echo(run.summary(result))
    click.echo(f"report: {path}")
    if result["failures"]:
        raise PghaError(f"soak failed (seed {seed}): {result['failures'][0]}",
                        hint=f"replay with --seed {seed}; the fault sequence is in {path}")
