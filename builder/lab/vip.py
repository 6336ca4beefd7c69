"""The virtual IP in the lab: which load balancer holds it, and watching it move.

keepalived runs in each load balancer's namespace (started by the node's agent from its seed)
and adds the virtual IP to the master's eth0. The holder is read from the namespaces' addresses
(`ip -n NS addr`), the kernel's own view, not from keepalived's logs. `VipWatch` polls it every
50 ms during a fault so that the time the address moved is known independently of clients.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from typing import TYPE_CHECKING, Self

from builder.lab import net
from builder.lab.health import wait_until

if TYPE_CHECKING:
    from builder.lab.lab import Lab
    from builder.lab.net import NodeNet

NIC = "eth0"


def addresses(lab: Lab, node: NodeNet) -> list[str]:
    """The IPv4 addresses on the node's eth0 (empty if its namespace is gone)."""
    proc = lab.runner.run(["ip", "-n", node.netns, "-j", "-4", "addr", "show", "dev", NIC],
                          check=False)
    if proc.returncode != 0:
        return []
    data = json.loads(proc.stdout.decode() or "[]")
    return [str(a["local"]) for d in data for a in d.get("addr_info", [])]


def holders(lab: Lab) -> list[str]:
    """The load balancers whose eth0 has the virtual IP (one when all is well)."""
    vip = lab.vip
    if vip is None:
        return []
    return [n.name for n in lab.lb_nodes if vip in addresses(lab, n)]


def holder(lab: Lab) -> str | None:
    """The one load balancer holding the virtual IP, or None (nobody, or more than one)."""
    found = holders(lab)
    return found[0] if len(found) == 1 else None


def wait_holder(lab: Lab, timeout: float = 60, not_: str | None = None) -> str:
    """Wait until exactly one load balancer (other than `not_`) holds the VIP; return it."""
    what = "the virtual IP on one load balancer" + (f" other than {not_}" if not_ else "")
    wait_until(what, lambda: holder(lab) not in (None, not_), timeout, 0.05)
    return str(holder(lab))


class VipWatch:
    """Polls the holders every 50 ms in a thread: when did the VIP leave, when did it arrive."""

    def __init__(self, lab: Lab, every: float = 0.05) -> None:
        self.lab = lab
        self.every = every
        self.seen: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgha-lab-vip", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.seen.append((time.monotonic(), tuple(holders(self.lab))))
            self._stop.wait(self.every)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def moved(self, t0: float, old: str) -> float | None:
        """Seconds from t0 until another load balancer alone held the VIP."""
        return next((t - t0 for t, h in self.seen if t >= t0 and len(h) == 1 and h[0] != old),
                    None)

    def split(self, t0: float) -> bool:
        """Whether two load balancers held the VIP at once at any time after t0."""
        return any(len(h) > 1 for t, h in self.seen if t >= t0)


def forget_addresses(lab: Lab, node: NodeNet) -> None:
    """A crashed machine's kernel state is gone: drop every address on eth0 but the node's own
    (a virtual IP keepalived added and could not remove when it was killed)."""
    for address in addresses(lab, node):
        if address != node.address:
            net.ip(lab.runner, "-n", node.netns, "addr", "del", f"{address}/{lab.net.prefix}",
                   "dev", NIC, check=False)
