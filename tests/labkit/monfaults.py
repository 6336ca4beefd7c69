"""The monitoring faults (issue 22): each injects one real fault into a running lab with its
Prometheus (builder.lab.monitor), names the alerts it must fire, and heals it. The lab test
(tests/test_lab_monitoring.py) runs the cheap ones; bench/monitoring_bench.py runs them all
and writes each alert's fire and resolve times to bench/results/monitoring.md.

A fault function returns a Fault: the (alert, node) pairs that must fire ("" for alerts with
no node label), the alert whose `for:` states the bound (monitoring.fires_within), seconds
added to that bound (a backup that must first grow older than the threshold), and the heal.
Each bound counts from the moment `inject` returns with the fault in place (the split brain:
once the replica is promoted; the VIP on two nodes: once the second node holds it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder.lab import backup, datafs, faults, monitor, vip
from builder.lab.health import wait_until
from builder.lab.lab import Lab
from builder.lab.readiness import leader
from builder.stages import monitoring

Pair = tuple[str, str]


@dataclass
class Fault:
    expected: set[Pair]
    bound_alert: str
    heal: Callable[[], None]
    state: str = "firing"  # "pending": an alert whose literal `for:` (5m, 30m) the lab skips
    delay_s: float = 0.0  # added to the stated bound (the backup age: the threshold to cross)


def alerts_in(lab: Lab, state: str = "firing") -> set[Pair]:
    """(alert, node) of what is in `state` now ("pending" also counts firing ones)."""
    wanted = {"firing"} if state == "firing" else {"firing", "pending"}
    return {(a["labels"]["alertname"], a["labels"].get("node", ""))
            for a in monitor.alerts(lab) if a["state"] in wanted}


def bound(lab: Lab, name: str) -> int:
    """The stated bound of an alert: `for:` + 4 scrapes + 2 s (docs/monitoring.md)."""
    rule = next(r for r in monitoring.rules(lab.cluster) if r["alert"] == name)
    if rule["for"].endswith(("m", "h")):  # literal: the lab shows it pending
        rule = {**rule, "for": "0s"}
    return monitoring.fires_within(lab.cluster, rule)


def wait_alerts(lab: Lab, expected: set[Pair], within: float, state: str = "firing") -> float:
    """Seconds until every expected pair is in `state`; AssertionError after `within`."""
    return watch_alerts(lab, expected, within, state)[0]


def watch_alerts(lab: Lab, expected: set[Pair], within: float,
                 state: str = "firing") -> tuple[float, set[Pair]]:
    """(seconds until every expected pair is in `state`, every other pair that fired while
    waiting); AssertionError after `within`."""
    t0, others = time.monotonic(), set()
    while time.monotonic() - t0 < within:
        now = alerts_in(lab, state)
        others |= alerts_in(lab) - expected
        if expected <= now:
            return time.monotonic() - t0, others
        time.sleep(0.5)
    raise AssertionError(f"{sorted(expected - alerts_in(lab, state))} not {state} within "
                         f"{within:.0f} s (firing: {sorted(alerts_in(lab))})")


def wait_quiet(lab: Lab, within: float, only: set[Pair] | None = None) -> float:
    """Seconds until no alert fires, or (with `only`) none of these pairs is pending or
    firing; AssertionError after `within`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        left = alerts_in(lab) if only is None else alerts_in(lab, "pending") & only
        if not left:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"still active {within:.0f} s after the heal: {sorted(left)}")


