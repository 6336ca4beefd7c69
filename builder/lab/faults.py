"""Faults to inject into the running lab: kill, partition, heal, switchover, lag, and the loss
of one service (e.g. one etcd member). Plus Patroni's dynamic configuration (synchronous mode).

Signals go to processes found by their network namespace (`ip netns pids`), so a fault hits
exactly one node. HTTP goes to lab addresses only, after the route check.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from builder.core.errors import PghaError
from builder.lab import net, nodes
from builder.lab.health import http, wait_until
from builder.lab.lab import Lab
from builder.lab.status import cluster_view, leader


def kill(lab: Lab, name: str) -> int:
    """SIGKILL every process of the node (a crashed host); returns how many."""
    return nodes.kill(lab.runner, lab.net.node(name))


def partition(lab: Lab, name: str) -> None:
    """Cut the node off the lab network: its link goes down; its processes keep running."""
    net.set_link(lab.runner, lab.net.node(name), "down")


def heal(lab: Lab, name: str) -> None:
    net.set_link(lab.runner, lab.net.node(name), "up")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def pids_matching(lab: Lab, name: str, needle: str) -> list[int]:
    """Processes of the node whose command line contains `needle`."""
    return [p for p in net.pids_in(lab.runner, lab.net.node(name).netns) if needle in _comm(p)]


def kill_service(lab: Lab, name: str, program: str) -> int:
    """SIGKILL one program on one node (e.g. "etcd"): the loss of that member only."""
    pids = [p for p in net.pids_in(lab.runner, lab.net.node(name).netns)
            if Path(_comm(p).split(" ")[0]).name == program]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


def stop_walsenders(lab: Lab, name: str) -> list[int]:
    """SIGSTOP the primary's walsenders: its replicas stop receiving WAL (a lagging replica;
    `tc netem` is not available here). The scenario then kills the primary."""
    pids = pids_matching(lab, name, "walsender")
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids



def switchover(lab: Lab, to: str | None = None, timeout: float = 60) -> dict[str, Any]:
    """A planned switchover through the leader's REST API; waits for the new leader."""
    old = leader(lab)
    if old is None:
        raise PghaError("no leader to switch over from", hint="see `pgha-build lab status`")
    body: dict[str, Any] = {"leader": old}
    if to:
        body["candidate"] = to
    node = lab.net.node(old)
    code, answer = http("POST", lab.rest_url(node, "/switchover"), auth=lab.rest_auth(),
                        body=body, timeout=30)
    if code != 200:
        raise PghaError(f"switchover refused ({code}): {answer}")
    wait_until("a new leader", lambda: leader(lab) not in (None, old), timeout)
    return {"from": old, "to": leader(lab), "answer": answer}


def set_config(lab: Lab, patch: dict[str, Any]) -> None:
    """PATCH Patroni's dynamic configuration (e.g. {"synchronous_mode": False})."""
    for node in lab.db_nodes:
        code, answer = http("PATCH", lab.rest_url(node, "/config"), auth=lab.rest_auth(),
                            body=patch, timeout=5)
        if code == 200:
            return
    raise PghaError(f"could not change Patroni's configuration: {answer}")


def synchronous_mode(lab: Lab) -> bool:
    """Patroni's dynamic synchronous_mode (the model's value until someone changes it)."""
    for node in lab.db_nodes:
        code, answer = http("GET", lab.rest_url(node, "/config"), timeout=2)
        if code == 200 and isinstance(answer, dict):
            return bool(answer.get("synchronous_mode"))
    return bool(lab.cluster.patroni.synchronous_mode)


def sync_standbys(lab: Lab) -> list[str]:
    view = cluster_view(lab) or {}
    return [m["name"] for m in view.get("members", []) if m.get("role") == "sync_standby"]



def set_synchronous(lab: Lab, on: bool, timeout: float = 60) -> None:
    set_config(lab, {"synchronous_mode": on})
    wait_until(f"synchronous mode {'on' if on else 'off'}",
               lambda: bool(sync_standbys(lab)) == on, timeout)
