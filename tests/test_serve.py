"""`serve` for real on 127.0.0.1: a loopback cluster (nodes at 127.0.0.1-4) is built (RPMs,
repo, kickstarts, seeds, host kickstarts), then every kickstart, seed and repository file is
fetched; seeds only from their own host's address (127.0.0.2 is another host on loopback);
traversal, absolute paths and symlinks out of the tree are refused; writes are refused."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core import httpserve
from builder.core.context import Context
from builder.model import loading as config
from builder.pxe import seedauth, serve
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


def _seed_server(loop: Context) -> contextlib.AbstractContextManager[httpserve.Server]:
    tls = seedauth.server_context(loop.out, loop.cluster, "127.0.0.1")
    return httpserve.running(("127.0.0.1", 0), [serve.seed_mount(loop.cluster, loop.out)], tls)


def sget(server: httpserve.Server, loop: Context, path: str, source: str,
         token: str | None) -> tuple[int, bytes]:
    """GET over HTTPS, verifying serve's certificate against the cluster CA."""
    ctx = ssl.create_default_context(cafile=str(loop.out.pki / "ca.crt"))
    conn = http.client.HTTPSConnection("127.0.0.1", server.server_address[1], timeout=10,
                                       source_address=(source, 0), context=ctx)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_seeds_only_to_their_own_host_with_its_token(loop: Context) -> None:
    key = seedauth.token_key(loop.out)
    with _seed_server(loop) as srv:
        assert srv.url.startswith("https://")
        for node in loop.cluster.nodes:
            mine, token = str(node.address), seedauth.host_token(key, node.name)
            other = "127.0.0.2" if mine != "127.0.0.2" else "127.0.0.1"
            other_token = seedauth.host_token(key, "db2" if node.name != "db2" else "db1")
            seed_dir = loop.out.seeds / node.name
            for path in _files(seed_dir):
                url = f"/seeds/{node.name}/{path.relative_to(seed_dir).as_posix()}"
                assert sget(srv, loop, url, mine, token) == (200, path.read_bytes())
                assert sget(srv, loop, url, other, token)[0] == 403
                assert sget(srv, loop, url, mine, None)[0] == 403
                assert sget(srv, loop, url, mine, other_token)[0] == 403
                assert sget(srv, loop, url, mine, token[:-1])[0] == 403
            iso = f"/seeds/{node.name}-cidata.iso"
            assert sget(srv, loop, iso, mine, token)[0] == 200
            assert sget(srv, loop, iso, other, token)[0] == 403
        assert sget(srv, loop, "/seeds/nobody/pgha/seed.json", "127.0.0.1", token)[0] == 403


def test_seed_server_speaks_only_tls_with_the_cluster_ca(loop: Context) -> None:
    with _seed_server(loop) as srv:
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
            get(srv, "/seeds/db1/pgha/seed.json")  # plain HTTP to the TLS port
        with pytest.raises(ssl.SSLCertVerificationError):
            conn = http.client.HTTPSConnection("127.0.0.1", srv.server_address[1], timeout=10,
                                               context=ssl.create_default_context())
            conn.request("GET", "/seeds/db1/pgha/seed.json")


def test_seeds_are_not_on_the_plain_http_server(loop: Context) -> None:
    with httpserve.running(("127.0.0.1", 0), serve.mounts(loop.cluster, loop.out, None)) as srv:
        assert get(srv, "/seeds/db1/pgha/seed.json")[0] == 404


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
                         "/kickstart/escape.ks"):
                status, body = get(srv, path)
                assert status == 403, path
                assert b"not served" not in body
            assert get(srv, "/secrets.yaml")[0] == 404
            assert get(srv, "/serve.key")[0] == 404
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
    with socket.socket() as s, socket.socket() as s2:
        s.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        port, seed_port = s.getsockname()[1], s2.getsockname()[1]
    cfg.write_text(yaml.safe_dump({**LOOPBACK, "image": {"seed_port": seed_port}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "builder", "-c", str(cfg), "-o", str(loop.out.root.parent),
         "serve", "--bind", f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
        # Ctrl-C as at a terminal, even when this run was started in the background (where a
        # shell starts children with SIGINT ignored, and Python then installs no handler).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
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


def _post_script(loop: Context, port: int, etc: Path, cmdline: Path) -> str:
    """db1's seed %post from its host kickstart, pointed at a test folder, file and port."""
    text = pxe.render_host(loop, loop.cluster.node("db1"))
    body = text.split("%post --log=/root/ks-post-seed.log\n", 1)[1].split("\n%end", 1)[0]
    return (body.replace("/proc/cmdline", str(cmdline)).replace("/etc/pgha/", f"{etc}/")
            .replace(f":{loop.cluster.image.seed_port}/", f":{port}/"))


@pytest.mark.parametrize("tamper", [None, "pin", "token"])
def test_host_kickstart_post_fetches_its_seed_over_verified_tls(loop: Context, tmp_path: Path,
                                                                tamper: str | None) -> None:
    """The %post shell (curl --cacert, the token header, the CA pin check) run for real
    against serve's HTTPS seed server; a wrong pin or token gets no seed."""
    import subprocess

    key = seedauth.token_key(loop.out)
    args = pxe.kernel_args(loop, loop.cluster.node("db1"), "http://x/")
    if tamper == "pin":
        args = args.replace("pgha.seed_ca=", "pgha.seed_ca=0")
    if tamper == "token":
        args = args.replace(seedauth.host_token(key, "db1"), seedauth.host_token(key, "db2"))
    cmdline = tmp_path / "cmdline"
    cmdline.write_text(f"BOOT_IMAGE=vmlinuz {args}\n")
    etc = tmp_path / "etc"
    with _seed_server(loop) as srv:
        script = _post_script(loop, srv.server_address[1], etc, cmdline)
        res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                             check=False)
    fetched = etc / "seed" / "pgha" / "seed.json"
    if tamper is None:
        assert res.returncode == 0, res.stderr
        assert fetched.read_bytes() == (loop.out.seeds / "db1" / "pgha" / "seed.json").read_bytes()
    else:
        assert res.returncode != 0 and not (fetched.is_file() and fetched.stat().st_size)
        if tamper == "pin":
            assert "does not match pgha.seed_ca" in res.stderr
