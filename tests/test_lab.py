"""The lab, for real: the cluster booted from its own RPMs and seeds in network namespaces, with
a writer inserting numbered rows through the read-write port during each fault.

One cluster is shared by the tests of this module, in file order; each fault test starts from a
healthy cluster (three members, two streaming replicas) and leaves one (the faulted node
rejoined). The lab runs on its own name, network and ports (TEST_CLUSTER), so a developer's
`pgha-build lab` can run beside it, with the fast timing profile to keep the suite short.
Needs root. The module's last test takes the lab down and checks nothing is left; the fixture
takes it down again on any failure.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator

import labclusters
import pytest
from labkit import cases, scenarios

from builder.core.errors import PghaError
from builder.lab import faults
from builder.lab import lab as labmod
from builder.lab.status import cluster_view
from builder.model.cluster import Cluster

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

TEST_CLUSTER = labclusters.cluster_data("labt", "10.79.0", (15000, 16000, 17000))


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(TEST_CLUSTER) as the_lab:
        yield the_lab


def check(out: scenarios.Outcome, strict: bool = True) -> None:
    print(f"{out.name}: {out.old} -> {out.new}, acknowledged {out.acked}, lost {len(out.lost)}, "
          f"RTO {out.rto:.1f}s, back after {out.rejoin_s}s {' '.join(out.notes)}")
    assert out.new and out.new != out.old
    if strict:
        assert out.lost == [], f"acknowledged rows lost: {out.lost[:20]}"


def test_kill_primary_right_after_lab_up(lab: labmod.Lab) -> None:
    """`lab up` returned (the fixture): the cluster must already be able to fail over."""
    out = cases.fresh_kill(lab, reboot=False)
    check(out)
    assert not out.blocked, "no replica was promoted: lab up returned before failover-ready"


def test_writes_before_every_first_boot_is_done(lab: labmod.Lab) -> None:
    """The read-write port takes writes once a leader exists: `lab up` saw its first write
    before the replicas' first boots (streaming, quorum registered) were done, and reports
    writes, reads and failover-ready separately."""
    t = labclusters.UP_TIMINGS[lab.cluster.name]
    print({k: round(v, 2) for k, v in t.items()})
    assert t["rw_s"] <= t["ro_s"] and t["boot_s"] <= t["ready_s"]
    assert t["rw_s"] < t["boot_s"], "writes waited for every node's first boot"


def test_cluster_forms_from_seeds(lab: labmod.Lab) -> None:
    scenarios.healthy(lab)
    view = cluster_view(lab)
    assert view is not None
    roles = sorted(m["role"] for m in view["members"])
    assert roles.count("leader") == 1 and len(roles) == 3
    sql = lab.sql()
    assert sql.query(sql.rw_port, "SELECT pg_is_in_recovery()") == [(False,)]
    replica_hosts = {m["host"] for m in view["members"] if m["role"] != "leader"}
    seen = set()
    for _ in range(6):
        rows = sql.query(sql.ro_port, "SELECT pg_is_in_recovery(), host(inet_server_addr())")
        assert rows[0][0] is True
        seen.add(rows[0][1])
    assert seen <= replica_hosts and seen, (seen, replica_hosts)


def test_f5_monitors_pick_the_leader_from_real_patroni(lab: labmod.Lab) -> None:
    """The BIG-IP monitors' exact send bytes against the lab's Patroni REST APIs: the receive
    string matches /primary on the leader only and /replica on every other member."""
    import socket
    import ssl

    from builder.stages import f5as3 as as3
    from builder.stages import f5plan as plan

    data = {**lab.cluster.model_dump(mode="json"), "nodes": TEST_CLUSTER["nodes"][:3],
            "load_balancer": {"kind": "f5", "virtual_ip": "10.79.0.50",
                              "f5": {"self_ips": ["10.79.0.1"]}}}
    app = as3.declaration(plan.plan(Cluster.model_validate(data)))["labt"]["postgres"]
    tls = ssl.create_default_context()  # a BIG-IP https monitor does not verify the server
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    scenarios.healthy(lab)
    view = cluster_view(lab)
    assert view is not None
    leader = next(m["name"] for m in view["members"] if m["role"] == "leader")
    up: dict[str, set[str]] = {"mon_patroni_primary": set(), "mon_patroni_replica": set()}
    for node in lab.db_nodes:
        lab.rest_url(node, "/")  # asserts the route to the lab network is local
        for name, found in up.items():
            raw = socket.create_connection((node.address, app[name]["targetPort"]), 5)
            with tls.wrap_socket(raw) if app[name]["monitorType"] == "https" else raw as s:
                s.sendall(app[name]["send"].encode())
                if app[name]["receive"] in s.makefile("rb").read().decode(errors="replace"):
                    found.add(node.name)
    assert up["mon_patroni_primary"] == {leader}
    assert up["mon_patroni_replica"] == {n.name for n in lab.db_nodes} - {leader}


def test_nodes_run_from_their_rpm_and_seed(lab: labmod.Lab) -> None:
    for node in lab.cluster.nodes:
        dirs = lab.node_dirs(node.name)
        assert (dirs.root / "usr/libexec/pgha/pgha-firstboot").is_file()
        assert list((dirs.root / "var/lib/pgha").glob("done-*")), node.name
    patroni_yml = lab.node_dirs("db1").root / "etc/patroni/patroni.yml"
    assert str(lab.node_dirs("db1").root) in patroni_yml.read_text()


def test_planned_switchover_loses_nothing(lab: labmod.Lab) -> None:
    check(scenarios.switchover(lab))


def test_sigkill_of_primary_then_rejoin_as_replica(lab: labmod.Lab) -> None:
    out = scenarios.kill_primary(lab)
    check(out)
    member = next(m for m in (cluster_view(lab) or {})["members"] if m["name"] == out.old)
    assert member["role"] in ("replica", "sync_standby", "quorum_standby")
    assert member["state"] == "streaming"


def test_partition_of_primary(lab: labmod.Lab) -> None:
    out = scenarios.partition_primary(lab)
    check(out)
    member = next(m for m in (cluster_view(lab) or {})["members"] if m["name"] == out.old)
    assert member["role"] in ("replica", "sync_standby", "quorum_standby")


def test_loss_of_one_etcd_member_keeps_cluster_working(lab: labmod.Lab) -> None:
    out = scenarios.etcd_member_loss(lab, hold_s=lab.cluster.patroni.ttl)
    print(f"{out.name}: acknowledged {out.acked}, {' '.join(out.notes)}")
    assert out.new == out.old, "the primary changed after losing one etcd member"
    assert out.lost == []
    assert out.notes == ["0 failed writes"]


def test_loss_of_two_etcd_members_stops_writes_within_ttl(lab: labmod.Lab) -> None:
    out = cases.etcd_quorum_loss(lab)
    print(f"{out.name}: writes stopped after {out.stop_s}s, back {out.rejoin_s}s after etcd, "
          f"lost {len(out.lost)} of {out.acked}")
    assert out.stop_s is not None, "the primary kept acknowledging writes without etcd quorum"
    assert out.stop_s <= lab.cluster.patroni.ttl
    assert out.lost == []


def test_sync_standby_then_primary_loses_nothing(lab: labmod.Lab) -> None:
    out = cases.sync_standby_then_primary(lab)
    print(f"{out.name}: blocked {out.blocked}, {out.old} -> {out.new}, lost {len(out.lost)} "
          f"of {out.acked} {' '.join(out.notes)}")
    assert out.new not in ("None", out.old)
    assert out.lost == [], f"acknowledged rows lost: {out.lost[:20]}"


@pytest.mark.parametrize("case", [cases.lb_restart, cases.lb_partition])
def test_load_balancer_faults(lab: labmod.Lab, case) -> None:  # type: ignore[no-untyped-def]
    out = case(lab)
    print(f"{out.name}: RTO {out.rto:.1f}s, lost {len(out.lost)} of {out.acked}")
    assert out.new == out.old, "the primary changed because of the load balancer"
    assert out.lost == [] and out.late_acks == 0


PROBE = "pgha_async_probe"


def commit_alone(lab: labmod.Lab, timeout: float = 3.0) -> str | None:
    """Commit one marked row through the read-write port while no replica receives WAL: the
    marker if the commit returned within `timeout` (it waited for no replica: asynchronous
    mode), else None (it waits for a standby: quorum or synchronous mode)."""
    marker = uuid.uuid4().hex
    done = threading.Event()

    def commit() -> None:
        sql = lab.sql()
        with contextlib.suppress(Exception):  # the primary is killed under a waiting commit
            sql.query(sql.rw_port, f"INSERT INTO {PROBE} VALUES (%s)", (marker,))
            done.set()

    threading.Thread(target=commit, daemon=True).start()
    return marker if done.wait(timeout) else None


def marker_on_primary(lab: labmod.Lab, marker: str) -> bool:
    sql = lab.sql()
    rows = sql.query(sql.rw_port, f"SELECT count(*) FROM {PROBE} WHERE m = %s", (marker,))
    return rows != [(0,)]


def test_lagging_replica_async_loses_acknowledged_rows(lab: labmod.Lab) -> None:
    """In asynchronous mode a commit the primary acknowledges while its replicas receive no WAL
    is lost when that primary dies. Fails when asynchronous mode is not in force: the probe
    commit then waits for a standby instead of returning."""
    sql = lab.sql()
    sql.query(sql.rw_port, f"CREATE TABLE IF NOT EXISTS {PROBE} (m text)")
    probe: dict[str, str | None] = {}

    def lag(old: str) -> None:
        assert faults.stop_walsenders(lab, old), "no walsender to stop"
        probe["marker"] = commit_alone(lab)
        time.sleep(2)

    try:
        faults.set_mode(lab, "async")
        assert faults.mode_of(faults.current_config(lab)) == "async"
        out = scenarios.run(lab, "kill primary while a replica lags (async)",
                            lambda n: faults.kill(lab, n), lambda n: labmod.up(lab, [n]),
                            before=lag)
    finally:
        faults.set_mode(lab, faults.mode_of(lab.cluster.patroni.model_dump()))
    check(out, strict=False)
    marker = probe["marker"]
    assert marker is not None, "the commit waited for a replica: asynchronous mode not applied"
    assert not marker_on_primary(lab, marker), "the acknowledged commit survived the failover"
    print(f"async: the probe commit and {len(out.lost)} of {out.acked} writer rows lost")


def test_lagging_replica_default_mode_loses_nothing(lab: labmod.Lab) -> None:
    out = cases.lag_then_kill(lab)
    assert out.mode == "quorum"
    check(out, strict=True)


def test_down_leaves_nothing_behind(lab: labmod.Lab) -> None:
    labmod.down(lab)
    assert labmod.leftovers(lab) == []
    with pytest.raises(PghaError):
        labmod.start_relay(lab)  # nothing routes to the lab any more: refused, not sent
