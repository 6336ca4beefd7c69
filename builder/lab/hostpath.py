"""The host's way into the running lab: 127.0.0.1:<port> to the lab's entry (the virtual IP, or
the one load balancer) for the read-write, read-only and stats ports. The kernel forwards it
(builder.lab.forward, nftables); where nftables is missing, the Python relay
(builder.lab.relay) does, the one long-running process started here with subprocess.Popen (it
must outlive the command). Its pid and log live in the lab folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from builder.core.log import log
from builder.lab import forward, net
from builder.lab.health import wait_until

if TYPE_CHECKING:
    from builder.lab.lab import Lab

HOST = "127.0.0.1"


def start_relay(lab: Lab) -> None:
    """127.0.0.1:<port> -> <entry>:<port> (the VIP, or the one load balancer) for the
    read-write, read-only and stats ports: by the kernel (builder.lab.forward, nftables), or
    by the Python relay where nftables is missing. Kept if it is already there: clients stay
    connected while a node rejoins."""
    entry = lab.entry
    net.assert_local_route(lab.runner, lab.net, entry)
    if forward.available():
        forward.up(lab.runner, lab.net, entry, list(lab.ports().values()))
        return
    log.warning("nft not found (Debian package nftables): the host path is the Python relay, "
                "which costs about 40% of read throughput")
    if _relay_pid(lab):
        return
    stop_relay(lab)
    forwards = [f"{HOST}:{p}={entry}:{p}" for p in lab.ports().values()]
    log_file = (lab.dir / "relay.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder.lab.relay", "--cidr", lab.net.cidr, *forwards],
        stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, cwd=str(Path(__file__).resolve().parents[2]))
    (lab.dir / "relay.pid").write_text(f"{proc.pid}\n")
    wait_until("the 127.0.0.1 relay", lambda: _relay_ready(lab), 10, 0.05)


def _relay_ready(lab: Lab) -> bool:
    return b"relay: ready" in (lab.dir / "relay.log").read_bytes()


def our_relay(pid: int, cidr: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"builder.lab.relay" in cmdline and cidr.encode() in cmdline


def _relay_pid(lab: Lab) -> int | None:
    try:
        pid = int((lab.dir / "relay.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if our_relay(pid, lab.net.cidr) else None


def stop_relay(lab: Lab) -> None:
    pid_file = lab.dir / "relay.pid"
    if not pid_file.exists():
        return
    pid = _relay_pid(lab)
    if pid:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not our_relay(pid, lab.net.cidr):
                break
            time.sleep(0.02)
        else:
            os.kill(pid, signal.SIGKILL)
    pid_file.unlink()
    (lab.dir / "relay.log").unlink(missing_ok=True)
