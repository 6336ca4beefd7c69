"""The read-only HTTP server under hostile clients: overlong names (404/414), a client that
disconnects mid-download (one log line, no traceback), idle connections closed."""

from __future__ import annotations

import http.client
import logging
import socket
import time
from pathlib import Path

import pytest

from builder.core import httpserve
from builder.core.log import log


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    (tmp_path / "big.bin").write_bytes(b"x" * (8 << 20))
    (tmp_path / "a.txt").write_text("hello\n")
    monkeypatch.setattr(httpserve.Handler, "timeout", 1.0)
    monkeypatch.setattr(log, "propagate", True)
    caplog.set_level(logging.INFO, logger="pgha")
    with httpserve.running(("127.0.0.1", 0), [httpserve.Mount("/f/", tmp_path)]) as server:
        yield server.server_address[1], caplog


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def test_overlong_names(served, capsys: pytest.CaptureFixture[str]) -> None:
    port, caplog = served
    assert _get(port, "/f/a.txt") == 200
    assert _get(port, "/f/" + "a" * 300) == 404
    assert _get(port, "/f/" + "/".join(["b" * 200] * 30)) == 414
    assert _get(port, "/f/" + "%2e" * 400) == 414
    assert "Traceback" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_disconnect_is_one_log_line(served, capsys: pytest.CaptureFixture[str]) -> None:
    port, caplog = served
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /f/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.recv(1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST while the server is still sending 8 MiB
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any("disconnected" in r.getMessage()
                                                  for r in caplog.records):
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "Traceback" not in capsys.readouterr().err


def test_idle_connection_is_closed(served) -> None:
    port, _ = served
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(10)
    assert sock.recv(1024) == b""  # the server closed it (Handler.timeout is 1 s here)
    sock.close()


def test_idle_timeout_is_on_by_default() -> None:
    assert httpserve.Handler.timeout == httpserve.IDLE_TIMEOUT and 0 < httpserve.IDLE_TIMEOUT <= 120
