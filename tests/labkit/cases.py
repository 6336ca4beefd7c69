"""The catalogue of lab fault scenarios the tests and the benchmark run, in every replication
mode: each case starts from a healthy (failover-ready) cluster, runs a Writer through the
read-write port, injects its fault, and returns an Outcome (RTO, acknowledged rows lost,
whether failover was blocked, when the primary stopped acknowledging writes); it leaves the
cluster healthy again (or raises).

`CASES` is the registry: a new scenario (e.g. a second load balancer) is one `register(Case(...))`
in its own module; `per_mode` says whether the replication mode changes its outcome, so the
benchmark runs it once per mode. The building blocks (Outcome, healthy, run) live in
labkit.scenarios; the faults in builder.lab.faults.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from builder.core.errors import PghaError
from builder.lab import faults, vip
from builder.lab.health import wait_until
from builder.lab.lab import Lab, down, up
from builder.lab.status import cluster_view, leader
from labkit import scenarios
from labkit.scenarios import WARMUP_ROWS, Outcome, address, healthy
from labkit.workload import Writer

QUIET_S = 2.0  # no acknowledged write for this long (and a failed one) = writes stopped
LB_PARTITION_S = 5.0


@dataclass(frozen=True)
class Case:
    key: str
    title: str
    run: Callable[[Lab], Outcome]
    per_mode: bool = True


CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    CASES[case.key] = case
    return case


def block_timeout(lab: Lab) -> float:
    """How long to wait for a failover before calling it blocked: the leader key expires
    (ttl), two HA loops, and a margin for a loaded machine."""
    p = lab.cluster.patroni
    return p.ttl + 2 * p.loop_wait + 15


def mode(lab: Lab) -> str:
    return faults.mode_of(faults.current_config(lab))


def sync_standby(lab: Lab, primary: str) -> str:
    """The synchronous (or quorum) standby, else (asynchronous mode) any replica."""
    members = (cluster_view(lab) or {}).get("members", [])
    sync = [m["name"] for m in members if m.get("role") in ("sync_standby", "quorum_standby")]
    return sync[0] if sync else next(n.name for n in lab.db_nodes if n.name != primary)


def _leader_other_than(lab: Lab, gone: set[str], timeout: float) -> str | None:
    try:
        wait_until("a new leader", lambda: leader(lab) not in (None, *gone), timeout, 0.25)
    except PghaError:
        return None
    return leader(lab)


def _finish(name: str, lab: Lab, writer: Writer, t0: float, old: str, new: str) -> Outcome:
    out = Outcome(name, writer.rto(t0), len(writer.acked), writer.lost(), old, new,
                  late_acks=writer.late_acks(address(lab, old), address(lab, new)))
    out.mode = mode(lab)
    return out


def fresh_kill(lab: Lab, reboot: bool = True) -> Outcome:
    """Boot the lab again (unless it was just booted) and kill the primary as soon as
    `lab up` returned."""
    if reboot:
        down(lab)
        up(lab)
    old = str(leader(lab))
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(5)
        t0 = time.monotonic()
        faults.kill(lab, old)
        new = _leader_other_than(lab, {old}, block_timeout(lab))
        if new is None:
            up(lab, [old])
            new = str(leader(lab))
        writer.wait_acked(WARMUP_ROWS, timeout=120)
    finally:
        writer.stop()
    out = _finish("kill primary right after lab up", lab, writer, t0, old, new)
    out.blocked = new == old
    if new != old:
        up(lab, [old])
    healthy(lab)
    return out


def kill_sync_standby(lab: Lab) -> Outcome:
    """Kill the synchronous standby's PostgreSQL and Patroni: how long commits wait."""
    old = healthy(lab)
    standby = sync_standby(lab, old)
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(WARMUP_ROWS)
        t0 = time.monotonic()
        faults.kill_database(lab, standby)
        time.sleep(lab.cluster.patroni.loop_wait + 2)
        writer.wait_acked(WARMUP_ROWS, timeout=120)
    finally:
        writer.stop()
    out = _finish("kill the sync standby", lab, writer, t0, old, str(leader(lab)))
    out.notes.append(f"standby {standby}")
    t1 = time.monotonic()
    up(lab, [standby])
    healthy(lab)
    out.rejoin_s = time.monotonic() - t1
    return out


def sync_standby_then_primary(lab: Lab, gap_s: float = 1.0) -> Outcome:
    """Kill the synchronous standby's database, then gap_s later the primary's (etcd keeps
    its quorum). If no replica is promoted within block_timeout, the operator's way out
    (docs/replication.md) is run: `patronictl failover --candidate <last replica> --force`."""
    old = healthy(lab)
    standby = sync_standby(lab, old)
    last = next(n.name for n in lab.db_nodes if n.name not in (old, standby))
    writer = Writer(lab.sql()).start()
    blocked = False
    try:
        writer.wait_acked(WARMUP_ROWS)
        faults.kill_database(lab, standby)
        time.sleep(gap_s)
        t0 = time.monotonic()
        faults.kill_database(lab, old)
        new = _leader_other_than(lab, {old, standby}, block_timeout(lab))
        if new is None:
            blocked = True
            faults.patronictl(lab, last, "failover", "--candidate", last, "--force")
            new = _leader_other_than(lab, {old, standby}, 60)
        t1 = time.monotonic()
        up(lab, [standby, old])  # a strict primary takes writes again only with a standby
        writer.wait_acked(WARMUP_ROWS, timeout=120)
    finally:
        writer.stop()
    out = _finish("kill sync standby, then primary", lab, writer, t0, old, str(new))
    out.blocked, out.rejoin_s = blocked, time.monotonic() - t1
    out.notes.append(f"standby {standby}" + (", patronictl failover" if blocked else ""))
    healthy(lab)
    return out


