"""`lab up`'s prerequisite check: every missing piece named at once, before anything starts, and
the service users' reach of the lab folder judged by real modes and real users."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.core.errors import PghaError
from builder.lab import preflight
from builder.lab.lab import lab_cluster, lab_root
from builder.model.loading import load
from builder.model.platform import layout


def lab_layout():  # type: ignore[no-untyped-def]
    cluster = lab_cluster(load(None))
    return layout(cluster.platform, cluster.postgres_version)


def test_missing_binaries_and_psycopg2_are_each_named(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    broken = dataclasses.replace(lab_layout(), etcd_bin="/nonexistent/etcd",
                                 haproxy_bin="/nonexistent/haproxy",
                                 pg_bin_dir="/nonexistent/pg/bin",
                                 patroni_bin="/nonexistent/venv/bin/patroni")
    real_find_spec = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec",
                        lambda name: None if name == "psycopg2" else real_find_spec(name))
    start = time.monotonic()
    with pytest.raises(PghaError) as err:
        preflight.check(broken, tmp_path / "lab")
    elapsed = time.monotonic() - start
    text = str(err.value)
    for needle in ("etcd not found (/nonexistent/etcd): apt-get install etcd-server",
                   "haproxy not found (/nonexistent/haproxy): apt-get install haproxy",
                   "postgres not found (/nonexistent/pg/bin/postgres)",
                   "Patroni not found at /nonexistent/venv/bin/patroni",
                   "psycopg2 is missing"):
        assert needle in text
    assert "run scripts/setup" in err.value.hint
    assert elapsed < 1.0, f"preflight took {elapsed:.2f}s"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every user can reach (pytest's own tmp_path sits under a 0700 folder)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_a_0700_folder_on_the_way_is_named(open_dir: Path) -> None:
    closed = open_dir / "home"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    nobody = pwd.getpwnam("nobody")
    assert preflight.first_unsearchable(closed / "lab" / "x", nobody) == closed
    closed.chmod(0o711)
    assert preflight.first_unsearchable(closed / "lab" / "x", nobody) is None
    root = pwd.getpwuid(0)
    closed.chmod(0o700)
    assert preflight.first_unsearchable(closed / "lab", root) is None


def test_the_default_lab_folder_is_outside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHA_LAB_DIR", raising=False)
    assert lab_root() == Path("/var/lib/pgha-lab")
    monkeypatch.setenv("PGHA_LAB_DIR", "/srv/labs")
    assert lab_root() == Path("/srv/labs")


@pytest.mark.skipif(os.geteuid() != 0, reason="the full check needs root")
def test_this_machine_is_ready_after_setup() -> None:
    """scripts/setup (which CI runs first) leaves nothing for the lab to miss."""
    assert preflight.problems(lab_layout(), lab_root() / "any") == []
