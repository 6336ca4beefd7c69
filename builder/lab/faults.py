"""Faults to inject into the running lab: kill, partition, heal, switchover, lag, and the loss
of one service (e.g. one etcd member). Plus Patroni's dynamic configuration (synchronous mode).

Signals go to processes found by their network namespace (`ip netns pids`), so a fault hits
exactly one node. HTTP goes to lab addresses only, after the route check.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from builder.core.errors import PghaError
from builder.lab import lab as labmod
from builder.lab import net, nodes, vip
from builder.lab.health import http, wait_until
from builder.lab.lab import Lab
from builder.lab.status import leader


def kill(lab: Lab, name: str) -> int:
    """SIGKILL every process of the node (a crashed host), and drop what its kernel held that
    a reboot would not bring back (a virtual IP); returns how many processes."""
    node = lab.net.node(name)
    if labmod.engine_of(lab) == "vm":
        from builder.lab import vmboot

        return vmboot.kill(lab, name)  # QEMU killed: the VM is powered off hard
    count = nodes.kill(lab.runner, node)
    vip.forget_addresses(lab, node)
    return count


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
    pids = pids_of(lab, name, program)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return len(pids)


def kill_database(lab: Lab, name: str) -> int:
    """SIGKILL PostgreSQL and Patroni on the node, not its etcd member: the database is lost
    while the DCS keeps its quorum (two whole db nodes lost would take two etcd members)."""
    keep = set(pids_of(lab, name, "etcd"))
    pids = [p for p in net.pids_in(lab.runner, lab.net.node(name).netns) if p not in keep]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


def pids_of(lab: Lab, name: str, program: str) -> list[int]:
    return [p for p in net.pids_in(lab.runner, lab.net.node(name).netns)
            if Path(_comm(p).split(" ")[0]).name == program]


def freeze(pids: list[int]) -> Callable[[], None]:
    """SIGSTOP each process (a hang: it keeps its sockets and answers nobody); returns the
    thaw, which sends SIGCONT to those still there."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)

    def thaw() -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    return thaw


def stop_walsenders(lab: Lab, name: str) -> list[int]:
    """SIGSTOP the primary's walsenders: its replicas stop receiving WAL (a lagging replica;
    `tc netem` is not available here). The scenario then kills the primary."""
    pids = pids_matching(lab, name, "walsender")
    freeze(pids)
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
                        body=body, timeout=30, context=lab.rest_context())
    if code != 200:
        raise PghaError(f"switchover refused ({code}): {answer}")
    wait_until("a new leader", lambda: leader(lab) not in (None, old), timeout)
    return {"from": old, "to": leader(lab), "answer": answer}


def set_config(lab: Lab, patch: dict[str, Any]) -> None:
    """PATCH Patroni's dynamic configuration (e.g. {"synchronous_mode": False})."""
    for node in lab.db_nodes:
        code, answer = http("PATCH", lab.rest_url(node, "/config"), auth=lab.rest_auth(),
                            body=patch, timeout=5, context=lab.rest_context())
        if code == 200:
            return
    raise PghaError(f"could not change Patroni's configuration: {answer}")







# The replication modes compared in docs/replication.md, as Patroni dynamic configuration.
MODES: dict[str, dict[str, Any]] = {
    "sync": {"synchronous_mode": True, "synchronous_mode_strict": False},
    "quorum": {"synchronous_mode": "quorum", "synchronous_mode_strict": False},
    "strict": {"synchronous_mode": True, "synchronous_mode_strict": True},
    "async": {"synchronous_mode": False, "synchronous_mode_strict": False},
}


def mode_of(settings: dict[str, Any]) -> str:
    """The MODES name of a (dynamic or model) configuration."""
    for name, want in MODES.items():
        if all(settings.get(k, False) == v for k, v in want.items()):
            return name
    return "sync"


def current_config(lab: Lab) -> dict[str, Any]:
    for node in lab.db_nodes:
        code, answer = http("GET", lab.rest_url(node, "/config"), timeout=2,
                            context=lab.rest_context())
        if code == 200 and isinstance(answer, dict):
            return answer
    raise PghaError("no Patroni REST API answers", hint="see `pgha-build lab status`")


def set_mode(lab: Lab, mode: str, timeout: float = 60) -> None:
    """Switch the running cluster to a replication mode (MODES) and wait until Patroni reports
    it in its configuration; the caller waits for readiness (scenarios.healthy)."""
    set_config(lab, MODES[mode])
    wait_until(f"replication mode {mode}", lambda: mode_of(current_config(lab)) == mode,
               timeout)


def patronictl(lab: Lab, name: str, *args: str) -> str:
    """Run patronictl inside the node's namespace with the node's own patroni.yml (what an
    operator types on that node); returns its output."""
    dirs = lab.node_dirs(name)
    config = dirs.root / lab.layout.patroni_config.lstrip("/")
    exe = Path(lab.layout.patroni_bin).with_name("patronictl")
    proc = lab.runner.run(["ip", "netns", "exec", lab.net.node(name).netns, str(exe),
                           "-c", str(config), *args])
    return proc.stdout.decode(errors="replace")