def etcd_quorum_loss(lab: Lab) -> Outcome:
    """Kill two of the three etcd members (not the primary's): with failsafe_mode off the
    primary must stop acknowledging writes within ttl; then etcd comes back."""
    old = healthy(lab)
    victims = [n.name for n in lab.db_nodes if n.name != old][:2]
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(WARMUP_ROWS)
        t0 = time.monotonic()
        for name in victims:
            faults.kill_service(lab, name, "etcd")
        stopped = _writes_stop(writer, t0, lab.cluster.patroni.ttl + 15)
        t1 = time.monotonic()
        up(lab, victims)
        writer.wait_acked(WARMUP_ROWS, timeout=120)
    finally:
        writer.stop()
    out = _finish("lose two etcd members", lab, writer, t0, old, str(leader(lab)))
    out.stop_s = None if stopped is None else stopped - t0
    back = next((t for _, t in writer.acked if t > t1), None)
    out.rejoin_s = (back - t1) if back is not None else None
    out.notes.append("writes stopped" if stopped else "writes went on (failsafe_mode)")
    healthy(lab)
    return out


def etcd_quorum_loss_failsafe(lab: Lab) -> Outcome:
    """The same with Patroni's failsafe_mode on (then restored to the cluster's setting): the
    primary keeps writing while it reaches every member's REST API."""
    faults.set_config(lab, {"failsafe_mode": True})
    try:
        out = etcd_quorum_loss(lab)
    finally:
        faults.set_config(lab, {"failsafe_mode": lab.cluster.patroni.failsafe_mode})
    out.name += " (failsafe_mode on)"
    return out


def _writes_stop(writer: Writer, t0: float, timeout: float) -> float | None:
    """Wait until the writer has failed and acknowledged nothing for QUIET_S; return the time
    of the last acknowledged write (None: writes went on for `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = writer.last_ack_before(time.monotonic()) or t0
        failed = any(t > max(last, t0) for t in writer.failures)
        if failed and time.monotonic() - last >= QUIET_S:
            return last
        time.sleep(0.2)
    return None


def lb_restart(lab: Lab) -> Outcome:
    """Kill the load balancer's processes and boot it again (its agent starts HAProxy)."""

    def restart(lb: str) -> None:
        faults.kill(lab, lb)
        up(lab, [lb])

    return _lb_fault(lab, "restart the load balancer", restart)


def lb_partition(lab: Lab) -> Outcome:
    """Cut the load balancer off for LB_PARTITION_S, then heal: the cluster must not change,
    and writes resume once HAProxy sees the primary again."""

    def cut(lb: str) -> float:
        faults.partition(lab, lb)
        time.sleep(LB_PARTITION_S)
        healed = time.monotonic()
        faults.heal(lab, lb)
        return healed

    out = _lb_fault(lab, "partition the load balancer", cut)
    out.notes.append(f"cut off {LB_PARTITION_S:.0f}s; writes back after heal")
    return out


def _lb_fault(lab: Lab, name: str, fault: Callable[[str], float | None]) -> Outcome:
    """`fault` on the load balancer clients go through (the virtual IP's holder, else the
    first one) while a writer runs; the cluster itself must not change. When `fault` returns
    the time it ended, rejoin_s is the time from then to the next acknowledged write."""
    old = healthy(lab)
    lb = vip.holder(lab) or lab.lb.name
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(WARMUP_ROWS)
        t0 = time.monotonic()
        ended = fault(lb)
        writer.wait_acked(WARMUP_ROWS, timeout=60)
    finally:
        writer.stop()
    out = _finish(name, lab, writer, t0, old, str(leader(lab)))
    healthy(lab)
    if ended is not None:
        back = next((t for _, t in writer.acked if t > ended), None)
        out.rejoin_s = (back - ended) if back is not None else None
    return out


def lag_then_kill(lab: Lab, lag_s: float = 2.0) -> Outcome:
    """Stop the primary's walsenders (its replicas fall behind) for lag_s, then kill it."""

    def lag(old: str) -> None:
        if not faults.stop_walsenders(lab, old):
            raise AssertionError("no walsender to stop")
        time.sleep(lag_s)

    out = scenarios.run(lab, "kill primary while a replica lags",
                        lambda n: faults.kill(lab, n), lambda n: up(lab, [n]), before=lag)
    out.mode = mode(lab)
    return out


def _kill(lab: Lab) -> Outcome:
    out = scenarios.kill_primary(lab)
    out.mode = mode(lab)
    return out


for _case in (
    Case("fresh_kill", "kill the primary right after lab up", fresh_kill),
    Case("kill", "kill the primary (SIGKILL of the node)", _kill),
    Case("kill_sync", "kill the sync standby (database only)", kill_sync_standby),
    Case("sync_then_primary", "kill the sync standby, then the primary 1 s later",
         sync_standby_then_primary),
    Case("lag_kill", "kill the primary while a replica lags 2 s", lag_then_kill),
    Case("partition", "partition the primary", scenarios.partition_primary, per_mode=False),
    Case("switchover", "planned switchover", scenarios.switchover, per_mode=False),
    Case("etcd1", "lose one etcd member",
         lambda lab: scenarios.etcd_member_loss(lab, lab.cluster.patroni.ttl), per_mode=False),
    Case("etcd2", "lose two etcd members (quorum)", etcd_quorum_loss, per_mode=False),
    Case("etcd2_failsafe", "lose two etcd members, failsafe_mode on", etcd_quorum_loss_failsafe,
         per_mode=False),
    Case("lb_restart", "restart the load balancer", lb_restart, per_mode=False),
    Case("lb_partition", "partition the load balancer 5 s", lb_partition, per_mode=False),
):
    register(_case)
