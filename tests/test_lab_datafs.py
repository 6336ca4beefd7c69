"""The db nodes' data file systems (builder.lab.datafs, `lab up --data-fs`): a real tmpfs of the
asked size that fills like a small disk (ENOSPC for PostgreSQL's user), and that `lab down`
removes from /proc's mount table alone: after a crashed run (no state.json, a filler still in
place, a process still inside it) too. Needs root (mount); no lab is booted."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import labclusters
import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import PghaError
from builder.core.run import Runner
from builder.lab import datafs
from builder.lab import lab as labmod

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mount needs root")
DATA = labclusters.cluster_data("soakd", "10.87.2", (37120, 37121, 37122))


@pytest.fixture
def lab(monkeypatch: pytest.MonkeyPatch) -> Iterator[labmod.Lab]:
    """A lab object (nothing booted) whose folder the postgres user can walk down to (pytest's
    tmp_path is under a 0700 folder)."""
    top = Path(tempfile.mkdtemp(prefix="pgha-soakd-", dir="/var/tmp"))
    os.chmod(top, 0o755)
    monkeypatch.setenv("PGHA_LAB_DIR", str(top / "labs"))
    try:
        yield labclusters.make_lab(DATA, top / "output")
    finally:
        datafs.unmount_all(Runner(), top)
        shutil.rmtree(top, ignore_errors=True)


def _as_postgres(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", "sh", "-c", command],
                          capture_output=True, text=True, check=False)


@root_only
def test_a_full_data_file_system_refuses_postgres_and_lab_down_unmounts_it_after_a_crash(
        lab: labmod.Lab) -> None:
    runner = Runner()
    labmod.make_dir(lab)
    points = []
    for node in lab.db_nodes:
        root = lab.node_dirs(node.name).root
        assert datafs.attach(runner, root, lab.layout, 64)
        assert not datafs.attach(runner, root, lab.layout, 64)  # a reboot keeps it
        points.append(datafs.mount_point(root, lab.layout.pg_data_dir))
    point = points[0]
    assert point.name == "15" and datafs.usage(point)[1] == 64 << 20
    assert _as_postgres(f"mkdir {point}/main && echo ok > {point}/main/f").returncode == 0
    assert datafs.fill(point) > 60 << 20 and datafs.usage(point)[0] == 0
    full = _as_postgres(f"head -c 65536 /dev/zero > {point}/main/g")
    assert full.returncode != 0 and "No space left on device" in full.stderr
    datafs.free(point)
    assert _as_postgres(f"head -c 65536 /dev/zero > {point}/main/g").returncode == 0
    datafs.fill(point)  # the crash: a filler left, no state.json, a process inside
    busy = subprocess.Popen(["sleep", "60"], cwd=point)
    try:
        assert not lab.state_file.exists()
        labmod.down(lab)
    finally:
        busy.kill()
        busy.wait()
    assert datafs.mounts_under(lab.dir) == [] and not lab.dir.exists()
    assert all(not os.path.ismount(p) for p in points)


@root_only
def test_a_data_file_system_is_never_mounted_over_existing_data(lab: labmod.Lab) -> None:
    root = lab.node_dirs("db1").root
    data = root / lab.layout.pg_data_dir.lstrip("/")
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    try:
        with pytest.raises(PghaError, match="already holds files"):
            datafs.attach(Runner(), root, lab.layout, 64)
    finally:
        datafs.unmount_all(Runner(), lab.dir)


def test_sizes_and_engines_are_checked_before_anything_starts() -> None:
    with pytest.raises(PghaError, match="process engine only"):
        datafs.for_engine(256, "systemd")
    assert datafs.for_engine(None, "systemd") is None
    with pytest.raises(PghaError, match="64-4096 MiB"):
        datafs.check_size(16)
    bad = CliRunner().invoke(cli, ["lab", "up", "--data-fs", "16"])
    assert bad.exit_code == 2 and "16 is not in the range 64<=x<=4096" in bad.output
