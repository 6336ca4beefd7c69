"""What `lab up` needs, checked before anything starts: every missing piece named at once, each
with how to get it, in well under a second.

Checked: root; `ip` with network-namespace support; rpm and rpmbuild; psycopg2 (the lab's SQL
checks); the PostgreSQL, etcd, HAProxy and keepalived binaries of the lab's platform; the
Patroni venv (scripts/setup) with the modules Patroni needs; the service users, and that each
of them can reach the lab folder (every parent folder searchable: a clone under /root, mode 0700, is fine
because node roots live under the lab folder, not under the checkout).
"""

from __future__ import annotations

import grp
import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from builder.core.errors import PghaError
from builder.model.platform import LAB_VENV, Layout

SETUP_HINT = "run scripts/setup as root (Debian packages, Python dependencies, the Patroni venv)"
# Debian package of each tool the lab runs, for the messages.
DEBIAN_PACKAGE = {"ip": "iproute2", "rpm": "rpm", "rpmbuild": "rpm", "etcd": "etcd-server",
                  "haproxy": "haproxy", "keepalived": "keepalived", "postgres": "postgresql-15"}


def problems(layout: Layout, lab_dir: Path) -> list[str]:
    """Every missing prerequisite, one line each (empty: ready to go)."""
    found: list[str] = []
    if os.geteuid() != 0:
        found.append("not root: the lab makes network namespaces, users' files and rpm --root "
                     "installs (run it with sudo)")
    found += _tools(layout)
    found += _netns()
    if importlib.util.find_spec("psycopg2") is None:
        found.append("psycopg2 is missing for the lab's SQL checks: pip install "
                     "'pgha-build[lab]' (or psycopg2-binary, or apt-get install python3-psycopg2)")
    found += _patroni(layout)
    found += _users(layout, lab_dir)
    return found


def check(layout: Layout, lab_dir: Path) -> None:
    found = problems(layout, lab_dir)
    if found:
        lines = "\n  ".join(found)
        raise PghaError(f"the lab cannot start, {len(found)} thing(s) missing:\n  {lines}",
                        hint=SETUP_HINT)


def _tools(layout: Layout) -> list[str]:
    wanted = {"ip": "ip", "rpm": "rpm", "rpmbuild": "rpmbuild", "etcd": layout.etcd_bin,
              "haproxy": layout.haproxy_bin, "keepalived": layout.keepalived_bin,
              "postgres": f"{layout.pg_bin_dir}/postgres"}
    return [f"{name} not found ({path}): apt-get install {DEBIAN_PACKAGE[name]}"
            for name, path in wanted.items() if not _executable(path)]


def _executable(path: str) -> bool:
    if "/" not in path:
        return shutil.which(path) is not None
    return os.access(path, os.X_OK) and Path(path).is_file()


def _netns() -> list[str]:
    if not shutil.which("ip"):
        return []
    try:
        proc = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"`ip netns list` failed ({exc}): network namespaces are needed"]
    if proc.returncode != 0:
        return [f"network namespaces unavailable (`ip netns list`: {proc.stderr.strip()[:200]})"]
    return []


def _patroni(layout: Layout) -> list[str]:
    if not _executable(layout.patroni_bin):
        return [(f"Patroni not found at {layout.patroni_bin}: the lab's venv {LAB_VENV} is made "
                "by scripts/setup")]
    python = Path(layout.patroni_bin).parent / "python"
    try:
        # 60 s: on a loaded machine (load 20 on 2 cores) the import took over 10 s, and a node
        # rebooted during `lab soak` was refused as "cannot run"
        proc = subprocess.run([str(python), "-c", "import psycopg2, etcd"], capture_output=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"the Patroni venv's python cannot run ({exc}): re-run scripts/setup"]
    if proc.returncode != 0:
        return [(f"the Patroni venv {python.parent.parent} lacks psycopg2 or python-etcd: "
                "re-run scripts/setup")]
    return []


def _users(layout: Layout, lab_dir: Path) -> list[str]:
    found = []
    for user in sorted({layout.postgres_user, layout.etcd_user, layout.haproxy_user}):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            found.append(f"user {user} does not exist: it comes with its package "
                         "(run scripts/setup)")
            continue
        blocked = first_unsearchable(lab_dir, pw)
        if blocked:
            found.append(f"user {user} cannot reach {lab_dir}: {blocked} is not searchable for "
                         f"it (chmod o+x {blocked}, or set PGHA_LAB_DIR to another folder)")
    return found


def first_unsearchable(path: Path, pw: pwd.struct_passwd) -> Path | None:
    """The first existing folder on the way to `path` that `pw`'s user cannot pass, if any."""
    groups = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if pw.pw_name in g.gr_mem}
    for folder in [*reversed(path.parents), path]:
        try:
            st = folder.stat()
        except FileNotFoundError:
            return None  # made by `lab up` with mode 0755 from here on
        if pw.pw_uid == 0:
            continue
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None
