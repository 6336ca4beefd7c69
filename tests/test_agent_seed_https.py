"""pgha-firstboot fetching its seed from a real `pgha-build serve` process on loopback, as a
node booted with `pgha.seed=https://...` does: the server must prove itself with the cluster CA
(pinned by pgha.seed_ca=, or the CA file the PXE kickstart writes), the request carries the
host's token; a wrong token, another host's seed, a wrong CA or pin and plain http are refused
with one line, exit 3 and nothing written. Runs under python3 and the platform-python 3.6
stand-in (~/.pyenv 3.6.15) when present."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from test_agent_support import PY36, listing, make_root, make_seed, run_agent, write_seed_dir

from builder.core.paths import OutputPaths
from builder.model import loading as config
from builder.model import pki
from builder.pxe import seedauth
from builder.pxe import serve as servemod

REPO = Path(__file__).resolve().parent.parent
PYTHONS = ["python3"] + ([str(PY36)] if PY36.exists() else [])
MARKER = "var/lib/pgha/done-pgha-db1-3f2a9c1e"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "builder", *args], capture_output=True,
                          text=True, timeout=120, env=env, check=False)


class Served:
    def __init__(self, tmp: Path, over_http: bool = False) -> None:
        self.http_port, self.seed_port = _free_ports(2)
        self.cfg = tmp / "safeloop.yaml"
        self.cfg.write_text(yaml.safe_dump({
            "name": "safeloop",
            "network": {"cidr": "127.0.0.0/8", "gateway": "127.0.0.254", "dns": ["127.0.0.254"]},
            "nodes": [{"name": "db1", "roles": ["db"], "address": "127.0.0.1"},
                      {"name": "db2", "roles": ["db"], "address": "127.0.0.2"},
                      {"name": "db3", "roles": ["db"], "address": "127.0.0.3"},
                      {"name": "lb1", "roles": ["haproxy"], "address": "127.0.0.4"}],
            "repos": {"pgha": f"http://127.0.0.1:{self.http_port}/repo/"},
            "image": {"seed_port": self.seed_port, "seeds_over_http": over_http}}))
        self.out = tmp / "out"
        self.seeds = self.out / "safeloop" / "seeds"
        write_seed_dir(self.seeds / "db1", make_seed())
        write_seed_dir(self.seeds / "db2", make_seed(instance_id="pgha-db2-3f2a9c1e"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "builder", "-c", str(self.cfg), "-o", str(self.out), "serve",
             "--bind", f"127.0.0.1:{self.http_port}"], stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
        port = self.http_port if over_http else self.seed_port
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "no serve"
                time.sleep(0.2)
        self.key = seedauth.token_key(OutputPaths(self.out / "safeloop"))
        self.ca = self.out / "safeloop" / "pki" / "ca.crt"

    def boot_args(self, host: str, via_cli: bool = False) -> str:
        """What `serve --boot-args HOST` prints (the real CLI, or the same function)."""
        if via_cli:
            args = _cli("-c", str(self.cfg), "-o", str(self.out), "serve", "--boot-args", host)
            assert args.returncode == 0, args.stderr
            return args.stdout.strip()
        return servemod.boot_args(config.load(self.cfg), OutputPaths(self.out / "safeloop"), host)

    def token(self, host: str) -> str:
        return seedauth.host_token(self.key, host)

    def url(self, host: str) -> str:
        return f"https://127.0.0.1:{self.seed_port}/seeds/{host}/"

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.communicate(timeout=20)[1]
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(tmp_path_factory.mktemp("serve"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_root(tmp_path / "root")


def _agent(root: Path, cmdline: str, *extra: str, python: str = "python3"):
    return run_agent("--root", root, "--services", "process", "--cmdline", cmdline,
                     "--url-retries", "1", "--url-retry-delay", "0.1", *extra, python=python)


@pytest.mark.parametrize("python", PYTHONS)
def test_boot_args_from_serve_fetch_the_seed_with_the_pinned_ca_and_token(
        served: Served, root: Path, python: str) -> None:
    """`serve --boot-args db1` is all the node needs: no CA file, the pin alone."""
    args = served.boot_args("db1", via_cli=python == "python3")
    words = args.split()
    assert words[0] == "pgha.seed=" + served.url("db1")
    assert f"pgha.seed_token={served.token('db1')}" in words
    assert any(w.startswith("pgha.seed_ca=") and len(w) == 13 + 64 for w in words)
    res = _agent(root, "BOOT_IMAGE=vmlinuz ro " + args, python=python)
    assert res.returncode == 0, res.stderr
    assert "/pki/ca.crt (matches pgha.seed_ca)" in res.stderr
    assert "sending the host's token" in res.stderr
    assert served.token("db1") not in res.stderr
    record = json.loads((root / MARKER).read_text())
    assert record["seed"] == "kernel command line " + served.url("db1") + "pgha/seed.json"


@pytest.mark.parametrize("python", PYTHONS)
def test_ca_file_from_the_pxe_kickstart_is_used(served: Served, root: Path, python: str) -> None:
    (root / "etc/pgha/seed-ca.crt").write_bytes(served.ca.read_bytes())
    (root / "etc/pgha/seed-token").write_text(served.token("db1") + "\n")
    res = _agent(root, f"ro pgha.seed={served.url('db1')}", python=python)
    assert res.returncode == 0, res.stderr
    assert "cluster CA /etc/pgha/seed-ca.crt" in res.stderr.replace(str(root), "")
    assert (root / MARKER).exists()


@pytest.mark.parametrize(("host", "token_of", "python"),
                         [("db1", "db2", "python3"), ("db2", "db2", "python3"),
                          ("db2", "db1", "python3"), ("db1", "db2", PYTHONS[-1])],
                         ids=["wrong-token", "other-host-own-token", "other-host-my-token",
                              "wrong-token-py36"])
def test_wrong_token_or_another_hosts_seed_is_refused(served: Served, root: Path, host: str,
                                                      token_of: str, python: str) -> None:
    (root / "etc/pgha/seed-ca.crt").write_bytes(served.ca.read_bytes())
    before = listing(root)
    cmdline = f"pgha.seed={served.url(host)} pgha.seed_token={served.token(token_of)}"
    res = _agent(root, cmdline, python=python)
    assert res.returncode == 3, res.stderr
    assert "after 1 attempt(s): HTTP 403 not for this client" in res.stderr  # not retried
    assert "token" in res.stderr.splitlines()[-1] and served.token(token_of) not in res.stderr
    assert listing(root) == before


def _other_ca(tmp: Path) -> Path:
    pki.load_or_create_ca(tmp / "otherpki", "intruder", 30)
    return tmp / "otherpki" / "ca.crt"


@pytest.mark.parametrize("python", PYTHONS)
def test_a_server_outside_the_cluster_ca_is_refused(served: Served, root: Path, tmp_path: Path,
                                                    python: str) -> None:
    before = listing(root)
    cmdline = f"pgha.seed={served.url('db1')} pgha.seed_token={served.token('db1')}"
    res = _agent(root, cmdline, "--seed-ca", str(_other_ca(tmp_path)), python=python)
    assert res.returncode == 3, res.stderr
    assert "after 1 attempt(s): the server's certificate does not verify against the " \
           "cluster CA" in res.stderr
    assert listing(root) == before


def test_a_wrong_pin_refuses_the_ca_file_and_the_served_ca(served: Served, root: Path,
                                                          tmp_path: Path) -> None:
    other = _other_ca(tmp_path)
    wrong = seedauth.ca_fingerprint(other.read_text())
    cmdline = (f"pgha.seed={served.url('db1')} pgha.seed_token={served.token('db1')} "
               f"pgha.seed_ca={wrong}")
    before = listing(root)
    res = _agent(root, cmdline)  # no CA file: the CA served at /pki/ca.crt fails the pin
    assert res.returncode == 3 and "/pki/ca.crt (sha256 " in res.stderr
    assert "does not match pgha.seed_ca=" in res.stderr
    assert listing(root) == before
    (root / "etc/pgha/seed-ca.crt").write_bytes(served.ca.read_bytes())
    before = listing(root)
    res = _agent(root, cmdline)  # the right CA file, but not the one pinned
    assert res.returncode == 3 and "the seed CA " in res.stderr
    assert "does not match pgha.seed_ca=" in res.stderr
    assert listing(root) == before


def test_https_without_any_ca_and_plain_http_are_refused_before_any_request(
        served: Served, root: Path) -> None:
    before = listing(root)
    res = _agent(root, f"pgha.seed={served.url('db1')} pgha.seed_token={served.token('db1')}")
    assert res.returncode == 3
    assert "cannot verify the seed server: no cluster CA (boot with pgha.seed_ca=" in res.stderr
    plain = f"http://127.0.0.1:{served.http_port}/seeds/db1/"
    res = _agent(root, f"pgha.seed={plain} pgha.seed_token={served.token('db1')}")
    assert res.returncode == 3
    assert "refusing to fetch the seed over plain http" in res.stderr
    assert "pgha.seeds_over_http=1" in res.stderr
    res = _agent(root, "ro", "--seed", plain)
    assert res.returncode == 3 and "refusing to fetch the seed over plain http" in res.stderr
    assert listing(root) == before


def test_malformed_token_and_pin_are_one_line_errors(served: Served, root: Path) -> None:
    url = served.url("db1")
    res = _agent(root, f"pgha.seed={url} pgha.seed_ca=abc")
    assert res.returncode == 3 and "pgha.seed_ca= on the kernel command line is not a SHA-256" \
        in res.stderr
    (root / "etc/pgha/seed-ca.crt").write_bytes(served.ca.read_bytes())
    res = _agent(root, f"pgha.seed={url} pgha.seed_token=XYZ")
    assert res.returncode == 3 and "pgha.seed_token= on the kernel command line is not a seed " \
        "token" in res.stderr
    assert len(res.stderr.strip().splitlines()[-1].split("\n")) == 1


def test_lab_option_serves_and_fetches_seeds_over_plain_http(tmp_path: Path, root: Path) -> None:
    """image.seeds_over_http: serve warns and puts seeds (address and token still checked) on
    the plain port; the agent takes them only with pgha.seeds_over_http=1, and warns."""
    served = Served(tmp_path, over_http=True)
    try:
        args = served.boot_args("db1")
        assert "pgha.seeds_over_http=1" in args and "pgha.seed_ca" not in args
        plain = f"http://127.0.0.1:{served.http_port}/seeds/db1/"
        assert args.split()[0] == "pgha.seed=" + plain
        res = _agent(root, f"pgha.seed={plain} pgha.seed_token={served.token('db2')} "
                           "pgha.seeds_over_http=1")
        assert res.returncode == 3 and "HTTP 403" in res.stderr
        res = _agent(root, args)
        assert res.returncode == 0, res.stderr
        assert "seed over plain http (lab option pgha.seeds_over_http)" in res.stderr
    finally:
        err = served.stop()
    assert "warning: image.seeds_over_http: seeds cross the network in clear text" in err


def test_serve_offers_the_ca_certificate_and_nothing_else_of_pki(served: Served) -> None:
    import http.client
    import ssl

    context = ssl.create_default_context(cafile=str(served.ca))
    for path, status in (("/pki/ca.crt", 200), ("/pki/ca.key", 403), ("/pki/serve.key", 403),
                         ("/pki/", 403), ("/pki/%2e%2e/serve.key", 403)):
        conn = http.client.HTTPSConnection("127.0.0.1", served.seed_port, timeout=10,
                                           context=context)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        assert resp.status == status, path
        if status == 200:
            assert body == served.ca.read_bytes()
        else:
            assert b"PRIVATE KEY" not in body


@pytest.mark.parametrize("over_http", [False, True])
def test_check_warns_about_plain_http_seeds_only_with_the_lab_option(tmp_path: Path,
                                                                     over_http: bool) -> None:
    from click.testing import CliRunner

    from builder.cli import cli

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"image": {"seeds_over_http": over_http}}))
    result = CliRunner().invoke(cli, ["-c", str(cfg), "check"])
    assert result.exit_code == 0, result.output
    warned = "image.seeds_over_http: seeds (passwords, private keys) cross the install network " \
             "in clear text: lab only"
    assert (warned in result.output) is over_http


@pytest.mark.parametrize("python", PYTHONS)
def test_a_certificate_for_another_name_is_refused(served: Served, root: Path,
                                                  python: str) -> None:
    """serve's certificate names 127.0.0.1; reached as localhost, the name does not match."""
    (root / "etc/pgha/seed-ca.crt").write_bytes(served.ca.read_bytes())
    before = listing(root)
    url = served.url("db1").replace("127.0.0.1", "localhost")
    res = _agent(root, f"pgha.seed={url} pgha.seed_token={served.token('db1')}", python=python)
    assert res.returncode == 3, res.stderr
    assert "after 1 attempt(s): the server's certificate does not verify against the " \
           "cluster CA" in res.stderr
    assert listing(root) == before
