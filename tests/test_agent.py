"""pgha-firstboot run for real (a subprocess) against a node root in a temporary folder: every
file it writes, the services it starts, the marker, idempotence, and protected directories."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest
from test_agent_support import (
    AS_ROOT,
    PY36,
    free_port,
    http_service,
    listing,
    make_root,
    make_seed,
    run_agent,
    seed_file,
    stop_services,
    write_seed_dir,
)


@pytest.fixture
def node(tmp_path: Path):
    root = make_root(tmp_path / "root")
    yield root, tmp_path / "seed"
    stop_services(root)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _proc_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(x.decode().split("=", 1) for x in raw if b"=" in x)


def _full_seed(port: int) -> dict:
    env = seed_file(
        "/etc/pgha-test/web.env", "# comment\nWEB_MODE=\"primary\"\nexport WEB_NAME='db1'\n"
    )
    owned = seed_file(
        "/etc/pgha-test/owned.conf", "secret-token-123\n", "0640", "nobody", "nogroup"
    )
    seed = make_seed(
        services=[http_service("web", port, env_file="/etc/pgha-test/web.env")],
        health=[
            {"kind": "tcp", "host": "127.0.0.1", "port": port, "service": "web"},
            {"kind": "http", "url": f"http://127.0.0.1:{port}/", "service": "web", "expect": [200]},
        ],
        directories=[
            {"path": "/var/run/postgresql", "owner": "nobody", "group": "nogroup", "mode": "0755"}
        ],
        generator="pgha-build test",
    )
    seed["files"] += [env, owned]
    return seed


@pytest.mark.parametrize("python", ["python3", str(PY36)], ids=["python3", "python3.6"])
def test_full_run_writes_everything_and_starts_services(node, python):
    if python != "python3" and not Path(python).exists():
        pytest.skip("Python 3.6 (RHEL 8 platform-python's version) is not installed here")
    root, seed_dir = node
    port = free_port()
    write_seed_dir(seed_dir, _full_seed(port))
    res = run_agent(
        "--root",
        root,
        "--seed",
        seed_dir,
        "--services",
        "process",
        python=python,
        env={"PGPASSWORD": "must-not-leak"},
    )
    assert res.returncode == 0, res.stderr
    assert f"seed source: --seed {seed_dir}" in res.stderr
    assert "s3cret" not in res.stderr and "secret-token" not in res.stderr
    assert (root / "etc/hostname").read_text() == "db1.pgha.lab\n"
    keyfile = root / "etc/NetworkManager/system-connections/pgha.nmconnection"
    assert _mode(keyfile) == 0o600
    text = keyfile.read_text()
    assert "address1=10.77.0.11/24,10.77.0.1" in text and "dns=10.77.0.1;" in text
    assert "method=manual" in text and "dns-search=pgha.lab;" in text
    patroni = root / "etc/patroni/patroni.yml"
    assert patroni.read_text() == "scope: pgha\npassword: s3cret-Xyz\n"
    assert _mode(patroni) == 0o600
    assert _mode(root / "etc/etcd/etcd.conf") == 0o644
    owned = root / "etc/pgha-test/owned.conf"
    assert owned.read_text() == "secret-token-123\n" and _mode(owned) == 0o640
    sockdir = root / "var/run/postgresql"
    assert sockdir.is_dir() and _mode(sockdir) == 0o755
    if AS_ROOT:
        nobody = pwd.getpwnam("nobody")
        assert (owned.stat().st_uid, owned.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)
        assert sockdir.stat().st_uid == nobody.pw_uid
        assert patroni.stat().st_uid == 0
    assert not list(root.rglob("*.tmp")), "a temporary file was left behind"
    marker = json.loads((root / "var/lib/pgha/done-pgha-db1-3f2a9c1e").read_text())
    assert marker["instance_id"] == "pgha-db1-3f2a9c1e" and marker["node"] == "db1"
    pid = int((root / "run/pgha/web.pid").read_text())
    env = _proc_env(pid)
    assert "PGPASSWORD" not in env
    assert env["WEB_MODE"] == "primary" and env["WEB_NAME"] == "db1"
    assert env["PATH"].startswith("/usr/local/sbin")
    if AS_ROOT:
        assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nobody").pw_uid
    assert os.getsid(pid) == pid, "service is not in its own session"
    assert (root / "var/log/pgha/web.log").exists()
    assert "web: healthy" in res.stderr


def test_second_run_same_instance_is_a_noop(node):
    root, seed_dir = node
    write_seed_dir(seed_dir, _full_seed(free_port()))
    assert run_agent("--root", root, "--seed", seed_dir, "--services", "process").returncode == 0
    before = [e for e in listing(root) if not e[0].startswith("var/log/pgha")]
    again = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert again.returncode == 0, again.stderr
    assert "already configured" in again.stderr
    assert [e for e in listing(root) if not e[0].startswith("var/log/pgha")] == before


def test_force_reapplies_without_starting_a_second_copy(node):
    root, seed_dir = node
    write_seed_dir(seed_dir, _full_seed(free_port()))
    assert run_agent("--root", root, "--seed", seed_dir, "--services", "process").returncode == 0
    pid = (root / "run/pgha/web.pid").read_text()
    (root / "etc/patroni/patroni.yml").write_text("edited by hand\n")
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process", "--force")
    assert res.returncode == 0, res.stderr
    assert "already running" in res.stderr
    assert (root / "run/pgha/web.pid").read_text() == pid
    assert (root / "etc/patroni/patroni.yml").read_text().startswith("scope: pgha")


def test_protected_dirs_are_never_touched(node):
    root, seed_dir = node
    seed = make_seed(protected_dirs=["/var/lib/pgsql/16/data", "/var/lib/etcd/member"])
    write_seed_dir(seed_dir, seed)
    data = root / "var/lib/pgsql/16/data"
    before = listing(data)
    data_stat = data.stat()
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert listing(data) == before
    assert (data.stat().st_mtime_ns, data.stat().st_mode) == (
        data_stat.st_mtime_ns,
        data_stat.st_mode,
    )
    assert not (root / "var/lib/etcd/member").exists(), "an absent protected dir was created"
    assert "protected /var/lib/pgsql/16/data (exists: left untouched)" in res.stderr


def test_network_left_alone_when_cloud_init_configured_it(node):
    root, seed_dir = node
    (root / "var/lib/cloud/instance").mkdir(parents=True)
    (root / "var/lib/cloud/instance/network-config.json").write_text("{}")
    write_seed_dir(seed_dir, make_seed())
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process")
    assert res.returncode == 0, res.stderr
    assert "cloud-init already configured it" in res.stderr
    assert not (root / "etc/NetworkManager").exists()


def test_mac_binds_the_connection(node):
    root, seed_dir = node
    seed = make_seed()
    seed["node"]["mac"] = "52:54:00:aa:bb:0c"
    write_seed_dir(seed_dir, seed)
    assert run_agent("--root", root, "--seed", seed_dir, "--services", "process").returncode == 0
    text = (root / "etc/NetworkManager/system-connections/pgha.nmconnection").read_text()
    assert "mac-address=52:54:00:AA:BB:0C" in text


def test_service_that_exits_fails_fast_without_marker(node):
    root, seed_dir = node
    port = free_port()
    svc = {"name": "dies", "user": "nobody", "env_file": None, "argv": ["/bin/sh", "-c", "exit 3"]}
    seed = make_seed(
        services=[svc],
        health=[{"kind": "tcp", "host": "127.0.0.1", "port": port, "service": "dies"}],
    )
    write_seed_dir(seed_dir, seed)
    res = run_agent(
        "--root", root, "--seed", seed_dir, "--services", "process", "--health-timeout", "60"
    )
    assert res.returncode == 6, res.stderr
    assert "dies exited with status 3" in res.stderr
    assert not list((root / "var/lib/pgha").glob("done-*"))


def test_health_timeout_fails_without_marker(node):
    root, seed_dir = node
    svc = {
        "name": "idle",
        "user": "nobody",
        "env_file": None,
        "argv": ["/bin/sh", "-c", "exec sleep 60"],
    }
    seed = make_seed(
        services=[svc],
        health=[{"kind": "tcp", "host": "127.0.0.1", "port": free_port(), "service": "idle"}],
    )
    write_seed_dir(seed_dir, seed)
    res = run_agent(
        "--root", root, "--seed", seed_dir, "--services", "process", "--health-timeout", "1"
    )
    assert res.returncode == 6, res.stderr
    assert "idle not healthy after" in res.stderr
    assert not (root / "var/lib/pgha").exists() or not list((root / "var/lib/pgha").glob("done-*"))


def test_http_check_rejects_an_unexpected_status(node):
    root, seed_dir = node
    port = free_port()
    seed = make_seed(
        services=[http_service("web", port)],
        health=[
            {
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/missing",
                "service": "web",
                "expect": [200],
            }
        ],
    )
    write_seed_dir(seed_dir, seed)
    res = run_agent(
        "--root", root, "--seed", seed_dir, "--services", "process", "--health-timeout", "2"
    )
    assert res.returncode == 6, res.stderr
    assert "status 404" in res.stderr


def test_systemd_starter_refuses_another_root(node):
    root, seed_dir = node
    write_seed_dir(seed_dir, make_seed())
    before = listing(root)
    res = run_agent("--root", root, "--seed", seed_dir)
    assert res.returncode == 2
    assert "--services systemd needs --root /" in res.stderr
    assert listing(root) == before


def test_check_validates_and_changes_nothing(node):
    root, seed_dir = node
    write_seed_dir(seed_dir, make_seed())
    before = listing(root)
    res = run_agent("--root", root, "--seed", seed_dir, "--check")
    assert res.returncode == 0, res.stderr
    assert "seed ok" in res.stderr and "node db1 (10.77.0.11)" in res.stderr
    assert listing(root) == before


def test_help_documents_exit_codes():
    res = run_agent("--help")
    assert res.returncode == 0
    for code in ("0  configured", "3  no seed found", "4  seed rejected", "6  a service"):
        assert code in res.stdout


@pytest.fixture
def netns():
    """A scratch network namespace (root only)."""
    import subprocess

    name = f"pgha-t{os.getpid()}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {res.stderr.strip()}")
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@pytest.mark.skipif(not AS_ROOT, reason="network namespaces and setpriv need root")
def test_process_starter_runs_services_in_a_netns_as_their_user(node, netns):
    root, seed_dir = node
    svc = {
        "name": "idle",
        "user": "nobody",
        "env_file": None,
        "argv": ["/bin/sh", "-c", "exec sleep 300"],
    }
    write_seed_dir(seed_dir, make_seed(services=[svc]))
    res = run_agent("--root", root, "--seed", seed_dir, "--services", "process", "--netns", netns)
    assert res.returncode == 0, res.stderr
    assert f"ip netns exec {netns} setpriv" in res.stderr
    pid = int((root / "run/pgha/idle.pid").read_text())
    assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    assert os.stat(f"/proc/{pid}").st_uid == pwd.getpwnam("nobody").pw_uid
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "sleep"
