"""The fault schedule a seed gives: which fault, on which kind of target, held how long, and the
pause before the next. Pure: the same seed, menu and length give the same schedule, so a run can
be replayed (`lab soak --seed S --plan` prints it without touching a lab).

Targets are roles ("primary", "replica", "any-db", "lb", "split"), resolved when the fault is
injected (who is primary then); the pick among several nodes of that role is drawn here too
(`pick`, an index taken modulo how many there are).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from builder.core.errors import PghaError


@dataclass(frozen=True)
class Kind:
    """One entry of the fault menu."""

    name: str
    targets: tuple[str, ...]  # roles the target is drawn from
    hold: tuple[float, float]  # seconds the fault lasts before it heals (uniform)
    help: str
    needs_vip: bool = False
    needs_data_fs: bool = False  # the db nodes' data on small file systems (lab up --data-fs)


MENU: dict[str, Kind] = {k.name: k for k in (
    # held 2-45 s: shorter than Patroni's ttl the node comes back still holding the leader
    # key (and is promoted again), longer a replica takes over and the old primary rejoins
    Kind("kill", ("primary", "replica"), (2, 45),
         "SIGKILL every process of a db node (a crashed host), boot it again after the hold"),
    Kind("pause-postgres", ("primary", "replica"), (3, 10),
         "SIGSTOP PostgreSQL (postmaster and every backend) on a db node, then SIGCONT"),
    Kind("pause-patroni", ("primary", "replica"), (3, 10),
         "SIGSTOP Patroni on a db node, then SIGCONT"),
    Kind("pause-etcd", ("primary", "replica"), (3, 10),
         "SIGSTOP the etcd member on a db node, then SIGCONT"),
    Kind("partition", ("primary", "replica", "lb"), (5, 20),
         "cut a node off the network (its link down), then heal"),
    Kind("split", ("split",), (5, 20),
         "split the network into two groups (blackhole routes both ways), then heal"),
    Kind("slow-link", ("primary", "replica"), (8, 25),
         "delay, jitter and reorder a node's traffic (tc netem; a tbf rate limit where "
         "the kernel has no netem), then remove it"),
    Kind("lossy-link", ("primary", "replica"), (8, 25),
         "drop a share of a node's packets (tc netem loss, or an nft random drop), then "
         "remove it"),
    Kind("restart-lb", ("lb",), (1, 4),
         "SIGKILL the load balancer clients use and boot it again after the hold"),
    Kind("move-vip", ("lb",), (3, 10),
         "cut the virtual IP's holder off so keepalived moves the VIP, then heal",
         needs_vip=True),
    Kind("switchover-during", ("replica",), (8, 20),
         "a slow link on a replica, and a switchover to a random replica while it lasts"),
    # last in the menu: a lab without data file systems draws the same schedules as before
    Kind("disk-full", ("primary",), (5, 30),
         "fill the file system of the primary's data (a filler file takes every free "
         "byte), then free it", needs_data_fs=True),
)}
DEFAULT_GAP = (2.0, 10.0)


@dataclass(frozen=True)
class Step:
    index: int
    kind: str
    target: str  # a role from the kind's targets
    pick: int  # which node of that role (modulo their number); for "split", the group mask
    hold_s: float
    gap_s: float  # pause after the cluster is back, before the next fault

    def line(self) -> str:
        return (f"#{self.index} {self.kind} on {self.target}[{self.pick}] for "
                f"{self.hold_s:.1f}s, then {self.gap_s:.1f}s")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def menu_for(kinds: list[str] | None, has_vip: bool, has_data_fs: bool = False) -> list[str]:
    """The menu a run draws from: the named kinds (all by default), without the VIP fault on a
    lab with no virtual IP and without disk-full on a lab whose data is not on file systems
    of its own. Unknown names are an error naming the menu."""
    names = kinds or [k.name for k in MENU.values() if (has_vip or not k.needs_vip)
                      and (has_data_fs or not k.needs_data_fs)]
    unknown = [n for n in names if n not in MENU]
    if unknown:
        raise PghaError(f"unknown fault kind(s): {', '.join(unknown)}",
                        hint="choose from: " + ", ".join(MENU))
    if not has_vip and any(MENU[n].needs_vip for n in names):
        raise PghaError("move-vip needs a virtual IP and two load balancers",
                        hint="set load_balancer.virtual_ip and add a second load balancer")
    if not has_data_fs and any(MENU[n].needs_data_fs for n in names):
        raise PghaError("disk-full needs each db node's data on a small file system of its own",
                        hint="pgha-build lab down, then pgha-build lab up --data-fs 256")
    return names


def schedule(seed: int, kinds: list[str],
             gap: tuple[float, float] = DEFAULT_GAP) -> Iterator[Step]:
    """The endless schedule for `seed`: the run takes steps until its time is up."""
    rng = random.Random(seed)
    index = 0
    while True:
        kind = MENU[rng.choice(kinds)]
        target = rng.choice(kind.targets)
        yield Step(index=index, kind=kind.name, target=target, pick=rng.randrange(1 << 16),
                   hold_s=round(rng.uniform(*kind.hold), 1),
                   gap_s=round(rng.uniform(*gap), 1))
        index += 1


def first(seed: int, kinds: list[str], count: int) -> list[Step]:
    steps = schedule(seed, kinds)
    return [next(steps) for _ in range(count)]


def split_groups(names: list[str], mask: int) -> tuple[list[str], list[str]]:
    """Two non-empty groups of `names` from a mask (bit i: names[i] is in the second group)."""
    if len(names) < 2:
        raise PghaError("a split needs at least two nodes")
    bits = mask % ((1 << len(names)) - 2) + 1  # never all in one group
    second = [n for i, n in enumerate(names) if bits >> i & 1]
    return [n for n in names if n not in second], second
