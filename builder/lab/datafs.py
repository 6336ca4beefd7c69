"""Small file systems of their own for the db nodes' PostgreSQL data, so that the soak can fill
a primary's disk (`lab up --data-fs MB`, docs/soak.md) without filling this machine's.

Each db node gets a tmpfs of MB MiB (size=, so it fills like a small disk: ENOSPC) mounted at
the parent of its data directory (<node root>/var/lib/postgresql/15: the data directory, and
nothing PostgreSQL copies, is inside; the fault's filler file sits beside it). Mounted by
`lab up` after the role RPMs are installed and before the node's agent boots; a reboot keeps
the mount (it is the host's). The size is recorded in state.json, so every later `up` of the
lab (a node booted again) mounts the same.

Unmounting does not depend on any state: `unmount_all` finds every mount under the lab folder in
/proc/self/mountinfo (deepest first), so `lab down` cleans up after a crashed run too.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
from pathlib import Path

from builder.core.errors import PghaError
from builder.core.run import Runner
from builder.model.platform import Layout

FILLER = "pgha-soak-fill"
MIN_MB, MAX_MB = 64, 4096


def recorded(state_file: Path) -> int | None:
    """The data file systems' size a lab was booted with (state.json), None: none."""
    try:
        value = json.loads(state_file.read_text()).get("data_fs_mb")
    except (OSError, ValueError):
        return None
    return int(value) if value else None


def attach(runner: Runner, root: Path, lay: Layout, mb: int) -> bool:
    """A db node's data file system (before its agent boots); False when already mounted."""
    return mount(runner, mount_point(root, lay.pg_data_dir), mb, lay.postgres_user)


def for_engine(mb: int | None, engine: str) -> int | None:
    """The size to record for a boot with `engine` (the systemd engine's nodes have their own
    disks: not there)."""
    if mb and engine == "systemd":
        raise PghaError("--data-fs works with the process engine only",
                        hint="drop --data-fs, or boot with --engine process")
    return check_size(mb) if mb else None


def check_size(mb: int) -> int:
    if not MIN_MB <= mb <= MAX_MB:
        raise PghaError(f"--data-fs {mb}: the data file system must be {MIN_MB}-{MAX_MB} MiB",
                        hint=f"e.g. --data-fs 256 (PostgreSQL needs about {MIN_MB} MiB to start)")
    return mb


def mount_point(root: Path, pg_data_dir: str) -> Path:
    """Where a node's data file system is mounted: the parent of its data directory."""
    return root / Path(pg_data_dir.lstrip("/")).parent


def mounts_under(folder: Path) -> list[Path]:
    """Every mount point below `folder`, deepest first (the order to unmount them in)."""
    prefix = str(folder.absolute()).rstrip("/") + "/"
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = _unescape(line.split()[4])
            if point.startswith(prefix):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def mount(runner: Runner, point: Path, mb: int, owner: str) -> bool:
    """A tmpfs of `mb` MiB at `point`, owned by `owner` (mode 0755); False when one is there."""
    if os.path.ismount(point):
        return False
    user = pwd.getpwnam(owner)
    point.mkdir(parents=True, exist_ok=True)
    if any(point.iterdir()):
        raise PghaError(f"lab: {point} already holds files; a data file system cannot be "
                        "mounted over them",
                        hint="`pgha-build lab down`, then `lab up --data-fs MB` from scratch")
    runner.run(["mount", "-t", "tmpfs", "-o",
                f"size={mb}m,mode=0755,uid={user.pw_uid},gid={user.pw_gid}",
                "pgha-lab-data", point])
    return True


def unmount_all(runner: Runner, folder: Path) -> list[Path]:
    """Unmount every mount under `folder` (lazily where one is still busy); returns them."""
    points = mounts_under(folder)
    for point in points:
        if runner.run(["umount", point], check=False).returncode != 0:
            runner.run(["umount", "--lazy", point], check=False)
    return points


def usage(point: Path) -> tuple[int, int]:
    """(bytes free, bytes in all) of the file system at `point`."""
    st = os.statvfs(point)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


def fill(point: Path) -> int:
    """Take every free byte of the file system at `point` with a filler file (beside the data
    directory); returns the bytes it took. Whatever PostgreSQL needs next fails with ENOSPC."""
    path = point / FILLER
    taken = 0
    with path.open("ab") as f:
        for chunk in (64 << 20, 1 << 20, 64 << 10, 4 << 10):
            while True:
                try:
                    os.posix_fallocate(f.fileno(), taken, chunk)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
                taken += chunk
    return taken


def free(point: Path) -> None:
    """Remove the filler: the space is back at once."""
    with contextlib.suppress(FileNotFoundError):
        (point / FILLER).unlink()
