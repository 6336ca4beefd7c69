"""The loss of every database node (a site loss), and fresh nodes to restore onto.

`lose_all` takes every db node down at once: SIGKILL of all their processes (power lost), or a
clean shutdown (Patroni stopped everywhere, which stops PostgreSQL: its last WAL segment is
switched and archived on the way down), then their disks wiped (folders removed). etcd runs on
the db nodes, so the DCS is lost with them.

`reimage` boots the db nodes again from the same RPMs and seeds, as an operator reinstalls
VMs: each node's own first-boot agent starts etcd (an empty DCS), pgBackRest's TLS server and
Patroni, which initialises a new, empty cluster. The restore runbook (builder.lab.restore) then
stops Patroni everywhere and replaces that empty cluster by the repository's data; the empty
cluster's WAL never reaches the repository (pgBackRest refuses another system identifier).

Boundary: the process engine's nodes (SIGKILL of the namespaces' processes, folders removed,
the agents booted). The systemd engine's machines are refused with a clear error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import TYPE_CHECKING

from builder.core.errors import PghaError
from builder.lab import artifacts, faults, lifecycle, net, nodes, restore
from builder.lab import lab as labmod
from builder.lab.health import wait_until
from builder.lab.readiness import leader

if TYPE_CHECKING:
    from builder.lab.lab import Lab


def _db_names(lab: Lab) -> list[str]:
    return [n.name for n in lab.db_nodes]


def lose_all(lab: Lab, clean: bool = False) -> float:
    """Every db node lost at once (SIGKILL, or `clean`: Patroni stopped first), disks wiped.
    Returns the monotonic time of the loss (the SIGKILL, or the start of the shutdown)."""
    if labmod.engine_of(lab) != "process":
        raise PghaError("the site-loss drill runs on the process engine only",
                        hint="pgha-build lab up --engine process")
    names = _db_names(lab)
    t_loss = time.monotonic()
    if clean:
        restore.stop_patroni(lab, names)
    pids = [p for n in names for p in net.pids_in(lab.runner, lab.net.node(n).netns)]
    for pid in pids:  # all nodes in one sweep: no node outlives the others
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for name in names:
        lifecycle.wipe(lab, name)
    return t_loss


def reimage(lab: Lab, timeout: float = 180) -> dict[str, float]:
    """The db nodes installed again from the same RPMs and seeds and booted by their agents
    until the new, empty cluster has a leader; then Patroni stopped everywhere (the runbook's
    step 2; etcd, the DCS the restore reuses, and the TLS servers keep running). Seconds."""
    names = _db_names(lab)
    t0 = time.monotonic()
    taken = labmod.take_artifacts(lab)
    secrets = lab.secrets()
    agents = {}
    for name in names:
        dirs = lab.node_dirs(name)
        nodes.install(lab.runner, dirs, lab.layout,
                      artifacts.node_rpms(taken, lab.cluster.node(name)))
        nodes.write_seed(lab.ctx, lab.cluster.node(name), secrets, dirs)
        agents[name] = nodes.boot(labmod.PYTHON, dirs, lab.net.node(name).netns, timeout)
    try:
        wait_until("a leader on the reinstalled (empty) cluster",
                   lambda: leader(lab) is not None, timeout)
    finally:
        for proc in agents.values():  # their health waits are moot: the runbook takes over
            proc.kill()
            proc.wait()
    t_booted = time.monotonic()
    for _ in range(2):  # a replica of the new cluster being restored from the repository
        for pid in [p for n in names for p in faults.pids_matching(lab, n, " restore")]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        restore.stop_patroni(lab, names)  # etcd and pgBackRest's TLS servers keep running
    return {"boot_s": round(t_booted - t0, 1), "stopped_s": round(time.monotonic() - t0, 1)}