def prove(lab: Lab, inject: Callable[[Lab], Fault], quiet_within: float = 60) -> dict[str, Any]:
    """Inject, wait for the expected alerts within the bound (counted from the moment the
    fault is in place, when `inject` returns), heal, wait until quiet: {"fire_s", "bound_s",
    "resolve_s", "also"} (`also`: the other alerts that fired meanwhile); AssertionError if an
    alert is late or stays."""
    fault = inject(lab)
    limit = bound(lab, fault.bound_alert) + fault.delay_s
    try:
        fired, also = watch_alerts(lab, fault.expected, limit, fault.state)
    finally:
        fault.heal()
    t1 = time.monotonic()
    wait_quiet(lab, quiet_within, fault.expected if fault.state == "pending" else None)
    return {"fire_s": round(fired, 1), "bound_s": round(limit, 1),
            "resolve_s": round(time.monotonic() - t1, 1),
            "also": sorted(f"{a}{{{n}}}" if n else a for a, n in also)}


def write_wal(lab: Lab, megabytes: int = 1) -> None:
    """Writes about `megabytes` of WAL on the primary and switches to a new segment, so the
    archiver has a completed segment to send."""
    lab.sql().query(lab.ports()["rw"], "CREATE TABLE IF NOT EXISTS pgha_mon_fill (x text)")
    lab.sql().query(lab.ports()["rw"], "INSERT INTO pgha_mon_fill SELECT repeat('x', 1000) "
                    "FROM generate_series(1, %s)", (megabytes * 1000,))
    lab.sql().query(lab.ports()["rw"], "SELECT pg_switch_wal()")


def _primary(lab: Lab) -> str:
    name = leader(lab)
    assert name is not None, "no leader"
    return name


def wal_archive(lab: Lab) -> Fault:
    """The repository refuses WAL: its archive folder loses its permissions (what a full or
    read-only repository, or a wrong owner after a restore, does), so the primary's
    archive_command (pgbackrest archive-push) fails. Heal: the mode back, and new WAL wakes the
    archiver, which sends what was queued."""
    primary = _primary(lab)
    repo = backup.repo_node(lab).name
    folder = (lab.node_dirs(repo).root / lab.layout.pgbackrest_repo.lstrip("/") / "archive"
              / monitoring.tokens(lab.cluster)["stanza"])
    mode = folder.stat().st_mode & 0o7777
    folder.chmod(0)
    write_wal(lab)

    def heal() -> None:
        folder.chmod(mode)
        write_wal(lab)
    return Fault({("PghaWalArchiveFailing", primary)}, "PghaWalArchiveFailing", heal)


