"""Load balancer faults with a writer through the virtual IP, for the tests and the benchmark.

Each scenario starts from a healthy cluster whose load balancers both serve and one of which
holds the VIP, runs a Writer (numbered rows through 127.0.0.1:<rw port>, which the host path
sends to the VIP), hits the VIP holder at t0, and measures: when another load balancer alone
held the VIP (`vip_moved_s`, from the namespaces' addresses every 50 ms), when writes succeeded
again (`rto`, the client's view: it includes its own retry and TCP back-off), and the
acknowledged rows lost (a load balancer holds no data: expected 0). Then the old holder comes
back (`rejoin_s`) and the outcome notes who holds the VIP afterwards: with keepalived's
`nopreempt` it stays where it went, so clients see one interruption, not two.
`old`/`new` are the load balancers that held the VIP before and after the fault.

The scenarios are registered in labkit.cases (keys vip_*), so the benchmark reports them
beside the database failovers; they need a lab with a virtual IP and two load balancers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from builder.core.errors import PghaError
from builder.lab import faults, vip
from builder.lab.lab import Lab, up
from labkit.cases import Case, register
from labkit.scenarios import WARMUP_ROWS, Outcome, healthy
from labkit.workload import Writer


def run(lab: Lab, name: str, fault: Callable[[str], object],
        back: Callable[[str], object]) -> Outcome:
    """Writer on, fault the VIP holder at t0, wait for another holder and for writes, writer
    off, count; then `back(old)` and wait until healthy again (both load balancers serve)."""
    if lab.vip is None:
        raise PghaError(f"{name}: the lab has no virtual IP",
                        hint="set load_balancer.virtual_ip and give it two load balancers")
    healthy(lab)
    old = vip.wait_holder(lab)
    writer = Writer(lab.sql()).start()
    with vip.VipWatch(lab) as watch:
        try:
            writer.wait_acked(WARMUP_ROWS)
            t0 = time.monotonic()
            fault(old)
            new = vip.wait_holder(lab, 60, not_=old)
            writer.wait_acked(WARMUP_ROWS, timeout=120)
        finally:
            writer.stop()
    out = Outcome(name, writer.rto(t0), len(writer.acked), writer.lost(), old, new,
                  vip_moved_s=watch.moved(t0, old))
    if watch.split(t0):
        out.notes.append("two load balancers held the VIP at once")
    t1 = time.monotonic()
    back(old)
    healthy(lab, 120)
    out.rejoin_s = time.monotonic() - t1
    out.notes.append(f"VIP on {vip.holder(lab)} after {old} was back")
    return out


def _reboot(lab: Lab) -> Callable[[str], object]:
    return lambda name: up(lab, [name], timeout=120)


def kill_haproxy(lab: Lab) -> Outcome:
    """SIGKILL HAProxy on the VIP holder (keepalived keeps running there); back: the node's
    agent starts HAProxy again, as systemd's Restart= would."""
    return run(lab, "kill HAProxy on the VIP holder",
               lambda n: faults.kill_service(lab, n, "haproxy"), _reboot(lab))


def kill_holder(lab: Lab) -> Outcome:
    """The whole VIP holder crashes (every process, and the VIP its kernel held); back: boot."""
    return run(lab, "kill the VIP holder", lambda n: faults.kill(lab, n), _reboot(lab))


def partition_holder(lab: Lab) -> Outcome:
    """The VIP holder's link goes down (keepalived there sees it and gives the VIP up); back:
    the link comes up."""
    return run(lab, "partition the VIP holder", lambda n: faults.partition(lab, n),
               lambda n: faults.heal(lab, n))


def hang_haproxy(lab: Lab) -> Outcome:
    """SIGSTOP HAProxy on the VIP holder: it keeps its sockets and the kernel still accepts
    TCP connections for it, but it serves nobody. keepalived's check must notice."""
    thaws: list[Callable[[], None]] = []

    def hang(name: str) -> None:
        thaws.append(faults.freeze(faults.pids_matching(lab, name, lab.layout.haproxy_bin)))

    def resume(name: str) -> None:
        for thaw in thaws:
            thaw()

    return run(lab, "hang HAProxy (SIGSTOP) on the VIP holder", hang, resume)


for _case in (
    Case("vip_kill_haproxy", "kill HAProxy on the VIP holder", kill_haproxy, per_mode=False),
    Case("vip_hang_haproxy", "hang HAProxy (SIGSTOP) on the VIP holder", hang_haproxy,
         per_mode=False),
    Case("vip_kill_holder", "kill the VIP holder (whole node)", kill_holder, per_mode=False),
    Case("vip_partition", "partition the VIP holder", partition_holder, per_mode=False),
):
    register(_case)
