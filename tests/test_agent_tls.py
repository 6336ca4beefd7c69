"""The first-boot agent and TLS, for real: HTTPS health checks verified against the seed's CA
with a client certificate, and a new seed for a configured node (rotated certificates) that
reloads the running service instead of starting another or leaving it on old files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_agent_support import (
    SERVICE_PYTHON,
    free_port,
    make_root,
    make_seed,
    run_agent,
    seed_file,
    stop_services,
    write_seed_dir,
)

from builder.model import pki

# An HTTPS server that requires a client certificate signed by the CA (like Patroni with
# verify_client required); its files are given as node paths under the agent's --root.
HTTPS_SERVER = """
import http.server, ssl, sys
root, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=root + "/etc/pgha/tls/ca.crt")
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.load_cert_chain(root + "/etc/pgha/tls/web.crt", root + "/etc/pgha/tls/web.key")
srv = http.server.HTTPServer(("127.0.0.1", port), http.server.SimpleHTTPRequestHandler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"""

# A service that says when it gets SIGHUP (its output goes to <root>/var/log/pgha/hup.log).
HUP_SERVICE = """
import signal, sys, time
signal.signal(signal.SIGHUP, lambda *a: print("reloaded", flush=True))
print("started", flush=True)
while True:
    time.sleep(1)
"""


@pytest.fixture
def node(tmp_path: Path):
    root = make_root(tmp_path / "root")
    yield root, tmp_path / "seed"
    stop_services(root)


def _tls_files(ca: pki.Issued, server: pki.Issued) -> list[dict]:
    return [seed_file("/etc/pgha/tls/ca.crt", ca.cert_pem, "0644", "root", "root"),
            seed_file("/etc/pgha/tls/web.crt", server.cert_pem, "0644", "nobody", "nogroup"),
            seed_file("/etc/pgha/tls/web.key", server.key_pem, "0600", "nobody", "nogroup")]


def test_https_health_check_verifies_the_ca_and_presents_a_client_certificate(node) -> None:
    root, seed_dir = node
    ca = pki.make_ca("t", 30)
    server = pki.issue(ca, pki.CertSpec("web", ips=("127.0.0.1",)), 30)
    port = free_port()
    svc = {"name": "web", "user": "root", "env_file": None,
           "argv": [SERVICE_PYTHON, "-c", HTTPS_SERVER, str(root), str(port)]}  # reads root/
    check = {"kind": "http", "url": f"https://127.0.0.1:{port}/", "service": "web",
             "expect": [200, 404], "cafile": "/etc/pgha/tls/ca.crt",
             "certfile": "/etc/pgha/tls/web.crt", "keyfile": "/etc/pgha/tls/web.key"}
    write_seed_dir(seed_dir, make_seed(services=[svc], health=[check],
                                       files=_tls_files(ca, server)))
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert "web: healthy" in res.stderr
    stop_services(root)
    # Another CA: the server is not trusted, the check never passes.
    other = pki.make_ca("other", 30)
    files = _tls_files(ca, server)
    files[0] = seed_file("/etc/pgha/tls/ca.crt", other.cert_pem, "0644", "root", "root")
    files.append(seed_file("/etc/pgha-test/other", "x\n"))
    write_seed_dir(seed_dir, make_seed(instance_id="pgha-db1-othercaaa", services=[svc],
                                       health=[check], files=files))
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process",
                    "--health-timeout", "4")
    assert res.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in res.stderr or "certificate" in res.stderr


def _log(root: Path) -> str:
    path = root / "var/log/pgha/hup.log"
    return path.read_text() if path.exists() else ""


def test_a_new_seed_reloads_a_running_service_whose_files_changed(node) -> None:
    root, seed_dir = node
    svc = {"name": "hup", "user": "nobody", "env_file": None, "reload": "HUP",
           "argv": [SERVICE_PYTHON, "-c", HUP_SERVICE]}
    first = make_seed(services=[svc], files=[seed_file("/etc/pgha-test/node.crt", "old\n")])
    write_seed_dir(seed_dir, first)
    assert run_agent("--root", root, "--seed", seed_dir, "--services", "process").returncode == 0
    pid = int((root / "run/pgha/hup.pid").read_text())
    rotated = make_seed(instance_id="pgha-db1-rotated1", services=[svc],
                        files=[seed_file("/etc/pgha-test/node.crt", "new\n")])
    write_seed_dir(seed_dir, rotated)
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert "hup: reloaded with SIGHUP" in res.stderr
    assert int((root / "run/pgha/hup.pid").read_text()) == pid  # the same process
    for _ in range(50):
        if "reloaded" in _log(root):
            break
        time.sleep(0.1)
    assert _log(root).count("reloaded") == 1 and _log(root).count("started") == 1
    assert (root / "etc/pgha-test/node.crt").read_text() == "new\n"
    # The same files again under a new instance id: nothing changed, no reload.
    write_seed_dir(seed_dir, {**rotated, "instance_id": "pgha-db1-rotated2"})
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 0 and "reloaded" not in res.stderr


def test_seed_with_a_bad_rich_rule_or_signal_is_refused(node) -> None:
    root, seed_dir = node
    rule = 'rule family="ipv4" source address="0.0.0.0/0" service name="x" accept; rm -rf /'
    bad_rule = make_seed(firewall_rules=[rule])
    write_seed_dir(seed_dir, bad_rule)
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 4 and "firewall_rules[0]" in res.stderr
    svc = {"name": "x", "user": "nobody", "env_file": None, "reload": "KILL",
           "argv": ["/bin/true"]}
    write_seed_dir(seed_dir, make_seed(services=[svc]))
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 4 and "services[0].reload" in res.stderr
    assert json.loads(json.dumps(bad_rule))  # the seed itself was valid JSON
