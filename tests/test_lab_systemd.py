"""`lab up --engine systemd`, for real: every node a machine with systemd as PID 1, booted from
the Debian image with the role RPMs installed with their scriptlets, and its seed ISO as the
cidata disk. One cluster boot, then a reboot, a unit failure, a replica machine replaced
(`lab replace`) and `lab down`, in file order.

The image is built on first use (debootstrap, about a minute with a warm .deb cache, several
with a cold one) and cached in /var/cache/pgha-lab (PGHA_LAB_CACHE). Needs root.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import changekit
import labclusters
import pytest
from labkit import engine_faults, scenarios

from builder.core.errors import PghaError
from builder.lab import lab as labmod
from builder.lab import lifecycle, machine, sysboot
from builder.lab.status import cluster_view

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

CLUSTER = labclusters.cluster_data("labsd", "10.80.16", (15016, 16016, 17016))
FIRSTBOOT = "pgha-firstboot.service"
# What the agent logs once per node when it applies the seed (and never again after).
APPLIED = "enabled and started"
EXPORTER = "pgha-exporter"


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(CLUSTER, timeout=240, engine="systemd") as the_lab:
        yield the_lab


def _m(lab: labmod.Lab, name: str) -> machine.Machine:
    return sysboot.machines(lab, [name])[0]


def _in(lab: labmod.Lab, name: str, *argv: str) -> str:
    return machine.text_in(lab.runner, _m(lab, name), list(argv))


def test_cluster_forms_on_machines(lab: labmod.Lab) -> None:
    leader = scenarios.healthy(lab)
    view = cluster_view(lab)
    assert view is not None and leader
    assert sorted(m["name"] for m in view["members"]) == ["db1", "db2", "db3"]
    assert labmod.engine_of(lab) == "systemd"


def test_each_node_booted_like_a_vm(lab: labmod.Lab) -> None:
    for node in lab.cluster.nodes:
        m = _m(lab, node.name)
        pid = machine.pid1(m)
        assert pid is not None
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
        assert _in(lab, node.name, "systemctl", "is-system-running") == "running"
        assert _in(lab, node.name, "systemctl", "--failed", "--no-legend") == ""
        assert _in(lab, node.name, "hostname") == f"{node.name}.{lab.cluster.network.domain}"
        # Installed by rpm with scriptlets: the preset in pgha-common's %post enabled the agent.
        assert "pgha-common" in _in(lab, node.name, "rpm", "-qa")
        assert _in(lab, node.name, "systemctl", "is-enabled", FIRSTBOOT) == "enabled"
        journal = _in(lab, node.name, "journalctl", "-u", FIRSTBOOT, "-o", "cat", "--no-pager")
        assert "seed source: block device /dev/sr0 (label cidata)" in journal
        assert journal.count(APPLIED) == len(_services(lab, node.name))
        assert len(_in(lab, node.name, "ls", "/var/lib/pgha").split()) == 1  # one done marker
        for svc in _services(lab, node.name):
            assert _in(lab, node.name, "systemctl", "is-active", svc) == "active"
            assert _in(lab, node.name, "systemctl", "is-enabled", svc) == "enabled"
            if svc == EXPORTER:
                continue  # our own unit, no drop-in
            dropins = _in(lab, node.name, "systemctl", "show", "-p", "DropInPaths", "--value", svc)
            assert f"/usr/lib/systemd/system/{svc}.service.d/50-pgha.conf" in dropins.split()
        if "db" in node.roles:  # PGDG's unit says Restart=no; our drop-in makes it on-failure
            assert _in(lab, node.name, "systemctl", "show", "-p", "Restart", "--value",
                       "patroni") == "on-failure"


def _services(lab: labmod.Lab, name: str) -> list[str]:
    roles = lab.cluster.node(name).roles
    exporter = [EXPORTER] if lab.cluster.monitoring.enabled else []
    return (["etcd", "patroni"] if "db" in roles else ["haproxy"]) + exporter


def test_every_unit_and_drop_in_we_ship_verifies(lab: labmod.Lab) -> None:
    for node in lab.cluster.nodes:
        # Every unit we ship a drop-in for (from the RPMs as installed), and pgha-firstboot.
        found = _in(lab, node.name, "sh", "-c", "ls /usr/lib/systemd/system/*.d/50-pgha.conf")
        units = [FIRSTBOOT, *(Path(d).parent.name.removesuffix(".d") for d in found.split())]
        assert set(units) >= {f"{s}.service" for s in _services(lab, node.name) if s != EXPORTER}
        units += [f"{EXPORTER}.service"] if lab.cluster.monitoring.enabled else []
        res = machine.exec_in(lab.runner, _m(lab, node.name),
                              ["systemd-analyze", "verify", "--man=no", *units], check=False)
        out = (res.stdout + res.stderr).decode()
        assert res.returncode == 0, out
        assert "pgha" not in out and "patroni" not in out, out


def test_reboot_does_not_rerun_first_boot_and_the_node_rejoins(lab: labmod.Lab) -> None:
    primary = scenarios.healthy(lab)
    node = next(n.name for n in lab.db_nodes if n.name != primary)
    m = _m(lab, node)
    old = machine.pid1(m)
    new = machine.reboot(lab.runner, m)
    assert new != old
    assert machine.wait_settled(lab.runner, m, 120) == "running"
    boots = _in(lab, node, "journalctl", "--list-boots", "--no-pager")
    assert len(re.findall(r"\b[0-9a-f]{32}\b", boots)) == 2, boots  # each boot its own ID
    journal = _in(lab, node, "journalctl", "-u", FIRSTBOOT, "-o", "cat", "--no-pager")
    assert journal.count(APPLIED) == 3  # etcd, patroni, pgha-exporter at the first boot only
    this_boot = _in(lab, node, "journalctl", "-b", "-u", FIRSTBOOT, "-o", "cat", "--no-pager")
    assert "is already configured" in this_boot and APPLIED not in this_boot
    scenarios.healthy(lab, 120)
    view = cluster_view(lab)
    assert view is not None
    member = next(x for x in view["members"] if x["name"] == node)
    assert member["state"] == "streaming"


def test_patroni_killed_is_restarted_by_systemd(lab: labmod.Lab) -> None:
    out = engine_faults.patroni_killed(lab)
    print(f"{out.name}: {out.old} -> {out.new}, RTO {out.rto:.1f}s, lost {len(out.lost)} "
          f"{' '.join(out.notes)}")
    assert out.new == out.old  # restarted in time: no failover
    assert out.lost == []
    restarts = machine.unit_property(lab.runner, _m(lab, out.old), "patroni.service", "NRestarts")
    assert int(restarts) >= 1


def test_replace_a_replica_machine(lab: labmod.Lab) -> None:
    """`lab replace` on the systemd engine: the machine powered off, its disk (overlay) and
    seed disk gone, a new machine from the same image, RPMs and seed ISO; its first boot
    rejoins etcd (the stale member removed, a learner promoted) and Patroni clones it, under
    a writer: nothing acknowledged lost, no primary change."""
    primary = scenarios.healthy(lab)
    node = next(n.name for n in lab.db_nodes if n.name != primary)
    old_pid = machine.pid1(_m(lab, node))
    figures = changekit.measure(lab, lambda: lifecycle.replace(lab, node, 240))
    done = figures.pop("result")
    print(f"\nsystemd: replace {node}: ready {done['ready_s']}s after boot, "
          f"etcd {lifecycle.etcd_line(done['etcd'])}, {figures}")
    assert figures["lost"] == [] and figures["primary_changes"] == 0
    assert [(m["name"], m["learner"], m["healthy"]) for m in done["etcd"]] == [
        (n, False, True) for n in ("db1", "db2", "db3")]
    assert machine.pid1(_m(lab, node)) not in (None, old_pid)
    journal = _in(lab, node, "journalctl", "-u", FIRSTBOOT, "-o", "cat", "--no-pager")
    assert "seed source: block device /dev/sr0 (label cidata)" in journal
    assert f"removing the stale member {node}" in journal and "is a voting member" in journal
    assert len(re.findall(r"\b[0-9a-f]{32}\b", _in(lab, node, "journalctl", "--list-boots",
                                                   "--no-pager"))) == 1  # a new disk
    scenarios.healthy(lab, 120)


def test_down_leaves_no_mount_namespace_or_process(lab: labmod.Lab) -> None:
    pids = [machine.pid1(_m(lab, n.name)) for n in lab.cluster.nodes]
    assert all(pids)
    assert any(line.split()[4].startswith(str(lab.dir)) for line in
               Path("/proc/self/mountinfo").read_text().splitlines())
    labmod.down(lab)
    assert labmod.leftovers(lab) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    with pytest.raises(PghaError):
        machine.exec_in(lab.runner, _m(lab, "db1"), ["true"])
