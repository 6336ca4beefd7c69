"""Integration: the real pgha-common and pgha-role-db RPMs installed into a folder with
`rpm --root`, and the agent they ship run from there against real seeds made by the builder
(`pgha-build seeds`, builder/seeds.py): the contract docs/seed-format.md, end to end."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_agent_support import (
    AS_ROOT,
    REPO,
    free_port,
    http_service,
    listing,
    make_cidata_iso,
    run_agent,
    stop_services,
    write_seed_dir,
)

pytestmark = pytest.mark.integration
AGENT_IN_RPM = "usr/libexec/pgha/pgha-firstboot"


def _pgha_build(out: Path, *args: str) -> None:
    cmd = [sys.executable, "-c", "from builder.cli import main; main()", "-o", str(out), *args]
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """RPMs and seeds of the default cluster, built once for this module."""
    out = tmp_path_factory.mktemp("agent-build")
    _pgha_build(out, "rpms")
    _pgha_build(out, "seeds")
    return out / "pgha"


@pytest.fixture
def installed(build, tmp_path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    rpms = [
        next((build / "rpms").glob(f"{name}-[0-9]*.noarch.rpm"))
        for name in ("pgha-common", "pgha-role-db")
    ]
    res = subprocess.run(
        [
            "rpm",
            "--root",
            str(root),
            "-ivh",
            "--nodeps",
            "--noscripts",
            "--define",
            "_dbpath /var/lib/rpm",
            *map(str, rpms),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(tmp_path)},
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    yield root
    stop_services(root)


def test_rpm_ships_the_agent(installed):
    agent = installed / AGENT_IN_RPM
    assert stat.S_IMODE(agent.stat().st_mode) == 0o755
    package = installed / "usr/libexec/pgha/pgha_agent"
    modules = sorted(p.name for p in package.iterdir())
    assert {"__init__.py", "cli.py", "seed.py", "services.py"} <= set(modules)
    assert all(stat.S_IMODE((package / m).stat().st_mode) == 0o644 for m in modules)
    assert not any(m.endswith(".pyc") or m == "__pycache__" for m in modules)
    unit = (installed / "usr/lib/systemd/system/pgha-firstboot.service").read_text()
    assert "ExecStart=/usr/libexec/pgha/pgha-firstboot" in unit
    assert (installed / "etc/pgha/roles.d/db").exists()


def _passwords(tree) -> list[str]:
    if isinstance(tree, dict):
        found = [v for k, v in tree.items() if k == "password" and isinstance(v, str)]
        return found + [p for v in tree.values() for p in _passwords(v)]
    return []


def _run_installed(root: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["python3", str(root / AGENT_IN_RPM), "--root", str(root), *args, "--health-timeout", "60"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_installed_agent_accepts_every_builder_seed(build, installed):
    """--check on each db seed ISO the builder wrote; the lb seed is refused (no haproxy role)."""
    before = listing(installed)
    for host in ("db1", "db2", "db3"):
        res = _run_installed(installed, "--seed", build / "seeds" / f"{host}-cidata.iso", "--check")
        assert res.returncode == 0, res.stderr
        assert f"node {host}" in res.stderr
    res = _run_installed(installed, "--seed", build / "seeds" / "lb1-cidata.iso", "--check")
    assert res.returncode == 4 and "role 'haproxy' is not baked" in res.stderr
    assert listing(installed) == before


def test_installed_agent_applies_a_builder_seed(build, installed, tmp_path):
    """The builder's db1 seed, with its services swapped for a trivial one and no etcd join (the
    real etcd and Patroni need the lab): every file and directory lands with its owner and mode."""
    seed = json.loads((build / "seeds/db1/pgha/seed.json").read_text())
    port = free_port()
    seed["services"] = [http_service("etcd", port)]
    # no real etcd to join or to wait for a leader from (tests/test_agent_etcdjoin.py does that)
    seed.pop("etcd_join", None)
    seed["health"] = [{"kind": "tcp", "host": "127.0.0.1", "port": port, "service": "etcd"}]
    seed_dir = write_seed_dir(tmp_path / "seed", seed)
    iso = tmp_path / "db1.iso"
    make_cidata_iso(seed_dir, iso)
    res = _run_installed(installed, "--seed", iso, "--services", "process")
    assert res.returncode == 0, res.stderr
    for entry in seed["files"]:
        path = installed / entry["path"].lstrip("/")
        assert path.read_text() == entry["content"]
        assert stat.S_IMODE(path.stat().st_mode) == int(entry["mode"], 8)
        if AS_ROOT:
            import pwd

            assert path.stat().st_uid == pwd.getpwnam(entry["owner"]).pw_uid
    for entry in seed["directories"]:
        path = installed / entry["path"].lstrip("/")
        assert stat.S_IMODE(path.stat().st_mode) == int(entry["mode"], 8)
    for secret in _passwords(yaml.safe_load((build / "secrets.yaml").read_text())):
        assert secret not in res.stderr, "a secret reached the agent's log"
    assert (installed / "var/lib/pgha" / f"done-{seed['instance_id']}").exists()
    assert not (installed / "var/lib/pgsql/16/data").exists()
    again = run_agent("--root", installed, "--seed", iso, "--services", "process")
    assert again.returncode == 0 and "already configured" in again.stderr
