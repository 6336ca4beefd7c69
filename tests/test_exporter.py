"""pgha-exporter run for real on 127.0.0.1 with certificates from a cluster CA: it serves
/metrics over HTTPS only to clients with a certificate from that CA, reads a HAProxy stats
socket (a stand-in speaking HAProxy's `show stat` CSV), certificate expiry, a watchdog sysfs
folder and free disk; with no PostgreSQL to ask it says so (the WAL archiver and backup metrics
are proven against the real ones in tests/test_lab_monitoring.py); it stays within Python 3.6
(vermin), as RHEL 8's platform-python."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_agent_compat import vermin

from builder.core.paths import ROLES_DIR
from builder.model import pki

EXPORTER = ROLES_DIR / "common" / "files" / "pgha-exporter"
PORT = 36650
STAT = ("# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,"
        "wretr,wredis,status,weight\n"
        "primary,FRONTEND,,,0,0,4096,0,0,0,0,0,0,,,,,OPEN,\n"
        "primary,db1,0,0,0,0,1000,0,0,0,,0,,0,0,0,0,UP,1\n"
        "primary,db2,0,0,0,0,1000,0,0,0,,0,,0,0,0,0,DOWN,1\n"
        "primary,BACKEND,0,0,0,0,410,0,0,0,0,0,,0,0,0,0,UP,1\n"
        "replicas,db2,0,0,0,0,1000,0,0,0,,0,,0,0,0,0,UP 1/2,1\n\n")


def _stats_socket(path: Path) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)

    def serve() -> None:
        while True:
            conn, _ = srv.accept()
            if conn.recv(100).startswith(b"show stat"):
                conn.sendall(STAT.encode())
            conn.close()
    threading.Thread(target=serve, daemon=True).start()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, pki.Issued]]:
    root = tmp_path_factory.mktemp("exporter")
    tls = root / "tls"
    tls.mkdir()
    ca = pki.make_ca("t", 30)
    node = pki.issue(ca, pki.CertSpec("lb1", ips=("127.0.0.1",)), 10)
    (tls / "ca.crt").write_text(ca.cert_pem)
    (tls / "haproxy.pem").write_text(node.cert_pem + node.key_pem)
    (root / "wd" / "watchdog0").mkdir(parents=True)
    (root / "wd" / "watchdog0" / "state").write_text("active\n")
    _stats_socket(root / "stats")
    proc = subprocess.Popen([sys.executable, str(EXPORTER), "--listen", f"127.0.0.1:{PORT}",
                             "--tls-dir", str(tls), "--cert", "haproxy", "--haproxy-socket",
                             str(root / "stats"), "--vip", "127.0.0.1", "--watchdog",
                             "--watchdog-sysfs", str(root / "wd"), "--fs", str(root)])
    client = pki.issue(ca, pki.CertSpec("pgha-prometheus", server=False), 10)
    (root / "client.crt").write_text(client.cert_pem)
    (root / "client.key").write_text(client.key_pem)
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", PORT)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        yield root, ca
    finally:
        proc.kill()
        proc.wait()


def _get(root: Path, with_cert: bool) -> str:
    ctx = ssl.create_default_context(cafile=str(root / "tls" / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(root / "client.crt"), str(root / "client.key"))
    with urllib.request.urlopen(f"https://127.0.0.1:{PORT}/metrics", context=ctx,
                                timeout=10) as resp:
        return resp.read().decode()


def test_metrics_over_tls(served: tuple[Path, pki.Issued]) -> None:
    root, _ = served
    text = _get(root, with_cert=True)
    assert "pgha_haproxy_up 1" in text
    assert 'pgha_haproxy_server_up{proxy="primary",server="db1"} 1' in text
    assert 'pgha_haproxy_server_up{proxy="primary",server="db2"} 0' in text
    assert 'pgha_haproxy_server_up{proxy="replicas",server="db2"} 1' in text
    assert "BACKEND" not in text and "FRONTEND" not in text
    assert 'pgha_vip_held{vip="127.0.0.1"} 1' in text
    assert "pgha_watchdog_active 1" in text
    assert 'pgha_cert_not_after_seconds{cert="ca"}' in text
    line = next(x for x in text.splitlines() if x.startswith('pgha_cert_not_after_seconds{cert="haproxy"}'))
    assert 9 * 86400 < float(line.split()[1]) - time.time() <= 10 * 86400
    assert "pgha_filesystem_avail_bytes{mountpoint=" in text


def test_a_client_without_a_certificate_is_refused(served: tuple[Path, pki.Issued]) -> None:
    root, _ = served
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        _get(root, with_cert=False)


def test_database_metrics_when_postgresql_does_not_answer(tmp_path: Path) -> None:
    """--psql given and nothing answers (no such socket): pgha_postgres_query_ok 0, no
    archiver or backup series (no false "archiving works"), and the scrape still succeeds."""
    port = PORT + 1
    proc = subprocess.Popen([sys.executable, str(EXPORTER), "--listen", f"127.0.0.1:{port}",
                             "--psql", "/usr/lib/postgresql/15/bin/psql", "--pg-socket",
                             str(tmp_path), "--pg-port", "1", "--pgbackrest-config",
                             str(tmp_path / "pgbackrest.conf"), "--stanza", "t"])
    try:
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert "pgha_postgres_query_ok 0" in text
    assert "pgha_archiver" not in text and "pgha_backup" not in text
    assert "pgha_exporter_scrape_seconds" in text


def test_python36_only() -> None:
    res = vermin(EXPORTER)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Target versions not met" not in res.stdout
