"""Day-2 changes on a real lab (issue 20): the cluster file's dynamic settings against the
running cluster (GET /config), applied with PATCH /config, pending restarts in `lab status`,
and a rolling restart with a writer: at most one switchover of write outage, no acknowledged
row lost, the read-only port never down longer than one replica's restart. The real-cluster
command (`pgha-build config`) runs inside a lab namespace against the lab's members. Its own
cluster name, network and ports; needs root."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import changekit
import labclusters
import pytest
import yaml

from builder.core.errors import PghaError
from builder.lab import changes, status, upgrade
from builder.lab import lab as labmod
from builder.lab.health import wait_until
from builder.model.roles import Role
from builder.ops import change, rolling
from builder.stages import specs

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

DATA = labclusters.cluster_data("chgt", "10.83.1", (33100, 33101, 33102))
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(DATA, timeout=180) as the_lab:
        yield the_lab


def _with(lab: labmod.Lab, parameters: dict[str, object]) -> labmod.Lab:
    """The same lab with other PostgreSQL parameters in its cluster file."""
    data = {**DATA, "patroni": {"parameters": parameters}}
    return labclusters.make_lab(data, lab.link.parents[1] if lab.link else Path("output"))


def _show(lab: labmod.Lab, name: str) -> str:
    return str(lab.sql().query(lab.ports()["rw"], f"SHOW {name}")[0][0])


def test_a_fresh_cluster_matches_its_file(lab: labmod.Lab) -> None:
    said: list[str] = []
    result = change.run(lab.cluster, changes.target(lab), said.append)
    assert result["changes"] == [] and not result["applied"]
    assert said == ["the running cluster's dynamic configuration matches the cluster file"]


def _pgha_build(lab: labmod.Lab, cluster_file: Path, *args: str
                ) -> subprocess.CompletedProcess[str]:
    """`pgha-build -c FILE -o <the lab's output> ARGS` from inside db1's namespace: the operator
    on a machine that reaches the db nodes, with output/<cluster>/ as the build left it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(["ip", "netns", "exec", lab.net.node("db1").netns, sys.executable,
                           "-m", "builder", "-c", str(cluster_file), "-o",
                           str(lab.output.root.parent), *args],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def test_real_cluster_command_shows_and_applies_a_reload_change(
        lab: labmod.Lab, tmp_path: Path) -> None:
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump({**DATA, "patroni": {"parameters": {
        "work_mem": "8MB"}}}))
    shown = _pgha_build(lab, cluster_file, "config")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == '+ postgresql.parameters.work_mem: "8MB"'
    assert "not applied" in shown.stdout and _show(lab, "work_mem") == "4MB"
    applied = _pgha_build(lab, cluster_file, "config", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert "applied with PATCH /config (1 change(s))" in applied.stdout
    wait_until("work_mem reloaded", lambda: _show(lab, "work_mem") == "8MB", 30)
    again = _pgha_build(lab, cluster_file, "config")
    assert again.stdout.startswith("the running cluster's dynamic configuration matches")


def test_restart_parameter_shows_as_pending_in_status(lab: labmod.Lab) -> None:
    wanted = _with(lab, {"work_mem": "8MB", "max_connections": 150})
    said: list[str] = []
    change.run(wanted.cluster, changes.target(lab), said.append, apply=True, restart=False)
    assert "~ postgresql.parameters.max_connections: 100 -> 150   [needs a restart]" in said
    assert any("rolling restart plan" in s for s in said)
    data = status.collect(lab)
    assert all(m["pending_restart"] for m in data["members"]), data["members"]
    assert all(m["pending_restart_reason"]["max_connections"]["new_value"] == "150"
               for m in data["members"])
    assert "* max_connections 100->150" in status.table(data)


def test_rolling_restart_with_a_writer(lab: labmod.Lab) -> None:
    tgt = changes.target(lab)
    steps = rolling.plan(rolling.view(tgt))
    old_leader = rolling.leader(rolling.view(tgt))
    assert [s.kind for s in steps] == ["restart", "restart", "switchover", "restart"]
    assert steps[-1].node == old_leader  # the old primary last, after the one switchover
    figures = changekit.measure(lab, lambda: rolling.execute(tgt, steps, print, 120))
    print(figures)
    assert figures["lost"] == []
    assert figures["primary_changes"] == 1
    assert len(figures["write_outages_s"]) <= 1, figures  # the switchover's, nothing else
    replica_restart = max(s["seconds"] for s in figures["result"][:2])
    assert figures["longest_read_outage_s"] <= replica_restart, figures
    view = rolling.view(tgt)
    assert rolling.pending(view) == {} and rolling.leader(view) != old_leader
    assert _show(lab, "max_connections") == "150"


BROKEN_AGENT = b"import sys\nsys.exit('pgha-firstboot: broken on purpose (a failed upgrade)')\n"


def test_failed_upgrade_stops_rolled_back_and_failover_ready(
        lab: labmod.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """Build N+1 whose first-boot agent cannot start: the first node upgraded does not come
    back, is rolled back to N, and the rollout stops with the cluster failover-ready on N."""
    original = specs._role_files

    def broken(role: Role, context: dict[str, Any]) -> list[specs.FileEntry]:
        return [dataclasses.replace(f, content=BROKEN_AGENT)
                if f.dest.endswith("/pgha-firstboot") else f for f in original(role, context)]

    monkeypatch.setattr(specs, "_role_files", broken)
    n1 = _release(lab, 2)
    said: list[str] = []
    with pytest.raises(PghaError) as failed:
        changekit.measure(n1, lambda: upgrade.run(n1, said.append, 90))
    assert "was rolled back to release 1" in failed.value.message, failed.value.message
    assert any("rolling back" in s for s in said)
    assert {upgrade.installed_release(lab, n.name) for n in lab.db_nodes} == {1}
    assert rolling.readiness(rolling.view(changes.target(lab)),
                             lab_config(lab), [n.name for n in lab.db_nodes])[0]


def test_rolling_upgrade_with_a_writer(lab: labmod.Lab) -> None:
    n1 = _release(lab, 2)
    figures = changekit.measure(n1, lambda: upgrade.run(n1, print, 120))
    print(figures)
    assert [s["step"] for s in figures["result"]] == [
        "upgrade", "upgrade", "switchover", "upgrade", "upgrade"]
    assert {upgrade.installed_release(lab, n.name) for n in lab.net.nodes} == {2}
    assert figures["lost"] == []
    assert figures["primary_changes"] == 1
    assert len(figures["write_outages_s"]) <= 1, figures
    replica_step = max(s["seconds"] for s in figures["result"][:2])
    assert figures["longest_read_outage_s"] <= replica_step, figures


def _release(lab: labmod.Lab, release: int) -> labmod.Lab:
    """The running lab as the cluster file with `release` raised describes it."""
    return labclusters.make_lab({**DATA, "patroni": {"parameters": {
        "work_mem": "8MB", "max_connections": 150}}, "release": release},
        lab.link.parents[1] if lab.link else Path("output"))


def lab_config(lab: labmod.Lab) -> dict[str, Any]:
    return changes.target(lab).first("GET", "/config")[1]
