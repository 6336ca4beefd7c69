"""`serve` for real on 127.0.0.1: a loopback cluster (nodes at 127.0.0.1-4) is built (RPMs,
repo, kickstarts, seeds, host kickstarts), then every kickstart, seed and repository file is
fetched; seeds only from their own host's address (127.0.0.2 is another host on loopback);
traversal, absolute paths and symlinks out of the tree are refused; writes are refused."""

from __future__ import annotations

import http.client
import os
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core.context import Context
from builder.model import loading as config
from builder.pxe import httpserve, serve
from builder.pxe import tree as pxe
from builder.stages import pipeline

pytestmark = pytest.mark.integration

LOOPBACK = {
    "name": "loop",
    "network": {"cidr": "127.0.0.0/8", "gateway": "127.0.0.254", "dns": ["127.0.0.254"]},
    "nodes": [{"name": "db1", "roles": ["db"], "address": "127.0.0.1"},
              {"name": "db2", "roles": ["db"], "address": "127.0.0.2"},
              {"name": "db3", "roles": ["db"], "address": "127.0.0.3"},
              {"name": "lb1", "roles": ["haproxy"], "address": "127.0.0.4"}],
    "repos": {"pgha": "http://127.0.0.1:8080/repo/"},
}


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Context:
    path = tmp_path_factory.mktemp("cfg") / "loop.yaml"
    import yaml

    path.write_text(yaml.safe_dump(LOOPBACK))
    ctx = Context.create(config.load(path), tmp_path_factory.mktemp("out"), RecordingRunner())
    pipeline.run_steps(ctx, pipeline.BUILD)
    pxe.write_host_kickstarts(ctx)
    return ctx


def get(server: httpserve.Server, path: str, source: str = "127.0.0.1",
        method: str = "GET") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_serves_every_kickstart_and_repo_file(loop: Context) -> None:
    with httpserve.running(("127.0.0.1", 0), serve.mounts(loop.cluster, loop.out, None)) as srv:
        files = [("/kickstart/", loop.out.kickstart), ("/repo/", loop.out.rpms)]
        count = 0
        for prefix, root in files:
            for path in _files(root):
                status, body = get(srv, prefix + path.relative_to(root).as_posix())
                assert (status, body) == (200, path.read_bytes()), path
                count += 1
        assert count >= 10
        assert get(srv, "/kickstart/hosts/db1.ks")[0] == 200
        assert get(srv, "/repo/repodata/repomd.xml", method="HEAD")[0] == 200


def test_seeds_only_to_their_own_host(loop: Context) -> None:
    with httpserve.running(("127.0.0.1", 0), serve.mounts(loop.cluster, loop.out, None)) as srv:
        for node in loop.cluster.nodes:
            mine = str(node.address)
            other = "127.0.0.2" if mine != "127.0.0.2" else "127.0.0.1"
            seed_dir = loop.out.seeds / node.name
            for path in _files(seed_dir):
                url = f"/seeds/{node.name}/{path.relative_to(seed_dir).as_posix()}"
                assert get(srv, url, source=mine) == (200, path.read_bytes())
                assert get(srv, url, source=other)[0] == 403
            iso = f"/seeds/{node.name}-cidata.iso"
            assert get(srv, iso, source=mine)[0] == 200
            assert get(srv, iso, source=other)[0] == 403
        assert get(srv, "/seeds/nobody/pgha/seed.json")[0] == 403


def test_refuses_paths_outside_the_tree(loop: Context, tmp_path: Path) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("not served")
    link = loop.out.kickstart / "escape.ks"
    os.symlink(secret, link)
    try:
        with httpserve.running(("127.0.0.1", 0),
                               serve.mounts(loop.cluster, loop.out, None)) as srv:
            for path in ("/kickstart/../secrets.yaml", "/kickstart/%2e%2e/secrets.yaml",
                         "/repo/..%2f..%2fsecrets.yaml", "/kickstart//etc/passwd",
                         "/kickstart/escape.ks", "/seeds/db1/../db2/pgha/seed.json"):
                status, body = get(srv, path)
                assert status == 403, path
                assert b"not served" not in body
            assert get(srv, "/secrets.yaml")[0] == 404
            assert get(srv, "/kickstart/")[0] == 404  # no listings
            assert get(srv, "/kickstart/db.ks", method="POST")[0] == 501
            assert get(srv, "/kickstart/db.ks", method="PUT")[0] == 501
    finally:
        link.unlink()


def test_bind_parsing_and_default(loop: Context) -> None:
    assert serve.default_bind(loop.cluster) == ("127.0.0.1", 8080)
    assert serve.parse_bind("0.0.0.0:9000") == ("0.0.0.0", 9000)
    with pytest.raises(ValueError):
        serve.parse_bind("10.77.0.1")


def test_cli_serve_logs_requests_and_stops_on_ctrl_c(loop: Context, tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys
    import time

    import yaml

    cfg = tmp_path / "loop.yaml"
    cfg.write_text(yaml.safe_dump(LOOPBACK))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder", "-c", str(cfg), "-o", str(loop.out.root.parent),
         "serve", "--bind", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/kickstart/db.ks")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert '127.0.0.1 "GET /kickstart/db.ks HTTP/1.1" 200' in err
    assert "serve: stopped" in err
