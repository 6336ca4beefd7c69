"""Backups and point-in-time recovery in a real lab (issue 21): lb1 keeps the pgBackRest
repository (roles haproxy + backup); `lab up` created the stanza; a full backup, WAL archived
through the TLS servers; then the dropped-table drill: rows committed before T, T, rows after
T, DROP TABLE, `lab restore --time T`: every row before T is back and none after, every node
streams again, and `pgbackrest verify` passes on the repository. Its own cluster name, network
and ports; needs root. Figures printed (pytest -s)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import labclusters
import pytest

from builder.lab import backup, restore
from builder.lab import lab as labmod
from builder.lab.readiness import wait_failover_ready
from builder.lab.status import cluster_view

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

DATA = labclusters.cluster_data("bakt", "10.82.1", (32011, 32012, 32013))
DATA["nodes"][3]["roles"] = ["haproxy", "backup"]


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(DATA, timeout=180) as the_lab:
        yield the_lab


def test_full_backup_and_archive(lab: labmod.Lab) -> None:
    t0 = time.monotonic()
    last = backup.run_backup(lab, "full")
    print(f"\nfull backup {last['label']}: {time.monotonic() - t0:.1f}s, "
          f"{last['size'] / 1e6:.1f} MB -> {last['repo_size'] / 1e6:.1f} MB stored")
    assert last["type"] == "full" and last["repo_size"] > 0
    state = backup.status(lab)
    assert state is not None and state["status"] == "ok" and state["wal_min_max"]
    backup.pgbackrest(lab, "check")  # a WAL switch reaches the repository through TLS
    arch = backup.archiver(lab)
    assert arch["archived_count"] > 0 and arch["last_archived_wal"]
    # The repository's passphrase: pgBackRest reports the repository encrypted.
    assert backup.info(lab)["cipher"] == "aes-256-cbc"


def test_dropped_table_is_restored_to_just_before_t(lab: labmod.Lab) -> None:
    sql, rw = lab.sql(), lab.ports()["rw"]
    sql.query(rw, "CREATE TABLE drill (id int PRIMARY KEY)")
    for i in range(1, 41):
        sql.query(rw, "INSERT INTO drill VALUES (%s)", (i,))
    target = sql.query(rw, "SELECT clock_timestamp()::text")[0][0]
    time.sleep(1)
    for i in range(41, 61):
        sql.query(rw, "INSERT INTO drill VALUES (%s)", (i,))
    sql.query(rw, "DROP TABLE drill")
    done = restore.restore(lab, target, timeout=240)
    print(f"\nrestore to {target}: {done}")
    rows = [r[0] for r in lab.sql().query(rw, "SELECT id FROM drill ORDER BY id")]
    assert rows == list(range(1, 41))  # every row before T, none after
    wait_failover_ready(lab, 120)
    view = cluster_view(lab) or {}
    assert sorted(m["name"] for m in view.get("members", [])) == ["db1", "db2", "db3"]
    assert {m.get("timeline") for m in view["members"]} == {view["members"][0]["timeline"]}
    # The replicas were restored from the new timeline's backup and replay the same rows.
    ro = [r[0] for r in lab.sql().query(lab.ports()["ro"], "SELECT count(*) FROM drill")]
    assert ro == [40]
    backup.pgbackrest(lab, "verify")  # every file of every backup and WAL segment checks out
