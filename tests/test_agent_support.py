"""Helpers for the pgha-firstboot tests: a valid seed per docs/seed-format.md, a fake node root,
running the agent for real as a subprocess, and a recursive listing to prove nothing changed.

(Named test_agent_*.py so it lives beside the agent tests; it also checks its own seed helper.)
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT_DIR = REPO / "roles" / "common" / "agent"
AGENT = AGENT_DIR / "pgha-firstboot"
# Services run as `nobody` when the tests run as root: /root/.pyenv is not readable by it.
SERVICE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PY36 = Path.home() / ".pyenv" / "versions" / "3.6.15" / "bin" / "python3.6"
AS_ROOT = os.geteuid() == 0


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed_file(
    path: str, content: str, mode: str = "0644", owner: str = "root", group: str = "root"
) -> dict:
    return {
        "path": path,
        "owner": owner,
        "group": group,
        "mode": mode,
        "sha256": sha(content),
        "content": content,
    }


def make_seed(**overrides) -> dict:
    """A valid schema-1 seed for node db1 (role db) with two files and no services."""
    seed = {
        "schema_version": 1,
        "cluster": "pgha",
        "instance_id": "pgha-db1-3f2a9c1e",
        "node": {
            "name": "db1",
            "fqdn": "db1.pgha.lab",
            "address": "10.77.0.11",
            "prefix": 24,
            "gateway": "10.77.0.1",
            "dns": ["10.77.0.1"],
            "domain": "pgha.lab",
            "mac": None,
        },
        "roles": ["db"],
        "services": [],
        "disable_services": ["postgresql-16"],
        "firewall_services": ["pgha-postgresql", "pgha-etcd"],
        "health": [],
        "protected_dirs": ["/var/lib/pgsql/16/data"],
        "files": [
            seed_file("/etc/patroni/patroni.yml", "scope: pgha\npassword: s3cret-Xyz\n", "0600"),
            seed_file("/etc/etcd/etcd.conf", 'ETCD_NAME="db1"\n'),
        ],
    }
    seed.update(copy.deepcopy(overrides))
    return seed


def write_seed_dir(folder: Path, seed: dict | str | bytes) -> Path:
    """A NoCloud-style seed folder: meta-data, user-data and pgha/seed.json."""
    (folder / "pgha").mkdir(parents=True, exist_ok=True)
    if isinstance(seed, dict):
        (folder / "meta-data").write_text(
            "instance-id: {}\nlocal-hostname: {}\n".format(seed.get("instance_id"), "db1")
        )
        seed = json.dumps(seed, indent=2)
    data = seed.encode() if isinstance(seed, str) else seed
    (folder / "user-data").write_text("#cloud-config\n")
    (folder / "pgha" / "seed.json").write_bytes(data)
    return folder


def make_root(folder: Path, roles: tuple[str, ...] = ("db",)) -> Path:
    """A node root as the role RPMs leave it: roles baked in, an existing PostgreSQL data dir."""
    for role in roles:
        marker = folder / "etc" / "pgha" / "roles.d" / role
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(role + "\n")
    data = folder / "var" / "lib" / "pgsql" / "16" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("16\n")
    (data / "base").mkdir()
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_service(name: str, port: int, user: str = "nobody", env_file: str | None = None) -> dict:
    return {
        "name": name,
        "user": user,
        "env_file": env_file,
        "argv": [SERVICE_PYTHON, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
    }


def run_agent(
    *args: str | Path, python: str = "python3", env: dict | None = None, timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run pgha-firstboot for real; -v is not passed so stderr shows what an operator sees."""
    if "--health-timeout" not in map(str, args) and "--help" not in args:
        args = (*args, "--health-timeout", "60")
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [python, str(AGENT), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def listing(root: Path) -> list[tuple]:
    """Every path under root with its type, mode, owner, size, content hash and mtime."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            out.append(
                (
                    str(path.relative_to(root)),
                    st.st_mode,
                    st.st_uid,
                    st.st_gid,
                    st.st_size,
                    digest,
                    st.st_mtime_ns,
                )
            )
    return sorted(out)


def stop_services(root: Path) -> None:
    """Kill every process group the process starter recorded under root/run/pgha."""
    for pidfile in (root / "run" / "pgha").glob("*.pid"):
        try:
            os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError, PermissionError):
            pass


def test_make_seed_checksums_match_contents():
    seed = make_seed()
    assert all(f["sha256"] == sha(f["content"]) for f in seed["files"])
    changed = make_seed(roles=["haproxy"])
    assert changed["roles"] == ["haproxy"] and seed["roles"] == ["db"]


def make_cidata_iso(seed_dir: Path, iso: Path) -> Path:
    """A NoCloud ISO of seed_dir (volume label cidata), as the builder makes one."""
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "cidata", "-J", "-r",
                    "-o", str(iso), str(seed_dir)], check=True, capture_output=True)
    return iso
