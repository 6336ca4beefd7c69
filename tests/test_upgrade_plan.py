"""The rolling upgrade plan (issue 20): replicas first, one switchover, the old primary, then
the load balancers; each db step upgrades the role's packages and what they require, restarts
Patroni, and names the check before the next step."""

from __future__ import annotations

from click.testing import CliRunner

from builder.cli import cli
from builder.model.cluster import Cluster
from builder.ops import upgrade


def test_order_is_replicas_switchover_old_primary_then_balancers() -> None:
    steps = upgrade.plan(Cluster(), "db2")
    assert [(s.kind, s.node) for s in steps] == [
        ("upgrade", "db1"), ("upgrade", "db3"), ("switchover", "db2"), ("upgrade", "db2"),
        ("upgrade", "lb1")]
    db1 = steps[0]
    assert db1.commands[0].startswith(
        "sudo dnf upgrade --refresh -y pgha-common pgha-role-db postgresql16-server "
        "postgresql16-contrib patroni patroni-etcd etcd")  # and whatever else the role requires
    assert db1.commands[1].startswith("sudo systemctl restart patroni")
    assert "lag 0" in db1.check and "failover" not in steps[2].commands[0]
    assert steps[2].commands[0].startswith(
        "patronictl -c /etc/patroni/patroni.yml switchover pgha --leader db2 --force")


def test_cli_prints_the_plan_and_refuses_a_leader_that_is_no_db_node() -> None:
    res = CliRunner().invoke(cli, ["upgrade-plan", "--leader", "db1"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("rolling upgrade of pgha to release 1")
    assert "3. switch over from db1 (writes pause once)" in res.output
    assert "dnf downgrade" in res.output  # the rollback is part of the plan
    bad = CliRunner().invoke(cli, ["upgrade-plan", "--leader", "lb1"])
    assert bad.exit_code == 2 and "lb1 is not a database node" in bad.output
