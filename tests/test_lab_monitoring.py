"""The alerts proven by their faults (issue 22): a real Prometheus (Debian `prometheus`) in the
lab scrapes the real nodes over TLS (Patroni, etcd, pgha-exporter) with the cluster's own scrape
configuration and rules at the lab's short intervals. Each test injects a fault, asserts that
its alerts fire within the stated bound (monitoring.fires_within: `for:` + 4 scrapes + 2 s) and
that they resolve after the heal. Every dashboard expression returns data against the lab's
series. lb1 is also the backup repository, each db node's data is on a 256 MiB file system
of its own (lab up --data-fs); the cluster lowers monitoring.backup_max_age_s to
20 s so the backup age alert can be proven in the lab. The faults live in tests/labkit/monfaults
(bench/monitoring_bench.py runs the heavier ones: split brain, the VIP). Root only; one lab for
the module; the backup age test runs last but for the dashboard check (its 20 s
threshold fires again 20 s after a heal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import labclusters
import pytest
import yaml
from labkit import monfaults

from builder.lab import faults, monitor
from builder.lab import lab as labmod
from builder.lab.readiness import leader
from builder.model import pki
from builder.stages import dashboard, monitoring

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CLUSTER = labclusters.cluster_data("monlab", "10.86.1", (36010, 36011, 36012))
CLUSTER["nodes"][3]["roles"] = ["haproxy", "backup"]
CLUSTER["monitoring"] = {"backup_max_age_s": 20}


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(CLUSTER, timeout=180, data_fs_mb=256) as the_lab:
        monitor.up(the_lab)
        yield the_lab


def firing(lab: labmod.Lab) -> set[tuple[str, str]]:
    return {(a["labels"]["alertname"], a["labels"].get("node", ""))
            for a in monitor.alerts(lab) if a["state"] == "firing"}


def bound(lab: labmod.Lab, name: str) -> int:
    rule = next(r for r in monitoring.rules(lab.cluster) if r["alert"] == name)
    return monitoring.fires_within(lab.cluster, rule)


def wait_for(lab: labmod.Lab, expected: set[tuple[str, str]], within: float) -> float:
    """Seconds until every expected (alert, node) fires; fails after `within`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if expected <= firing(lab):
            return time.monotonic() - t0
        time.sleep(0.5)
    pytest.fail(f"{sorted(expected - firing(lab))} did not fire within {within} s "
                f"(firing: {sorted(firing(lab))})")


