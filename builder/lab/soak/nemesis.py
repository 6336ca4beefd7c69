"""Inject and heal the faults of the soak's menu (plan.MENU) on the running lab, reusing the
lab's own fault primitives (builder.lab.faults, net, vip) and the link faults (links).

`Nemesis.inject(step)` resolves the step's target (who is primary now), starts the fault and
returns an Active fault; `Active.heal()` ends it. Every fault the nemesis started is healed by
`heal_all()` too (the run calls it on any exit, Ctrl-C included), so none outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import PghaError
from builder.lab import datafs, faults, vip
from builder.lab import lab as labmod
from builder.lab.lab import Lab
from builder.lab.readiness import leader
from builder.lab.soak import links, plan

BOOT_TIMEOUT = 120.0
BOOT_TRIES = 3


@dataclass
class Active:
    """A fault in force: what it hit, and how to end it."""

    kind: str
    nodes: list[str]
    detail: str
    _heal: Callable[[], None]
    during: Callable[[], str] | None = None  # an action half-way through the hold
    healed: bool = False
    notes: list[str] = field(default_factory=list)

    def heal(self) -> None:
        if not self.healed:
            self.healed = True
            self._heal()


def _program(cmdline: str) -> str:
    return Path(cmdline.split(" ")[0]).name.rstrip(":")


PROGRAMS: dict[str, Callable[[str], bool]] = {
    "postgres": lambda cmd: _program(cmd) == "postgres",
    "patroni": lambda cmd: "/bin/patroni " in cmd,
    "etcd": lambda cmd: _program(cmd) == "etcd",
}


class Nemesis:
    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.active: list[Active] = []

    # -- targets -------------------------------------------------------------------------
    def target(self, role: str, pick: int) -> str:
        """The node a role names now: the leader, the pick-th replica, or a load balancer
        (the VIP's holder when there is one: the balancer clients go through)."""
        dbs = [n.name for n in self.lab.db_nodes]
        primary = leader(self.lab)
        if role == "primary":
            return primary or dbs[pick % len(dbs)]
        if role == "replica":
            others = [n for n in dbs if n != primary]
            return others[pick % len(others)]
        if role == "lb":
            return vip.holder(self.lab) or self.lab.lb.name
        return dbs[pick % len(dbs)]

    def inject(self, step: plan.Step) -> Active:
        act = getattr(self, "_" + step.kind.replace("-", "_"))(step)
        self.active.append(act)
        return act

    def heal_all(self) -> None:
        for act in self.active:
            with contextlib.suppress(Exception):
                act.heal()
        self.active = [a for a in self.active if not a.healed]

    # -- the menu --------------------------------------------------------------------------
    def _kill(self, step: plan.Step) -> Active:
        name = self.target(step.target, step.pick)
        count = faults.kill(self.lab, name)
        return Active(step.kind, [name], f"{count} processes", lambda: self._boot(name))

    def _boot(self, name: str) -> None:
        """Boot a node again (its agent, as `lab up --nodes`); waits for its health. Tried
        BOOT_TRIES times: a heal that fails once (a loaded machine) must not leave the node
        down for the rest of the run."""
        for attempt in range(BOOT_TRIES):
            try:
                labmod.up(self.lab, [name], timeout=BOOT_TIMEOUT)
                return
            except PghaError:
                if attempt == BOOT_TRIES - 1:
                    raise
                time.sleep(2)

    def revive(self) -> list[str]:
        """Boot every node that has no process left (a heal that failed); returns them."""
        from builder.lab.net import pids_in

        dead = [n.name for n in self.lab.net.nodes if not pids_in(self.lab.runner, n.netns)]
        if dead:
            labmod.up(self.lab, dead, timeout=BOOT_TIMEOUT)
        return dead

    def _pause(self, step: plan.Step, program: str) -> Active:
        name = self.target(step.target, step.pick)
        matches = PROGRAMS[program]
        stopped = signal_matching(self.lab, name, matches, signal.SIGSTOP)
        # a postmaster may have forked between the listing and its stop: stop those too
        stopped += signal_matching(self.lab, name, matches, signal.SIGSTOP)
        return Active(step.kind, [name], f"{len(set(stopped))} processes stopped",
                      lambda: self._resume(name, matches))

    def _resume(self, name: str, matches: Callable[[str], bool]) -> None:
        signal_matching(self.lab, name, matches, signal.SIGCONT)

    def _pause_postgres(self, step: plan.Step) -> Active:
        return self._pause(step, "postgres")

    def _pause_patroni(self, step: plan.Step) -> Active:
        return self._pause(step, "patroni")

    def _pause_etcd(self, step: plan.Step) -> Active:
        return self._pause(step, "etcd")

    def _partition(self, step: plan.Step) -> Active:
        name = self.target(step.target, step.pick)
        faults.partition(self.lab, name)
        return Active(step.kind, [name], "link down", lambda: faults.heal(self.lab, name))

    def _split(self, step: plan.Step) -> Active:
        names = [n.name for n in self.lab.net.nodes]
        first, second = plan.split_groups(names, step.pick)
        heal = links.split(self.lab.runner, self.lab.net, first, second)
        return Active(step.kind, names, f"{'+'.join(first)} | {'+'.join(second)}", heal)

    def _slow_link(self, step: plan.Step) -> Active:
        name = self.target(step.target, step.pick)
        detail, heal = links.slow(self.lab.runner, self.lab.net.node(name), step.pick)
        return Active(step.kind, [name], detail, heal)

    def _lossy_link(self, step: plan.Step) -> Active:
        name = self.target(step.target, step.pick)
        detail, heal = links.lossy(self.lab.runner, self.lab.net.node(name), step.pick)
        return Active(step.kind, [name], detail, heal)

    def _restart_lb(self, step: plan.Step) -> Active:
        name = self.target("lb", step.pick)
        count = faults.kill(self.lab, name)
        return Active(step.kind, [name], f"{count} processes", lambda: self._boot(name))

    def _move_vip(self, step: plan.Step) -> Active:
        name = self.target("lb", step.pick)
        faults.partition(self.lab, name)
        return Active(step.kind, [name], "VIP holder cut off",
                      lambda: faults.heal(self.lab, name))

    def _switchover_during(self, step: plan.Step) -> Active:
        act = self._slow_link(step)
        act.kind = step.kind

        def switch() -> str:
            replicas = [n.name for n in self.lab.db_nodes if n.name != leader(self.lab)]
            to = replicas[step.pick % len(replicas)] if replicas else None
            try:
                done = faults.switchover(self.lab, to, timeout=30)
            except PghaError as err:
                return f"switchover to {to} failed: {err.message}"
            return f"switchover {done['from']} -> {done['to']}"

        act.during = switch
        return act


    def _disk_full(self, step: plan.Step) -> Active:
        name = self.target(step.target, step.pick)
        point = data_fs(self.lab, name)
        if not os.path.ismount(point):
            raise PghaError(f"{name}: its data is not on a file system of its own ({point})",
                            hint="pgha-build lab up --data-fs 256 (after lab down)")
        taken = datafs.fill(point)
        _, size = datafs.usage(point)
        return Active(step.kind, [name], f"{taken >> 20} of {size >> 20} MiB taken",
                      lambda: datafs.free(point))


def data_fs(lab: Lab, name: str) -> Path:
    """Where the node's data file system is (or would be) mounted."""
    return datafs.mount_point(lab.node_dirs(name).root, lab.layout.pg_data_dir)


def has_data_fs(lab: Lab) -> bool:
    """Whether every db node's data is on a file system of its own (lab up --data-fs)."""
    return all(os.path.ismount(data_fs(lab, n.name)) for n in lab.db_nodes)


def signal_matching(lab: Lab, name: str, matches: Callable[[str], bool], sig: int) -> list[int]:
    """Send `sig` to the node's processes whose command line `matches`; returns their pids."""
    from builder.lab.net import pids_in

    done = []
    for pid in pids_in(lab.runner, lab.net.node(name).netns):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if matches(cmd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                done.append(pid)
    return done


def hold(act: Active, seconds: float, stop: Callable[[], bool]) -> None:
    """Keep the fault for `seconds` (the `during` action half-way), unless the run stops."""
    end = time.monotonic() + seconds
    half = time.monotonic() + seconds / 2
    while time.monotonic() < end and not stop():
        if act.during is not None and time.monotonic() >= half:
            act.notes.append(act.during())
            act.during = None
        time.sleep(0.1)
