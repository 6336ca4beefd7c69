"""A re-imaged VM joins again from the same RPMs and seed (issue 19), on a real lab with a
writer through the read-write port: `lab replace` of a replica (no write outage, nothing
lost) and of the primary after it was killed (a failover, nothing lost); db4 added to the
cluster file and `lab add`ed, then deleted and `lab remove`d (no outage, nothing lost), with
`check` refusing, while db4 is in, a file that removes the primary the running lab names.
After each, the etcd member list shows the cluster file's db nodes, every one healthy and
voting, and the cluster can fail over. Its own cluster name, network and ports; needs root.
The load balancer holding the virtual IP is replaced in tests/test_lab_vip.py (its lab has
two). The figures are printed (pytest -s)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import changekit
import labclusters
import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.lab import faults, lifecycle
from builder.lab import lab as labmod
from builder.lab.readiness import leader, wait_failover_ready
from builder.lab.status import cluster_view

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

DATA = labclusters.cluster_data("lifet", "10.81.1", (31011, 31012, 31013))
DBS = ["db1", "db2", "db3"]


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(DATA) as the_lab:
        yield the_lab


def _whole(lab: labmod.Lab, dbs: list[str] = DBS) -> None:
    """etcd: `dbs`, all started, voting and healthy; Patroni: `dbs`, able to fail over."""
    members = lifecycle.etcd_members(lab)
    assert [(m["name"], m["started"], m["learner"], m["healthy"]) for m in members] == [
        (name, True, False, True) for name in dbs], members
    wait_failover_ready(lab, 60)
    view = cluster_view(lab) or {}
    assert sorted(m["name"] for m in view.get("members", [])) == dbs


def _replica(lab: labmod.Lab) -> str:
    primary = leader(lab)
    return next(n for n in DBS if n != primary)


def test_replace_a_replica_under_writes(lab: labmod.Lab) -> None:
    name = _replica(lab)
    primary = leader(lab)
    figures = changekit.measure(lab, lambda: lifecycle.replace(lab, name, 120))
    done = figures.pop("result")
    print(f"\nreplace replica {name}: ready {done['ready_s']}s after boot, "
          f"etcd {lifecycle.etcd_line(done['etcd'])}, {figures}")
    assert figures["lost"] == []
    # No outage: the writes never stop (0 on a quiet machine; the writer counts any gap over
    # 1 s, and a shared 2-core machine under load stalls a client that long now and then).
    assert figures["primary_changes"] == 0 and figures["longest_write_outage_s"] < 3.0
    assert leader(lab) == primary
    _whole(lab)
    log = (lab.node_dirs(name).base / "agent.log").read_text()
    assert f"removing the stale member {name}" in log and "is a voting member" in log


def test_replace_the_primary_after_killing_it(lab: labmod.Lab) -> None:
    primary = leader(lab)
    assert primary is not None

    def kill_then_replace() -> dict:
        faults.kill(lab, primary)
        return lifecycle.replace(lab, primary, 120)

    figures = changekit.measure(lab, kill_then_replace)
    done = figures.pop("result")
    print(f"\nkill + replace primary {primary}: ready {done['ready_s']}s after boot, "
          f"etcd {lifecycle.etcd_line(done['etcd'])}, {figures}")
    assert figures["lost"] == []
    assert leader(lab) not in (None, primary)
    _whole(lab)


def test_add_db4_then_remove_it_under_writes(lab: labmod.Lab) -> None:
    assert lab.link is not None
    output = lab.link.parent.parent
    db4 = {"name": "db4", "roles": ["db"], "address": "10.81.1.14"}
    bigger = labclusters.make_lab({**DATA, "nodes": [*DATA["nodes"], db4]}, output)
    primary = leader(lab)
    try:
        figures = changekit.measure(bigger, lambda: lifecycle.add(bigger, "db4", 180))
        done = figures.pop("result")
        print(f"\nadd db4: ready after {done['ready_s']}s, all agents done after "
              f"{done['total_s']}s, etcd {lifecycle.etcd_line(done['etcd'])}, {figures}")
        assert figures["lost"] == [] and figures["primary_changes"] == 0
        assert figures["longest_write_outage_s"] < 3.0  # see the replica case
        _whole(bigger, [*DBS, "db4"])
        cfg = (bigger.node_dirs("lb1").root / "etc/haproxy/haproxy.cfg").read_text()
        assert "10.81.1.14" in cfg
        _check_knows_the_primary(output, {**DATA, "nodes": [*DATA["nodes"], db4]}, primary)

        figures = changekit.measure(lab, lambda: lifecycle.remove(lab, "db4", 180))
        done = figures.pop("result")
        print(f"remove db4: {done['total_s']}s, etcd {lifecycle.etcd_line(done['etcd'])}, "
              f"{figures}")
    except BaseException:
        labmod.down(bigger)  # db4's namespace too
        raise
    assert figures["lost"] == [] and figures["primary_changes"] == 0
    assert figures["longest_write_outage_s"] < 3.0
    assert leader(lab) == primary
    _whole(lab)
    cfg = (lab.node_dirs("lb1").root / "etc/haproxy/haproxy.cfg").read_text()
    hba = (lab.node_dirs(primary).root / "etc/patroni/patroni.yml").read_text()
    assert "10.81.1.14" not in cfg and "10.81.1.14" not in hba
    assert not (lab.dir / "db4").exists()


def _check_knows_the_primary(output: Path, four: dict, primary: str | None) -> None:
    """`check` without --leader asks the running lab: a file that drops the primary (db1-db4
    built) is refused, one that drops db4 passes without a warning."""
    def check(data: dict, name: str, *args: str):
        path = output / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return CliRunner().invoke(cli, ["-c", str(path), "-o", str(output), *args])

    assert check(four, "four", "seeds").exit_code == 0  # the last build: db1-db4
    res = check({**four, "nodes": [n for n in four["nodes"] if n["name"] != primary]},
                "noprimary", "check")
    assert res.exit_code == 2, res.output
    assert f"{primary} is the current primary (the running lab says so)" in res.output
    res = check(DATA, "nodb4", "check")
    assert res.exit_code == 0 and "current primary" not in res.output, res.output