def wait_quiet(lab: labmod.Lab, within: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if not firing(lab):
            return time.monotonic() - t0
        time.sleep(0.5)
    pytest.fail(f"still firing {within} s after the heal: {sorted(firing(lab))}")


def test_every_target_is_scraped_over_tls_and_nothing_fires(lab: labmod.Lab) -> None:
    expected = {(j["job_name"], s["labels"]["node"])
                for j in monitoring.scrape_config(lab.cluster)["scrape_configs"]
                for s in j["static_configs"]}
    assert len(expected) == 10  # 3 Patroni, 3 etcd, 4 pgha-exporter
    deadline = time.monotonic() + 30
    while True:
        up = {(r["metric"]["job"], r["metric"]["node"]) for r in monitor.query(lab, "up == 1")}
        if up >= expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert up >= expected
    wait_quiet(lab, 30)


def test_lab_alerts_command_lists_what_fires(lab: labmod.Lab, tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump(CLUSTER))
    done = subprocess.run([sys.executable, "-m", "builder", "-c", str(tmp_path / "cluster.yaml"),
                           "-o", str(tmp_path / "out"), "lab", "alerts", "--all"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "no alert is pending or firing" in done.stdout or "Pgha" in done.stdout


def test_etcd_member_stopped(lab: labmod.Lab) -> None:
    pids = faults.pids_of(lab, "db2", "etcd")
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # a hung member: it stops answering
    try:
        took = wait_for(lab, {("PghaEtcdMemberDown", "db2"), ("PghaEtcdQuorumAtRisk", "")},
                        bound(lab, "PghaEtcdMemberDown"))
        print(f"etcd member stopped: fired after {took:.1f} s")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    print(f"resolved after {wait_quiet(lab, 30):.1f} s")


def test_certificate_expiring(lab: labmod.Lab) -> None:
    ca = pki.Issued((lab.ctx.out.pki / "ca.key").read_text(),
                    (lab.ctx.out.pki / "ca.crt").read_text())
    short = pki.issue(ca, pki.CertSpec("expiry-test.pgha.lab"), days=1)
    tls_dir = Path(lab.layout.rooted(str(lab.node_dirs("db2").root)).tls_dir)
    path = tls_dir / "expiry-test.crt"
    path.write_text(short.cert_pem)
    try:
        took = wait_for(lab, {("PghaCertificateExpiresSoon", "db2")},
                        bound(lab, "PghaCertificateExpiresSoon"))
        print(f"certificate expiring in 1 day: fired after {took:.1f} s")
    finally:
        path.unlink()
    print(f"resolved after {wait_quiet(lab, 30):.1f} s")


def report(name: str, result: dict[str, Any], state: str = "fired") -> None:
    print(f"{name}: {state} after {result['fire_s']} s (bound {result['bound_s']} s), "
          f"resolved {result['resolve_s']} s after the heal; also fired: {result['also']}")


def test_wal_archive_failing(lab: labmod.Lab) -> None:
    """The repository's archive folder unwritable: the primary's archive_command fails."""
    report("WAL archive failing", monfaults.prove(lab, monfaults.wal_archive))


def test_archiver_and_backup_series_come_from_the_primary(lab: labmod.Lab) -> None:
    """pg_stat_archiver from every database node; `pgbackrest info` from the primary only."""
    primary = leader(lab)
    rows = monitor.query(lab, "pgha_archiver_archived_count")
    assert {r["metric"]["node"] for r in rows} == {n.name for n in lab.db_nodes}
    assert int(next(r for r in rows if r["metric"]["node"] == primary)["value"][1]) > 0
    deadline = time.monotonic() + 30  # the exporter reads `pgbackrest info` every 8 s here
    while True:
        readers = [r["metric"]["node"] for r in monitor.query(lab, "pgha_backup_info_ok == 1")]
        if readers == [primary] or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert readers == [primary]


def test_replication_lag(lab: labmod.Lab) -> None:
    report("replication lag", monfaults.prove(lab, monfaults.replication_lag))


def test_haproxy_no_primary(lab: labmod.Lab) -> None:
    report("HAProxy with no primary", monfaults.prove(lab, monfaults.haproxy_no_primary))


def test_disk_space_low(lab: labmod.Lab) -> None:
    """A replica's data file system (a 256 MiB tmpfs: lab up --data-fs) filled; its `for:` is
    5 minutes: pending here, firing in the bench."""
    report("disk space low", monfaults.prove(lab, monfaults.disk_space), "pending")


def test_pending_restart(lab: labmod.Lab) -> None:
    """Its `for:` is 30 minutes: the lab shows it pending (its expression holds on the real
    series); promtool proves the 30 minutes."""
    report("pending restart", monfaults.prove(lab, monfaults.pending_restart), "pending")


def test_replica_killed(lab: labmod.Lab) -> None:
    primary = leader(lab)
    victim = next(n.name for n in lab.db_nodes if n.name != primary)
    faults.kill(lab, victim)
    expected = {("PghaReplicasNotStreaming", ""), ("PghaPatroniDown", victim),
                ("PghaEtcdMemberDown", victim), ("PghaExporterDown", victim)}
    took = wait_for(lab, expected, bound(lab, "PghaReplicasNotStreaming"))
    print(f"replica {victim} killed: fired after {took:.1f} s")
    labmod.up(lab, [victim], timeout=180)  # the node boots again and rejoins
    print(f"resolved {wait_quiet(lab, 60):.1f} s after the node was back")


def test_backup_too_old(lab: labmod.Lab) -> None:
    """Last: a full backup, then none for longer than the cluster's 20 s; heal: another."""
    report("backup too old", monfaults.prove(lab, monfaults.backup_age))


def test_dashboard_expressions_return_data(lab: labmod.Lab) -> None:
    """Every panel's expression as is, after the faults (the newest backup's age needs a
    backup: the backup age test took two); rates need two samples in their window, so an
    empty answer is asked again for up to 60 s."""
    panels = {title: expr for title, _, expr, _ in dashboard.panels(lab.cluster)}
    deadline = time.monotonic() + 60
    while True:
        empty = [title for title, expr in panels.items() if not monitor.query(lab, expr)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert empty == []