def replication_lag(lab: Lab) -> Fault:
    """One replica stops receiving WAL (its walreceiver SIGSTOPped: a stalled network path) while
    the primary writes three times the lag threshold; commits go on with the other quorum
    standby. Heal: SIGCONT, the replica catches up."""
    primary = _primary(lab)
    victim = next(n.name for n in lab.db_nodes if n.name != primary)
    pids = faults.pids_matching(lab, victim, "walreceiver")
    assert pids, f"no walreceiver on {victim}"
    thaw = faults.freeze(pids)
    lag = int(monitoring.tokens(lab.cluster)["lag"])
    write_wal(lab, megabytes=3 * lag // 1_000_000 + 1)
    return Fault({("PghaReplicationLag", victim)}, "PghaReplicationLag", thaw)


NFT_TABLE = "pgha_monitoring_fault"


def haproxy_no_primary(lab: Lab) -> Fault:
    """HAProxy on the first load balancer cannot reach the primary's Patroni REST API (an nft
    rule in that node's namespace rejects it), so its read-write backend has no server UP.
    Heal: the rule removed."""
    primary = _primary(lab)
    lb = lab.lb_nodes[0]
    address = next(str(n.address) for n in lab.cluster.nodes if n.name == primary)
    port = lab.cluster.ports.patroni_rest
    nft = ["ip", "netns", "exec", lb.netns, "nft"]
    lab.runner.run([*nft, "add", "table", "inet", NFT_TABLE])
    chain = "{ type filter hook output priority 0 ; }"
    lab.runner.run([*nft, "add", "chain", "inet", NFT_TABLE, "out", chain])
    lab.runner.run([*nft, "add", "rule", "inet", NFT_TABLE, "out", "ip", "daddr", address,
                    "tcp", "dport", str(port), "reject", "with", "tcp", "reset"])

    def heal() -> None:
        lab.runner.run([*nft, "delete", "table", "inet", NFT_TABLE], check=False)
    return Fault({("PghaHaproxyNoPrimary", lb.name)}, "PghaHaproxyNoPrimary", heal)


def pending_restart(lab: Lab) -> Fault:
    """A parameter that needs a restart changes (max_locks_per_transaction doubled through
    Patroni's dynamic configuration): every member reports pending restart. The alert's
    `for:` is 30 minutes, so the lab checks that it is pending (its expression holds on the
    real series) within the bound of a zero `for:`; promtool tests the 30 minutes. Heal: the
    old value back (no restart needed)."""
    before = faults.current_config(lab).get("postgresql", {}).get("parameters", {})
    old = before.get("max_locks_per_transaction", 64)
    faults.set_config(lab, {"postgresql": {"parameters": {"max_locks_per_transaction":
                                                          int(old) * 2}}})

    def heal() -> None:
        faults.set_config(lab, {"postgresql": {"parameters": {"max_locks_per_transaction":
                                                              old}}})
    return Fault({("PghaPendingRestart", n.name) for n in lab.db_nodes}, "PghaPendingRestart",
                 heal, state="pending")


def _postgres_pids(lab: Lab, name: str) -> list[int]:
    """The node's PostgreSQL processes (the postmaster and its children)."""
    out = []
    for pid in faults.pids_matching(lab, name, "postgres"):
        argv0 = faults._comm(pid).split(" ")[0]
        if argv0.startswith("postgres") or argv0.endswith("/postgres"):
            out.append(pid)
    return out


def no_sync_standby(lab: Lab) -> Fault:
    """Both replicas' PostgreSQL hang (every process SIGSTOPped): they stop acknowledging WAL
    and their Patroni cannot report them as standbys; the primary's walsenders give up after
    wal_sender_timeout and Patroni registers no quorum or synchronous standby (commits wait
    meanwhile). The bound counts from the SIGSTOP. Heal: SIGCONT, they stream again and Patroni
    registers them."""
    primary = _primary(lab)
    pids = [pid for n in lab.db_nodes if n.name != primary for pid in _postgres_pids(lab, n.name)]
    assert pids, "no replica PostgreSQL"
    return Fault({("PghaNoSyncStandby", "")}, "PghaNoSyncStandby", faults.freeze(pids))


def split_brain(lab: Lab) -> Fault:
    """Patroni on the primary hangs (SIGSTOP) while its PostgreSQL runs on: the leader key
    expires after ttl, a replica is promoted, and two PostgreSQL servers are out of recovery
    (the case the watchdog exists for; the lab has none). The fault is in place once the new
    leader is promoted. Heal: SIGCONT, Patroni demotes the old primary and it rejoins."""
    primary = _primary(lab)
    pids = faults.pids_matching(lab, primary, f"{lab.layout.patroni_bin} ")
    assert pids, f"no Patroni on {primary}"
    thaw = faults.freeze(pids)

    def heal() -> None:
        thaw()
        wait_until("a leader", lambda: leader(lab) is not None, 60)
    try:
        wait_until("a second primary", lambda: leader(lab) not in (None, primary),
                   3 * lab.cluster.patroni.ttl)
    except BaseException:
        heal()
        raise
    return Fault({("PghaSplitBrain", "")}, "PghaSplitBrain", heal)


def disk_space(lab: Lab) -> Fault:
    """A replica's data file system (`lab up --data-fs MB`: a tmpfs of its own) filled until
    half the threshold (monitoring.disk_free_percent) is left. The alert's `for:` is 5 minutes:
    the lab test checks that it is pending, the bench waits for it to fire. Heal: the filler
    removed."""
    victim = next(n.name for n in lab.db_nodes if n.name != _primary(lab))
    point = datafs.mount_point(lab.node_dirs(victim).root, lab.layout.pg_data_dir)
    assert os.path.ismount(point), f"{victim}: no data file system of its own (lab up --data-fs)"
    avail, size = datafs.usage(point)
    keep = size * lab.cluster.monitoring.disk_free_percent // 200
    with (point / datafs.FILLER).open("ab") as filler:
        os.posix_fallocate(filler.fileno(), 0, max(avail - keep, 1))
    return Fault({("PghaDiskSpaceLow", victim)}, "PghaDiskSpaceLow",
                 lambda: datafs.free(point), state="pending")


def vip_on_two_nodes(lab: Lab) -> Fault:
    """VRRP between the load balancers cut (an nft rule in the backup's namespace drops VRRP):
    the backup hears no advertisement, becomes MASTER too, and both hold the VIP. Heal: the
    rule removed; the two masters hear each other and one steps back."""
    holder = vip.wait_holder(lab)
    other = next(n for n in lab.lb_nodes if n.name != holder)
    nft = ["ip", "netns", "exec", other.netns, "nft"]
    lab.runner.run([*nft, "add", "table", "inet", NFT_TABLE])
    lab.runner.run([*nft, "add", "chain", "inet", NFT_TABLE, "in",
                    "{ type filter hook input priority 0 ; }"])
    lab.runner.run([*nft, "add", "rule", "inet", NFT_TABLE, "in", "ip", "protocol", "vrrp",
                    "drop"])

    def heal() -> None:
        lab.runner.run([*nft, "delete", "table", "inet", NFT_TABLE], check=False)
        vip.wait_holder(lab, 60)
    try:  # in place once the second holder has it
        wait_until("the VIP on two nodes", lambda: len(vip.holders(lab)) == 2, 30)
    except BaseException:
        heal()
        raise
    return Fault({("PghaVipOnTwoNodes", "")}, "PghaVipOnTwoNodes", heal)


def vip_on_no_node(lab: Lab) -> Fault:
    """HAProxy hangs (SIGSTOP) on both load balancers: keepalived's check of HAProxy fails on
    each, both enter FAULT and release the VIP, so no node holds it. (Deleting the VIP behind
    keepalived's back is no fault here: keepalived sees the address go and puts it back.) The
    bound counts once the VIP is gone. Heal: SIGCONT; the checks pass, one node takes it."""
    vip.wait_holder(lab)
    pids = [pid for n in lab.lb_nodes
            for pid in faults.pids_matching(lab, n.name, lab.layout.haproxy_bin)]
    thaw = faults.freeze(pids)

    def heal() -> None:
        thaw()
        vip.wait_holder(lab, 60)
    try:
        wait_until("the VIP on no node", lambda: not vip.holders(lab), 60)
    except BaseException:
        heal()
        raise
    return Fault({("PghaVipNotHeld", "")}, "PghaVipNotHeld", heal)


def backup_age(lab: Lab) -> Fault:
    """The newest backup gets older than monitoring.backup_max_age_s (the lab test's cluster
    lowers it to seconds): a full backup is taken and no other follows, as when the backup
    timers stop. The bound counts from the backup's end. Heal: an incremental backup."""
    last = backup.run_backup(lab, "full")
    waited = time.time() - float(last["stop"])

    def heal() -> None:
        backup.run_backup(lab, "incr")
    return Fault({("PghaBackupTooOld", "")}, "PghaBackupTooOld", heal,
                 delay_s=lab.cluster.monitoring.backup_max_age_s - waited)


FAULTS: dict[str, Callable[[Lab], Fault]] = {
    "wal_archive": wal_archive, "replication_lag": replication_lag,
    "haproxy_no_primary": haproxy_no_primary, "pending_restart": pending_restart,
    "split_brain": split_brain, "disk_space": disk_space, "backup_age": backup_age,
    "no_sync_standby": no_sync_standby,
    "vip_on_two_nodes": vip_on_two_nodes, "vip_on_no_node": vip_on_no_node,
}
