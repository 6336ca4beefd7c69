"""keepalived's check of HAProxy (roles/haproxy/files/pgha-lb-check), against real HAProxy
processes on 127.0.0.1: it passes only while HAProxy serves. A hung HAProxy (SIGSTOP: its
sockets stay open and the kernel still accepts TCP connections for it) and a misconfigured one
(running, but not bound to a client port) both fail it, as does no HAProxy at all."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.core.paths import ROLES_DIR

pytestmark = pytest.mark.integration

CHECK = ROLES_DIR / "haproxy" / "files" / "pgha-lb-check"
CONFIG = """global
    stats socket {sock} mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
listen primary
    bind 127.0.0.1:{port}
    server db 127.0.0.1:9
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check(sock: Path, *ports: int) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(CHECK), "--socket", str(sock), "--timeout", "0.5"]
    for port in ports:
        argv += ["--port", str(port)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    exe = shutil.which("haproxy")
    if exe is None:
        pytest.fail("haproxy is required: run scripts/setup")
    sock, port = tmp_path / "stats", free_port()
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(CONFIG.format(sock=sock, port=port))
    proc = subprocess.Popen([exe, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (sock.exists() and accepts(port)):
        assert proc.poll() is None and time.monotonic() < deadline, "haproxy did not start"
        time.sleep(0.05)
    try:
        yield proc, sock, port
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_passes_while_haproxy_serves(haproxy) -> None:
    _, sock, port = haproxy
    res = check(sock, port)
    assert res.returncode == 0, res.stderr


def test_hung_haproxy_fails_although_its_port_accepts(haproxy) -> None:
    proc, sock, port = haproxy
    proc.send_signal(signal.SIGSTOP)
    try:
        assert accepts(port), "the kernel should still complete the handshake"
        res = check(sock, port)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert res.returncode == 1
    assert "no answer within 0.5s (HAProxy hung?)" in res.stderr
    assert check(sock, port).returncode == 0  # serving again once resumed


def test_haproxy_without_a_client_port_fails(haproxy) -> None:
    _, sock, port = haproxy
    other = free_port()
    res = check(sock, port, other)
    assert res.returncode == 1
    assert f"127.0.0.1:{other}: Connection refused" in res.stderr
    assert "stats socket" not in res.stderr


def test_no_haproxy_fails(tmp_path: Path) -> None:
    res = check(tmp_path / "stats", free_port())
    assert res.returncode == 1
    assert "No such file or directory" in res.stderr and "Connection refused" in res.stderr


def test_runs_on_python36() -> None:
    exe = shutil.which("vermin")
    if exe is None:
        pytest.fail("vermin is required (see .ci/requirements-test.txt)")
    res = subprocess.run([exe, "-t=3.6-", "--no-tips", "--violations", str(CHECK)],
                         capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
