"""Backups and point-in-time recovery in a real lab (issue 21): lb1 keeps the pgBackRest
repository (roles haproxy + backup); `lab up` created the stanza; a full backup, WAL archived
through the TLS servers; a named restore point restored into a verify copy (pg_amcheck,
pg_checksums, the cluster untouched) and a damaged block caught; then the dropped-table drill:
rows committed before T, T, rows after T, DROP TABLE, `lab restore --time T`: every row before
T is back and none after, every node streams again, and `pgbackrest verify` passes on the
repository; last the total loss: every db node SIGKILLed under a writer and wiped, reinstalled
from the same RPMs and seeds, `restore --latest`: the acknowledged rows lost are at most those
of the last archive_timeout (10 s here, to keep the drill short). Its own cluster name, network
and ports; needs root. Figures printed (pytest -s)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import labclusters
import pytest
from labkit import backupdrill

from builder.core.errors import PghaError
from builder.lab import backup, restore, verify
from builder.lab import lab as labmod
from builder.lab.readiness import wait_failover_ready
from builder.lab.status import cluster_view

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

DATA = labclusters.cluster_data("bakt", "10.82.1", (32011, 32012, 32013))
DATA["nodes"][3]["roles"] = ["haproxy", "backup"]
DATA["backup"] = {"archive_timeout": 10}


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


def test_restore_point_into_a_verified_copy(lab: labmod.Lab) -> None:
    sql, rw = lab.sql(), lab.ports()["rw"]
    sql.query(rw, "CREATE TABLE rp (id int PRIMARY KEY)")
    sql.query(rw, "INSERT INTO rp SELECT generate_series(1, 30)")
    backup.restore_point(lab, "before-rp-31")
    sql.query(rw, "INSERT INTO rp SELECT generate_series(31, 50)")
    done = verify.verify(lab, "name", "before-rp-31", query="SELECT count(*), max(id) FROM rp")
    print("\n" + "\n".join(verify.lines(done)))
    assert done["rows"] == ["30|30"]  # the copy stopped exactly at the restore point
    assert done["amcheck"]["relations"] > 100 and done["amcheck"]["pages"] > 0
    assert done["checksums"]["bad"] == 0 and done["checksums"]["blocks"] > 0
    # The cluster was not touched and the copy is gone.
    assert sql.query(rw, "SELECT count(*) FROM rp") == [(50,)]
    scratch = lab.node_dirs(done["node"]).root / verify.SCRATCH
    assert not scratch.exists()
    # A point the archive does not hold: one clear error, the copy removed, the cluster fine.
    with pytest.raises(PghaError, match="recovery ended before"):
        verify.verify(lab, "name", "no-such-point")
    assert not scratch.exists() and lab.sql().can_write()


def test_a_damaged_block_fails_pg_checksums(lab: labmod.Lab) -> None:
    node = backup.repo_node(lab).name
    base = str(lab.node_dirs(node).root / verify.SCRATCH)
    try:
        verify.restore_copy(lab, node, base, "latest", None)
        rel = restore.run_pg(lab, node, "psql", "-h", base, "-U", lab.layout.postgres_user,
                            "-d", "postgres", "-XAtc", "SELECT pg_relation_filepath('rp')")[1]
        restore.run_pg(lab, node, "pg_ctl", "-D", f"{base}/data", "-m", "fast", "-w", "stop")
        assert restore.checksums(lab, node, f"{base}/data")["bad"] == 0
        with open(f"{base}/data/{rel.strip()}", "r+b") as f:  # free space of page 0
            f.seek(4000)
            f.write(b"\xff" * 16)
        with pytest.raises(PghaError, match="pg_checksums failed"):
            restore.checksums(lab, node, f"{base}/data")
    finally:
        verify.drop_copy(lab, node, base)


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
    assert done["checksums"]["bad"] == 0 and done["checksums"]["blocks"] > 0  # checked first
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


def test_total_loss_loses_at_most_the_last_archive_timeout(lab: labmod.Lab) -> None:
    out = backupdrill.site_loss(lab, clean=False, write_s=12, timeout=240)
    print(f"\ntotal loss: {out}")
    assert out["acked"] > out["window_rows"] > 0  # the writer ran past one archive_timeout
    assert out["lost"] <= out["window_rows"]
    assert out["acked"] - out["lost"] > 0  # what was archived came back
    wait_failover_ready(lab, 120)
    view = cluster_view(lab) or {}
    assert sorted(m["name"] for m in view.get("members", [])) == ["db1", "db2", "db3"]
