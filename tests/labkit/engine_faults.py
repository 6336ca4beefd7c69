"""Faults whose outcome depends on what supervises the services: the host crash and the service
failure, on either engine (process or systemd), for the engine comparison (bench/engine_bench.py)
and the systemd engine's tests.

- host crash: every process of the primary's node dies at once. Process engine: SIGKILL to each
  process in its namespace; systemd engine: SIGKILL to the machine's PID 1, and the kernel kills
  the rest of the machine. Back: the node is booted again (`lab up --nodes`).
- Patroni killed: SIGKILL to the primary's Patroni (its PostgreSQL keeps running). Process
  engine: nothing restarts Patroni, so its leader key expires and a replica is promoted (the
  old primary's PostgreSQL is left running without Patroni until the node is booted again).
  systemd engine: the drop-in's Restart=on-failure starts Patroni again after RestartSec; it
  finds its PostgreSQL running and its leader key still valid, and goes on as the leader.
- unit stopped (systemd engine): `systemctl stop patroni` on the primary, an operator's or a
  package update's stop: Patroni stops PostgreSQL and hands the leader key over; systemd does
  not restart a unit that was stopped on purpose. Back: `systemctl start patroni`.
Each returns a scenarios.Outcome (RTO: fault to the first acknowledged write after the outage;
lost: acknowledged rows missing afterwards).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from builder.lab import faults, machine, sysboot
from builder.lab.health import wait_until
from builder.lab.lab import Lab, engine_of, up
from builder.lab.status import leader
from labkit import scenarios
from labkit.workload import Writer

PATRONI_MARK = "bin/patroni"


def _machine(lab: Lab, name: str) -> machine.Machine:
    return sysboot.machines(lab, [name])[0]


def host_crash(lab: Lab) -> scenarios.Outcome:
    def fault(name: str) -> None:
        if engine_of(lab) == "systemd":
            machine.crash(_machine(lab, name))
        else:
            faults.kill(lab, name)

    return scenarios.run(lab, "host crash", fault, lambda n: up(lab, [n], timeout=120))


def patroni_pids(lab: Lab, name: str) -> list[int]:
    return faults.pids_matching(lab, name, PATRONI_MARK)


def patroni_killed(lab: Lab) -> scenarios.Outcome:
    before = {}

    def fault(name: str) -> None:
        before[name] = set(patroni_pids(lab, name))
        for pid in before[name]:
            os.kill(pid, signal.SIGKILL)

    def back(name: str) -> None:
        if engine_of(lab) != "systemd":
            up(lab, [name], timeout=120)  # the agent starts the missing Patroni

    def recovered(name: str) -> bool:
        """A leader other than the old one, or the old one's Patroni back (restarted)."""
        now = leader(lab)
        fresh = set(patroni_pids(lab, name)) - before.get(name, set())
        return now not in (None, name) or (now == name and bool(fresh))

    out = _run_until(lab, "Patroni killed", fault, recovered, back)
    restarts = ""
    if engine_of(lab) == "systemd":
        restarts = machine.unit_property(lab.runner, _machine(lab, out.old), "patroni.service",
                                         "NRestarts")
        out.notes.append(f"systemd restarted Patroni (NRestarts={restarts})")
    return out


def unit_stopped(lab: Lab) -> scenarios.Outcome:
    def fault(name: str) -> None:
        machine.exec_in(lab.runner, _machine(lab, name), ["systemctl", "stop", "patroni"])

    def back(name: str) -> None:
        machine.exec_in(lab.runner, _machine(lab, name), ["systemctl", "start", "patroni"])

    return scenarios.run(lab, "unit stopped", fault, back)


def _run_until(lab: Lab, title: str, fault: Callable[[str], None],
               recovered: Callable[[str], bool], back: Callable[[str], None]
               ) -> scenarios.Outcome:
    """scenarios.run, for faults after which the old primary may stay the leader."""
    old = scenarios.healthy(lab)
    writer = Writer(lab.sql()).start()
    try:
        writer.wait_acked(scenarios.WARMUP_ROWS)
        t0 = time.monotonic()
        fault(old)
        wait_until(f"recovery from: {title}", lambda: recovered(old), 120, 0.2)
        writer.wait_acked(scenarios.WARMUP_ROWS, timeout=120)
    finally:
        writer.stop()
    out = scenarios.Outcome(title, writer.rto(t0), len(writer.acked), writer.lost(), old,
                            str(leader(lab)))
    t1 = time.monotonic()
    back(old)
    scenarios.healthy(lab, 120)
    out.rejoin_s = time.monotonic() - t1
    return out
