"""Fault scenarios with a writer, shared by the lab tests and the benchmark.

Each scenario starts from a healthy cluster, runs a Writer (numbered rows through the
read-write port), injects one fault, waits for the new primary and the writes, and returns an
Outcome: RTO (fault to first acknowledged write after the outage), acknowledged rows and the
acknowledged rows lost (RPO). The faulted node is brought back (rejoin) unless told not to.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from builder.lab import faults, net
from builder.lab.health import http, wait_until
from builder.lab.lab import Lab, up
from builder.lab.readiness import wait_failover_ready
from builder.lab.status import backends, cluster_view, lbs_ready, leader, views_agree
from labkit.workload import Writer

WARMUP_ROWS = 20


@dataclass
class Outcome:
    name: str
    rto: float
    acked: int
    lost: list[int]
    old: str = ""
    new: str = ""
    rejoin_s: float | None = None
    routed_s: float | None = None  # fault to HAProxy routing the primary port to the new leader
    promoted_s: float | None = None  # fault to the new leader answering 200 on /primary
    notes: list[str] = field(default_factory=list)
    blocked: bool = False  # no new leader until an operator acted (see docs/replication.md)
    stop_s: float | None = None  # fault to the last write the primary acknowledged
    late_acks: int = 0  # rows a demoted primary acknowledged after the new one had
    mode: str = ""  # replication mode (faults.MODES) the scenario ran in
    vip_moved_s: float | None = None  # fault to another load balancer alone holding the VIP
    reset_s: float | None = None  # fault to the old primary's VM resetting (watchdog)


def serving(status: str) -> bool:
    """Whether HAProxy sends new connections to a server with this stats status: "UP", and
    also "UP 1/3" (failing checks, not yet down); not "DOWN 1/2" (passing, not yet up)."""
    return status.startswith("UP")


class RoutingWatch:
    """Polls HAProxy's stats every 0.1 s and remembers which servers were UP behind the
    primary port when: tells when routing reached the new leader, independently of how often
    a client retries. It also asks every db node's Patroni `GET /primary` every 0.1 s (one
    thread per node, so a cut-off node does not slow the others): when the new leader first
    answered 200 is its promotion as HAProxy's check can see it."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.seen: list[tuple[float, frozenset[str]]] = []
        self.primary_at: dict[str, list[float]] = {n.name: [] for n in lab.db_nodes}
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name="pgha-lab-routing",
                                          daemon=True)]
        self._threads += [threading.Thread(target=self._ask, args=(n.name,), daemon=True,
                                           name=f"pgha-lab-primary-{n.name}")
                          for n in lab.db_nodes]

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                up = frozenset(r["server"] for r in backends(self.lab)
                               if r["listener"] == "primary" and serving(r["status"]))
                self.seen.append((time.monotonic(), up))
            self._stop.wait(0.1)

    def _ask(self, name: str) -> None:
        url = self.lab.rest_url(self.lab.net.node(name), "/primary")
        context = self.lab.rest_context()
        while not self._stop.is_set():
            code, _ = http("GET", url, timeout=0.5, context=context)
            if code == 200:
                self.primary_at[name].append(time.monotonic())
            self._stop.wait(0.1)

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def routed(self, t0: float, new: str) -> float | None:
        return next((t - t0 for t, up in self.seen if t >= t0 and up == {new}), None)

    def promoted(self, t0: float, new: str) -> float | None:
        """Fault to the new leader's first 200 on /primary."""
        return next((t - t0 for t in self.primary_at.get(new, []) if t >= t0), None)


def healthy(lab: Lab, timeout: float = 90) -> str:
    """Wait for one leader, every replica streaming (and, in synchronous mode, a synchronous
    standby: until there is one Patroni will not fail over), writes and reads; return the
    leader."""
    wait_failover_ready(lab, timeout)
    wait_until("every node to agree on the leader", lambda: views_agree(lab), timeout, 0.25)
    wait_until("HAProxy to agree with Patroni", lambda: haproxy_agrees(lab), timeout, 0.25)
    wait_until("every load balancer serving, one holding the virtual IP",
               lambda: lbs_ready(lab), timeout, 0.25)
    sql = lab.sql()
    wait_until("writes", sql.can_write, timeout)
    wait_until("reads", sql.can_read, timeout)
    name = leader(lab)
    assert name is not None
    return name


