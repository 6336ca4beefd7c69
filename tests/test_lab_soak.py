"""`lab soak` for real: a two-minute schedule with a fixed seed (a primary's etcd paused, the
primary killed for 18 s (a failover, then the old primary rejoins), the load balancer
restarted, then as far as the time goes: Patroni paused, a network split) against a lab with
writers and readers; the checker must pass, and no fault may outlive the run (no qdisc, nft
table or blackhole route left in any namespace). Then half a minute of disk-full on the same lab
(booted with --data-fs): writes fail for certain while the primary's file system is full and
come back once it is freed. And a replica cut off from the primary alone leaves the read-only
port within seconds (no read older than 10 s through it). Needs root; the lab runs on its own name, network and ports."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import labclusters
import pytest

from builder.lab import datafs
from builder.lab import lab as labmod
from builder.lab.readiness import leader, wait_failover_ready
from builder.lab.soak import checker, clients, links, nemesis, plan, run

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

SOAK_CLUSTER = labclusters.cluster_data("soakt", "10.87.1", (37100, 37101, 37102))
SEED = 59  # pause-etcd, kill (18.3 s), restart-lb, pause-patroni, split, ...
DISK_SEED = 1  # disk-full held 7.9 s, then (time allowing) 7.3 s
# the menu of a lab without data file systems: seed 59 draws the same faults as before
CLASSIC = plan.menu_for(None, has_vip=False)
CUT_S = 20.0


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(SOAK_CLUSTER, timeout=180, data_fs_mb=256) as the_lab:
        yield the_lab  # 180 s: a loaded machine
    assert not datafs.mounts_under(the_lab.dir), "lab down left a data file system mounted"


def test_short_soak_with_a_fixed_seed_passes_the_checker(lab: labmod.Lab) -> None:
    lines: list[str] = []
    report = run.soak(lab, run.Options(minutes=2, seed=SEED, kinds=CLASSIC), lines.append)
    print("\n".join(lines))
    print(run.summary(report))
    assert report["failures"] == [], json.dumps(report["failures"])
    kinds = [f["kind"] for f in report["faults"]]
    assert kinds[:2] == ["pause-etcd", "kill"], kinds  # on a loaded machine no more may fit
    assert report["writes"]["ok"] > 1000 and report["reads"]["ok"] > 100
    assert report["data"]["rows"] >= report["writes"]["ok"]
    assert report["data"]["lost"] == 0 and report["split_brain"] == []
    kill = report["faults"][1]
    assert kill["writes_resumed_s"] is not None and kill["longest_write_gap_s"] > 1
    assert report["final"]["ready"]
    assert set(report["versions"]) == {"patroni", "postgresql", "etcd"}
    assert not _leftover_faults(lab)


def test_disk_full_fails_writes_for_certain_and_they_come_back_once_freed(
        lab: labmod.Lab) -> None:
    assert nemesis.has_data_fs(lab)
    assert "disk-full" in plan.menu_for(None, False, nemesis.has_data_fs(lab))
    lines: list[str] = []
    report = run.soak(lab, run.Options(minutes=0.4, seed=DISK_SEED, kinds=["disk-full"]),
                      lines.append)
    print("\n".join(lines))
    print(run.summary(report))
    assert report["failures"] == [], json.dumps(report["failures"])
    full = report["faults"][0]
    assert full["kind"] == "disk-full" and "MiB taken" in full["detail"], full
    assert full["writes_after_heal_s"] is not None and full["writes_after_heal_s"] < 60
    assert report["writes"]["error"] > 0 and report["data"]["lost"] == 0
    assert report["logs"]["disk_full"] > 0  # PostgreSQL said why
    for node in lab.db_nodes:  # the filler is gone: every node has its space back
        point = nemesis.data_fs(lab, node.name)
        assert not (point / datafs.FILLER).exists()
        assert datafs.usage(point)[0] > 32 << 20


def test_a_replica_cut_off_from_the_primary_leaves_the_read_only_port_in_seconds(
        lab: labmod.Lab) -> None:
    """The soak's stale reads (docs/soak.md, finding 7): a replica that lost its upstream but
    still answers the load balancer kept serving reads as old as the cut (25 s of 25 s before
    the fix). HAProxy now asks Patroni for /replica?lag=<replica_max_lag>: the leader's
    position in the DCS moves on, the replica falls behind it and leaves the pool."""
    wait_failover_ready(lab, 120)
    sql = lab.sql()
    clients.setup(sql)
    t0 = time.monotonic()
    writers = [clients.Writer(sql, i, t0) for i in range(2)]
    readers = [clients.Reader(sql, i, 2, t0) for i in range(2)]
    primary = leader(lab)
    cut = next(n for n in lab.db_nodes if n.name != primary)
    for c in [*writers, *readers]:
        c.start()
    try:
        time.sleep(3)
        start = time.monotonic() - t0
        heal = links.split(lab.runner, lab.net, [str(primary)], [cut.name])
        time.sleep(CUT_S)
        heal()
        end = time.monotonic() - t0
    finally:
        for c in [*writers, *readers]:
            c.stop()
    writes = [op for w in writers for op in w.ops]
    reads = [op for r in readers for op in r.ops]
    stale = checker.stale(writes, reads, CUT_S / 2)
    assert stale["over_bound"] == 0, stale  # fast profile: about 7 s measured at load 13
    served = [op.start for op in reads if op.outcome == "ok" and op.server == cut.address]
    assert served and not [t for t in served if start + CUT_S / 2 < t < end], served[-5:]
    wait_failover_ready(lab, 120)  # the cut replica streams again


def _leftover_faults(lab: labmod.Lab) -> list[str]:
    found = []
    for node in lab.net.nodes:
        ns = ["ip", "netns", "exec", node.netns]
        qdisc = lab.runner.run([*ns, "tc", "qdisc", "show", "dev", "eth0"]).stdout.decode()
        found += [f"{node.name}: {q}" for q in ("netem", "tbf") if q in qdisc]
        tables = lab.runner.run([*ns, "nft", "list", "tables"]).stdout.decode()
        found += [f"{node.name}: nft {links.NFT_TABLE}" for _ in [1] if links.NFT_TABLE in tables]
        routes = lab.runner.run(["ip", "-n", node.netns, "route", "show", "type",
                                 "blackhole"]).stdout.decode()
        found += [f"{node.name}: {r}" for r in routes.splitlines() if r.strip()]
        host = lab.runner.run(["tc", "qdisc", "show", "dev", node.veth]).stdout.decode()
        found += [f"{node.veth}: {q}" for q in ("netem", "tbf") if q in host]
    return found
