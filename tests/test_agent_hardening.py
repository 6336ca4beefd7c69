"""The first-boot agent against a planted tree (issue 27): no symlink or hard link it did not
make is followed for logs, env files or PID files; a PID file naming another program gets no
signal; names are bounded before the first write; an IPv6 scope ID is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_agent_support import AGENT_DIR, listing, make_root, make_seed, run_agent, write_seed_dir

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import seed as agent_seed
from pgha_agent import services
from pgha_agent.errors import ApplyFailed, SeedInvalid, ServiceFailed
from pgha_agent.rootfs import Root


def _root(tmp_path: Path) -> tuple[Root, Path]:
    base = tmp_path / "root"
    (base / "var" / "log" / "pgha").mkdir(parents=True)
    (base / "run" / "pgha").mkdir(parents=True)
    return Root(str(base)), base


def test_log_that_is_a_hard_link_is_refused(tmp_path: Path) -> None:
    root, base = _root(tmp_path)
    victim = tmp_path / "shadow"
    victim.write_text("root:x:0:\n")
    os.link(victim, base / "var" / "log" / "pgha" / "etcd.log")
    with pytest.raises(ApplyFailed, match="hard links"):
        root.open_append("/var/log/pgha/etcd.log")
    assert victim.read_text() == "root:x:0:\n"


def test_log_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    root, base = _root(tmp_path)
    victim = tmp_path / "shadow"
    victim.write_text("x\n")
    (base / "var" / "log" / "pgha" / "etcd.log").symlink_to(victim)
    with pytest.raises(ApplyFailed):
        root.open_append("/var/log/pgha/etcd.log")
    assert victim.read_text() == "x\n"


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "dir-symlink", "fifo"])
def test_read_file_follows_no_planted_link(tmp_path: Path, plant: str) -> None:
    root, base = _root(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("PGPASSWORD=stolen\n")
    target = base / "etc" / "pgha" / "env"
    target.parent.mkdir(parents=True)
    if plant == "symlink":
        target.symlink_to(secret)
    elif plant == "hardlink":
        os.link(secret, target)
    elif plant == "fifo":
        os.mkfifo(target)
    else:
        target.parent.rmdir()
        target.parent.symlink_to(tmp_path)
        (tmp_path / "env").write_text("x=1\n")
    with pytest.raises(ApplyFailed):
        root.read_file("/etc/pgha/env")


def test_env_file_symlink_is_refused(tmp_path: Path) -> None:
    root, base = _root(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("A=b\n")
    (base / "etc").mkdir()
    (base / "etc" / "svc.env").symlink_to(secret)
    starter = services.ProcessStarter(root)
    svc = {"name": "svc", "user": "nobody", "env_file": "/etc/svc.env", "argv": ["sleep"]}
    with pytest.raises(ServiceFailed, match="symlink"):
        starter._env(svc, services.pwd.getpwuid(os.getuid()))


@pytest.fixture
def sleeper() -> subprocess.Popen:
    # SIGHUP's default action, even when this run was started under nohup (children would
    # inherit "ignore", and the reload signal would then do nothing).
    proc = subprocess.Popen(["sleep", "60"],
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))  # noqa: PLW1509 - no threads yet
    yield proc
    proc.kill()
    proc.wait()


def _pidfile(base: Path, name: str, pid: int) -> None:
    (base / "run" / "pgha" / f"{name}.pid").write_text(f"{pid}\n")


def test_pid_file_naming_another_program_gets_no_signal(tmp_path: Path,
                                                        sleeper: subprocess.Popen) -> None:
    root, base = _root(tmp_path)
    _pidfile(base, "etcd", sleeper.pid)
    starter = services.ProcessStarter(root)
    svc = {"name": "etcd", "reload": "HUP", "argv": ["/usr/bin/etcd"]}
    assert not starter.running(svc)
    starter.reload(svc)
    time.sleep(0.2)
    assert sleeper.poll() is None  # SIGHUP would have ended sleep


def test_pid_file_of_the_service_is_signalled(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    root, base = _root(tmp_path)
    _pidfile(base, "napper", sleeper.pid)
    starter = services.ProcessStarter(root)
    svc = {"name": "napper", "reload": "HUP", "argv": ["/bin/sleep", "60"]}
    assert starter.running(svc)
    starter.reload(svc)
    assert sleeper.wait(timeout=5) == -signal.SIGHUP


def test_pid_file_that_is_a_symlink_is_ignored(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    root, base = _root(tmp_path)
    elsewhere = tmp_path / "pid"
    elsewhere.write_text(f"{sleeper.pid}\n")
    (base / "run" / "pgha" / "napper.pid").symlink_to(elsewhere)
    svc = {"name": "napper", "reload": "HUP", "argv": ["sleep"]}
    assert not services.ProcessStarter(root).running(svc)


def test_missing_pid_file_is_quiet_and_garbage_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A first boot has no PID file yet: that is not worth a warning. A PID file that holds no
    number is (someone wrote it), and the service is treated as not running either way."""
    root, base = _root(tmp_path)
    svc = {"name": "napper", "reload": "HUP", "argv": ["sleep"]}
    starter = services.ProcessStarter(root)
    with caplog.at_level("WARNING"):
        assert not starter.running(svc)
    assert not caplog.records
    (base / "run" / "pgha" / "napper.pid").write_text("not a pid\n")
    with caplog.at_level("WARNING"):
        assert not starter.running(svc)
    assert "ignoring PID file" in caplog.text


@pytest.mark.parametrize("address", ["fe80::1%eth0", "fe80::1%x\n[connection]\nid=evil",
                                     "10.77.0.11%1", "10.77.0.11 ", "::ffff:10.0.0.1%"])
def test_ipv6_scope_or_odd_address_is_refused(address: str) -> None:
    seed = make_seed()
    seed["node"]["address"] = address
    with pytest.raises(SeedInvalid, match="node.address"):
        agent_seed.validate(agent_seed.json.dumps(seed).encode(), None)


@pytest.mark.parametrize(("field", "value"), [
    ("name", "s" * 250), ("user", "u" * 40),
])
def test_long_service_names_are_refused_before_any_write(tmp_path: Path, field: str,
                                                         value: str) -> None:
    svc = {"name": "etcd", "user": "etcd", "env_file": None, "argv": ["/usr/bin/etcd"]}
    svc[field] = value
    seed = make_seed(services=[svc])
    root = make_root(tmp_path / "root")
    folder = write_seed_dir(tmp_path / "seed", seed)
    before = listing(tmp_path)
    res = run_agent("--root", root, "--seed", folder, "--services", "process")
    assert res.returncode == 4, res.stderr
    assert f"services[0].{field}" in res.stderr and "Traceback" not in res.stderr
    assert listing(tmp_path) == before


def test_long_path_component_is_refused() -> None:
    from pgha_agent.rootfs import canonical_problem

    assert canonical_problem("/etc/" + "x" * 240) is not None
    assert canonical_problem("/etc/" + "x" * 200) is None