def haproxy_agrees(lab: Lab) -> bool:
    """HAProxy routes the primary port to the leader alone and the replica port to every
    replica: no stale server is still UP from before the last change of roles."""
    members = (cluster_view(lab) or {}).get("members", [])
    want = {
        "primary": {m["name"] for m in members if m.get("role") == "leader"},
        "replicas": {m["name"] for m in members if m.get("role") != "leader"},
    }
    rows = backends(lab)
    have = {lst: {r["server"] for r in rows if r["listener"] == lst and serving(r["status"])}
            for lst in want}
    return bool(rows) and have == want


def address(lab: Lab, name: str) -> str:
    return lab.net.node(name).address


def new_leader(lab: Lab, old: str, timeout: float = 120) -> str:
    wait_until("a new leader", lambda: leader(lab) not in (None, old), timeout, 0.2)
    return str(leader(lab))


def rejoin(lab: Lab, name: str, timeout: float = 120) -> float:
    """Boot the node again (its agent, --force) and wait until the cluster is whole."""
    t0 = time.monotonic()
    up(lab, [name], timeout=timeout)
    healthy(lab, timeout)
    return time.monotonic() - t0


def pg_rewind_ran(lab: Lab, name: str) -> bool:
    log = lab.node_dirs(name).root / "var" / "log" / "pgha" / "patroni.log"
    return "running pg_rewind" in Path(log).read_text(errors="replace")


def run(lab: Lab, name: str, fault: Callable[[str], object], back: Callable[[str], object] | None,
        before: Callable[[str], object] | None = None) -> Outcome:
    """The common shape: writer on, optional `before(leader)`, fault at t0, new leader, writer
    off, count; then `back(old)` (rejoin or heal) and wait until healthy again."""
    old = healthy(lab)
    writer = Writer(lab.sql()).start()
    with RoutingWatch(lab) as routing:
        try:
            writer.wait_acked(WARMUP_ROWS)
            if before:
                before(old)
            t0 = time.monotonic()
            fault(old)
            new = new_leader(lab, old)
            writer.wait_acked(WARMUP_ROWS, timeout=120)
        finally:
            writer.stop()
    out = Outcome(name, writer.rto(t0), len(writer.acked), writer.lost(), old, new,
                  routed_s=routing.routed(t0, new), promoted_s=routing.promoted(t0, new),
                  late_acks=writer.late_acks(address(lab, old), address(lab, new)))
    if back:
        t1 = time.monotonic()
        back(old)
        healthy(lab, 120)
        out.rejoin_s = time.monotonic() - t1
    return out


def kill_primary(lab: Lab) -> Outcome:
    def back(old: str) -> None:
        up(lab, [old], timeout=120)

    out = run(lab, "kill", lambda n: faults.kill(lab, n), back)
    out.notes.append("pg_rewind ran" if pg_rewind_ran(lab, out.old) else "no pg_rewind needed")
    return out


def partition_primary(lab: Lab) -> Outcome:
    return run(lab, "partition", lambda n: faults.partition(lab, n),
               lambda n: faults.heal(lab, n))


def switchover(lab: Lab) -> Outcome:
    return run(lab, "switchover", lambda n: faults.switchover(lab), None)




def etcd_member_loss(lab: Lab, hold_s: float) -> Outcome:
    """Kill one etcd member (not on the primary's node); writes must go on."""
    primary = healthy(lab)
    victim = next(n.name for n in lab.db_nodes if n.name != primary)
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(WARMUP_ROWS)
        t0 = time.monotonic()
        faults.kill_service(lab, victim, "etcd")
        time.sleep(hold_s)
        writer.wait_acked(WARMUP_ROWS)
    finally:
        writer.stop()
    out = Outcome("etcd member loss", writer.rto(t0), len(writer.acked), writer.lost(),
                  primary, str(leader(lab)))
    out.notes.append(f"{len([t for t in writer.failures if t >= t0])} failed writes")
    out.rejoin_s = rejoin(lab, victim)
    return out


def _qemu_pids(lab: Lab, name: str) -> list[int]:
    """The vm engine's node: its QEMU process (guest memory it touched is in its PSS)."""
    from builder.lab import qemu, vmboot

    pid = qemu.pid(vmboot.vm(lab, name))
    return [pid] if pid is not None else []


def memory_mb(lab: Lab) -> float:
    """Proportional set size of every lab process (all namespaces), in MB."""
    total_kb = 0
    for node in lab.net.nodes:
        for pid in net.pids_in(lab.runner, node.netns) + _qemu_pids(lab, node.name):
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024
