"""pgha-firstboot's seed handling for real: every bad seed stops it with one line, a non-zero
exit and nothing written; every seed source (directory, ISO via xorriso, URL with retries,
kernel command line, /etc/pgha/seed, /etc/pgha/seed-url) is found and logged."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
from test_agent_support import (
    free_port,
    listing,
    make_cidata_iso,
    make_root,
    make_seed,
    seed_file,
    write_seed_dir,
)
from test_agent_support import run_agent as _run_agent

MARKER = "var/lib/pgha/done-pgha-db1-3f2a9c1e"


def run_agent(*args, **kwargs):
    """The agent with the lab option --seeds-over-http: these tests exercise URL sources,
    retries and timeouts against plain-http stand-in servers (HTTPS, the CA pin and the token
    against the real `serve`: test_agent_seed_https.py)."""
    return _run_agent(*args, "--seeds-over-http", **kwargs)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


def _without(key: str) -> dict:
    seed = make_seed()
    del seed[key]
    return seed


def _node_without_address() -> dict:
    seed = make_seed()
    del seed["node"]["address"]
    return seed


def _bad_checksum() -> dict:
    seed = make_seed()
    seed["files"][0]["content"] += "tampered\n"
    return seed


BAD_SEEDS = {
    "not-json": (b'{"schema_version": 1,', 4, "not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", 4, "not UTF-8"),
    "not-an-object": (b"[1, 2]", 4, "not a JSON object"),
    "wrong-version": (make_seed(schema_version=2), 4, "unsupported version 2"),
    "version-missing": (_without("schema_version"), 4, "schema_version: missing"),
    "wrong-checksum": (_bad_checksum(), 4, "files[0].sha256: checksum mismatch"),
    "role-not-baked": (make_seed(roles=["haproxy"]), 4, "role 'haproxy' is not baked"),
    "missing-field": (_without("files"), 4, "files: missing"),
    "missing-node-address": (_node_without_address(), 4, "node.address: missing"),
    "wrong-type": (make_seed(roles="db"), 4, "roles: expected a list, got str"),
    "bad-instance-id": (make_seed(instance_id="../../etc/x"), 4, "invalid instance id"),
    "relative-path": (make_seed(files=[seed_file("etc/x", "x")]), 4, "files[0].path"),
    "file-in-protected-dir": (
        make_seed(files=[seed_file("/var/lib/pgsql/16/data/postgresql.conf", "x")]),
        4,
        "inside protected directory",
    ),
    "unknown-health-kind": (make_seed(health=[{"kind": "icmp"}]), 4, "unknown kind 'icmp'"),
    "bad-mode": (make_seed(files=[seed_file("/etc/x", "x", mode="rw")]), 4, "octal mode"),
    "etcd-join-unknown-service": (
        make_seed(etcd_join={"service": "etcd", "name": "db1", "peer_url": "https://a:2380",
                             "members": [], "data_dir": "/var/lib/etcd",
                             "env_file": "/etc/etcd/etcd.conf"}), 4,
        "etcd_join.service: 'etcd' is not in services"),
    "etcd-join-incomplete": (
        make_seed(etcd_join={"service": "etcd", "name": "db1"}), 4, "etcd_join.peer_url: missing"),
    "etcd-join-env-not-a-file": (
        make_seed(services=[{"name": "etcd", "user": "etcd", "argv": ["etcd"]}],
                  etcd_join={"service": "etcd", "name": "db1", "peer_url": "https://a:2380",
                             "members": [], "data_dir": "/var/lib/etcd",
                             "env_file": "/etc/etcd/other.conf"}), 4,
        "etcd_join.env_file: /etc/etcd/other.conf is not one of the seed's files"),
}


@pytest.mark.parametrize("case", sorted(BAD_SEEDS))
def test_bad_seed_stops_with_one_line_and_writes_nothing(tmp_path, root, case):
    seed, code, message = BAD_SEEDS[case]
    seed_dir = write_seed_dir(tmp_path / "seed", seed)
    before = listing(root)
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == code, res.stderr
    errors = [line for line in res.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and message in errors[0], res.stderr
    assert errors[0].startswith("pgha-firstboot: error: seed rejected: ")
    assert listing(root) == before
    assert "s3cret" not in res.stderr


def test_unreadable_seed_stops_and_writes_nothing(tmp_path, root):
    seed_dir = tmp_path / "seed"
    (seed_dir / "pgha" / "seed.json").mkdir(parents=True)  # unreadable even as root
    before = listing(root)
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 3
    assert "cannot read seed" in res.stderr and len(res.stderr.strip().splitlines()) == 2
    assert listing(root) == before


def test_no_seed_anywhere(root):
    before = listing(root)
    res = run_agent("--root", root, "--services", "process", "--cmdline", "ro quiet")
    assert res.returncode == 3
    assert "no seed found" in res.stderr
    assert listing(root) == before


def test_no_seed_but_already_configured_is_fine(tmp_path, root):
    write_seed_dir(root / "etc/pgha/seed", make_seed())
    assert run_agent("--root", root, "--services", "process", "--cmdline", "").returncode == 0
    shutil.rmtree(root / "etc/pgha/seed")
    res = run_agent("--root", root, "--services", "process", "--cmdline", "")
    assert res.returncode == 0, res.stderr
    assert "no seed found: " in res.stderr
    assert "this node is already configured (done-pgha-db1-3f2a9c1e): nothing to do" in res.stderr


@pytest.mark.parametrize("folder", ["etc/pgha/seed", "var/lib/cloud/seed/nocloud"])
def test_seed_directory_is_discovered(root, folder):
    write_seed_dir(root / folder, make_seed())
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz ro quiet\n")
    res = run_agent("--root", root, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert f"seed source: directory /{folder}" in res.stderr
    assert (root / MARKER).exists()


def test_etc_pgha_seed_wins_over_cloud_seed(root):
    write_seed_dir(root / "etc/pgha/seed", make_seed())
    write_seed_dir(root / "var/lib/cloud/seed/nocloud", b"not json")
    res = run_agent("--root", root, "--services", "process", "--cmdline", "")
    assert res.returncode == 0, res.stderr
    assert "seed source: directory /etc/pgha/seed" in res.stderr


def test_iso_seed_via_xorriso(tmp_path, root):
    seed_dir = write_seed_dir(tmp_path / "seed", make_seed())
    iso = tmp_path / "db1-cidata.iso"
    make_cidata_iso(seed_dir, iso)
    res = run_agent("--root", root, "--seed", iso, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert f"seed ok (--seed ISO {iso})" in res.stderr
    assert (root / "etc/patroni/patroni.yml").read_text().startswith("scope: pgha")
    assert (root / MARKER).exists()


def test_iso_with_a_bad_seed_writes_nothing(tmp_path, root):
    seed_dir = write_seed_dir(tmp_path / "seed", make_seed(schema_version=9))
    iso = tmp_path / "bad.iso"
    make_cidata_iso(seed_dir, iso)
    before = listing(root)
    res = run_agent("--root", root, "--seed", iso, "--services", "process")
    assert res.returncode == 4 and "unsupported version 9" in res.stderr
    assert listing(root) == before


class _SeedServer:
    """A local HTTP server for seeds: answers 503 to the first `failures` requests."""

    def __init__(self, folder: Path, failures: int = 0):
        self.requests: list[str] = []
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self):
                owner.requests.append(self.path)
                if len(owner.requests) <= failures:
                    self.send_error(503, "not yet")
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    servers = []

    def serve(seed, failures=0):
        write_seed_dir(tmp_path / "www" / "db1", seed)
        servers.append(_SeedServer(tmp_path / "www", failures))
        return servers[-1]

    yield serve
    for server in servers:
        server.close()


def test_url_seed_with_retries(root, served):
    server = served(make_seed(), failures=2)
    res = run_agent(
        "--root",
        root,
        "--seed",
        server.url + "db1/",
        "--services",
        "process",
        "--url-retry-delay",
        "0.05",
    )
    assert res.returncode == 0, res.stderr
    assert server.requests == ["/db1/pgha/seed.json"] * 3
    assert res.stderr.count("retrying in") == 2
    assert "(attempt 3/11)" in res.stderr
    assert (root / MARKER).exists()


def test_url_seed_gives_up_after_retries_and_writes_nothing(root, served):
    server = served(make_seed(), failures=100)
    before = listing(root)
    res = run_agent(
        "--root",
        root,
        "--seed",
        server.url + "db1",
        "--services",
        "process",
        "--url-retries",
        "2",
        "--url-retry-delay",
        "0.01",
    )
    assert res.returncode == 3
    assert len(server.requests) == 3
    assert "after 3 attempt(s)" in res.stderr
    assert listing(root) == before


def test_url_not_found_is_not_retried(root, served):
    server = served(make_seed())
    res = run_agent(
        "--root",
        root,
        "--seed",
        server.url + "nope/",
        "--services",
        "process",
        "--url-retry-delay",
        "0.01",
    )
    assert res.returncode == 3 and len(server.requests) == 1
    assert "Not Found" in res.stderr or "404" in res.stderr


@pytest.mark.parametrize(
    "form", ["pgha.seed={url}db1/", "ds=nocloud;s={url}db1/", "ds=nocloud-net;seedfrom={url}db1"]
)
def test_kernel_command_line_url(root, served, form):
    server = served(make_seed())
    (root / "proc").mkdir()
    (root / "proc/cmdline").write_text(
        "BOOT_IMAGE=/vmlinuz ro " + form.format(url=server.url) + " quiet\n"
    )
    write_seed_dir(root / "etc/pgha/seed", b"never read: the command line wins")
    res = run_agent("--root", root, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert "seed source: kernel command line " + server.url + "db1/pgha/seed.json" in res.stderr


def test_seed_url_file(root, served):
    server = served(make_seed())
    (root / "etc/pgha/seed-url").write_text(
        "# where this node's seed lives\n" + server.url + "db1/\n"
    )
    res = run_agent("--root", root, "--services", "process", "--cmdline", "ro")
    assert res.returncode == 0, res.stderr
    assert "seed source: /etc/pgha/seed-url" in res.stderr


def test_marker_records_the_source(root, served):
    server = served(make_seed())
    assert (
        run_agent("--root", root, "--seed", server.url + "db1/", "--services", "process").returncode
        == 0
    )
    record = json.loads((root / MARKER).read_text())
    assert record["seed"] == "--seed URL " + server.url + "db1/pgha/seed.json"


def test_configured_node_does_not_wait_for_a_seed_server_that_is_gone(root, served):
    server = served(make_seed())
    (root / "etc/pgha/seed-url").write_text(server.url + "db1/\n")
    assert run_agent("--root", root, "--services", "process", "--cmdline", "").returncode == 0
    server.close()
    res = run_agent(
        "--root", root, "--services", "process", "--cmdline", "", "--url-retry-delay", "30"
    )
    assert res.returncode == 0, res.stderr
    assert "retrying" not in res.stderr
    assert "this node is already configured (done-pgha-db1-3f2a9c1e)" in res.stderr


def test_unconfigured_node_fails_when_its_seed_server_is_gone(root):
    (root / "etc/pgha/seed-url").write_text(f"http://127.0.0.1:{free_port()}/db1/\n")
    before = listing(root)
    res = run_agent(
        "--root",
        root,
        "--services",
        "process",
        "--cmdline",
        "",
        "--url-retries",
        "1",
        "--url-retry-delay",
        "0.01",
    )
    assert res.returncode == 3 and "after 2 attempt(s)" in res.stderr
    assert listing(root) == before


class _DripServer:
    """An HTTP server that answers a seed one byte every 0.2 s: each read succeeds within any
    socket timeout, so only a per-attempt deadline stops it."""

    def __init__(self) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    for _ in range(600):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/db1/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_url_timeout_is_per_attempt_against_a_slow_server(root):
    server = _DripServer()
    try:
        res = run_agent("--root", root, "--seed", server.url, "--services", "process",
                        "--url-timeout", "1", "--url-retries", "1", "--url-retry-delay", "0.1",
                        timeout=60)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert res.returncode == 3, res.stderr
    assert "after 2 attempt(s): no complete answer within 1 s" in res.stderr


def test_a_redirect_is_refused_not_followed(root, served, tmp_path):
    """The token would follow a redirect (to another host, or from https to http): the agent
    refuses any, in one line, without retrying."""
    server = served(make_seed())
    (tmp_path / "www" / "moved.json").mkdir()  # a folder: the server answers 301 to "/"
    before = listing(root)
    res = run_agent("--root", root, "--seed", server.url + "moved.json", "--services", "process",
                    "--url-retry-delay", "0.01")
    assert res.returncode == 3, res.stderr
    assert f"answered 301 Moved Permanently (a redirect to {server.url}moved.json/): refused, " \
        "a seed is fetched only from the URL given" in res.stderr
    assert server.requests == ["/moved.json"]  # neither retried nor followed
    assert listing(root) == before


def test_proxy_settings_are_ignored(root, served):
    """A seed never goes through a proxy from the environment (http_proxy would otherwise take
    even 127.0.0.1 when no_proxy is empty)."""
    server = served(make_seed())
    dead = f"http://127.0.0.1:{free_port()}"
    res = run_agent("--root", root, "--seed", server.url + "db1/", "--services", "process",
                    "--url-retries", "0", env={"http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead,
                         "no_proxy": "", "NO_PROXY": ""})
    assert res.returncode == 0, res.stderr
    assert server.requests == ["/db1/pgha/seed.json"]
