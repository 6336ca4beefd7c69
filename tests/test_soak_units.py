"""The soak's pure parts: the schedule a seed gives, and the checker on hand-made histories
(each check is shown to fire on the anomaly it names, and to stay quiet on a clean history)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import PghaError
from builder.core.run import Runner
from builder.lab.soak import checker, plan
from builder.lab.soak.clients import ID_STRIDE, Op


def w(writer: int, seq: int, start: float, end: float, outcome: str = "ok",
      server: str = "10.0.0.11", tl: int = 1) -> Op:
    return Op(f"w{writer}", start, end, outcome, writer * ID_STRIDE + seq,
              server if outcome == "ok" else "", tl if outcome == "ok" else 0)


def row(op: Op) -> tuple[int, int, int, str, int, int]:
    return (op.id, op.id // ID_STRIDE, op.id % ID_STRIDE, op.server, 7, op.tl)


def test_same_seed_same_schedule_other_seed_other_schedule() -> None:
    menu = plan.menu_for(None, has_vip=False)
    assert "move-vip" not in menu
    assert plan.first(59, menu, 10) == plan.first(59, menu, 10)
    assert plan.first(59, menu, 10) != plan.first(60, menu, 10)
    for step in plan.first(3, menu, 50):
        kind = plan.MENU[step.kind]
        assert step.target in kind.targets
        assert kind.hold[0] <= step.hold_s <= kind.hold[1]


def test_menu_rejects_unknown_kinds_and_the_vip_fault_without_a_vip() -> None:
    with pytest.raises(PghaError, match="unknown fault kind.*nope"):
        plan.menu_for(["kill", "nope"], has_vip=True)
    with pytest.raises(PghaError, match="virtual IP"):
        plan.menu_for(["move-vip"], has_vip=False)
    assert plan.menu_for(["move-vip"], has_vip=True) == ["move-vip"]


def test_disk_full_only_with_data_file_systems_and_old_schedules_stay() -> None:
    assert "disk-full" not in plan.menu_for(None, has_vip=True)
    with pytest.raises(PghaError, match="small file system") as err:
        plan.menu_for(["disk-full"], has_vip=False)
    assert "--data-fs" in (err.value.hint or "")
    full = plan.menu_for(None, has_vip=False, has_data_fs=True)
    assert full[-1] == "disk-full" and full[:-1] == plan.menu_for(None, has_vip=False)
    # the CI seed draws from the menu without disk-full: the same faults as before it came
    kinds = [s.kind for s in plan.first(59, plan.menu_for(None, has_vip=False), 3)]
    assert kinds == ["pause-etcd", "kill", "restart-lb"]


def test_writes_must_come_back_soon_after_a_disk_full_heal() -> None:
    writes = [w(0, i, t, t + 0.05) for i, t in enumerate([1, 2, 3, 14, 15, 40, 41], start=1)]
    faults = [checker.Fault(0, "disk-full", ["db1"], 2.5, 12.0, 13.0),
              checker.Fault(1, "disk-full", ["db1"], 16.0, 20.0, 21.0)]
    report = _report(writes, [row(o) for o in writes])
    report["faults"] = checker.per_fault(writes, faults, 100.0)
    first, second = report["faults"]
    assert first["writes_after_heal_s"] == pytest.approx(2.05)  # back at 14.05, healed at 12
    assert second["writes_after_heal_s"] == pytest.approx(20.05)
    assert checker.verdict(report) == []
    late = [*writes, w(0, 8, 160.45, 160.5)]
    faults += [checker.Fault(2, "disk-full", ["db2"], 80.0, 90.0, 91.0),
               checker.Fault(3, "disk-full", ["db3"], 170.0, 180.0, None)]
    report["faults"] = checker.per_fault(late, faults, 200.0)
    assert checker.verdict(report) == [
        "#2 disk-full on db2: writes came back 70.5s after the heal (bound 60s)",
        "#3 disk-full on db3: no write was acknowledged after the heal (bound 60s)"]
    kill = checker.per_fault(writes, [checker.Fault(0, "kill", ["db1"], 80.0, 90.0, None)], 100)
    assert checker.verdict({**report, "faults": kill}) == []  # only disk-full is bounded


def test_split_groups_are_never_empty() -> None:
    names = ["db1", "db2", "db3", "lb1"]
    seen = set()
    for mask in range(200):
        first, second = plan.split_groups(names, mask)
        assert first and second and sorted(first + second) == names
        seen.add(tuple(second))
    assert len(seen) == 14  # every split of four nodes into two named groups


def test_clean_history_passes() -> None:
    writes = [w(0, i, i, i + 0.01) for i in range(1, 50)]
    reads = [Op("r0", 10.5, 10.6, "ok", seen=[10])]
    report = _report(writes, [row(o) for o in writes], reads)
    assert report["data"]["lost"] == 0 and report["split_brain"] == []
    assert report["stale_reads"]["over_bound"] == 0
    assert checker.verdict(report) == []


def test_lost_acknowledged_write_fails_rpo0_modes_only() -> None:
    writes = [w(0, i, i, i + 0.01) for i in range(1, 10)]
    rows = [row(o) for o in writes if o.id % ID_STRIDE != 4]
    report = _report(writes, rows)
    assert report["data"]["lost_ids"] == [4]
    assert any("1 acknowledged writes lost in quorum" in f for f in checker.verdict(report))
    assert checker.verdict(_report(writes, rows, mode="async")) == []


def test_unknown_writes_may_be_present_but_errors_and_phantoms_may_not() -> None:
    writes = [w(0, 1, 0, 1), w(0, 2, 1, 2, "unknown"), w(0, 3, 2, 3, "unknown"),
              w(0, 4, 3, 4, "error")]
    present = [row(writes[0]), (writes[1].id, 0, 2, "10.0.0.11", 7, 1)]
    report = _report(writes, present)
    assert report["data"]["unknown_present"] == 1 and report["data"]["unknown_absent"] == 1
    assert checker.verdict(report) == []
    bad = _report(writes, [*present, (writes[3].id, 0, 4, "x", 7, 1), (99, 0, 99, "x", 7, 1)])
    assert bad["data"]["present_after_error_ids"] == [writes[3].id]
    assert bad["data"]["phantom_ids"] == [99]
    assert len(checker.verdict(bad)) == 2


def test_duplicates_are_found() -> None:
    writes = [w(0, 1, 0, 1), w(0, 2, 1, 2)]
    report = _report(writes, [row(writes[0]), row(writes[1]), row(writes[1])])
    assert report["data"]["duplicate_ids"] == [writes[1].id]
    assert checker.verdict(report) == ["1 duplicate ids"]


def test_split_brain_is_interleaved_acks_of_two_primaries_not_a_failover() -> None:
    old = [w(0, i, i, i + 0.1, server="10.0.0.11", tl=1) for i in range(1, 10)]
    # a clean failover: the new primary's first ack comes after the old one's last start,
    # even with a slow last ack of the old one that ends after the new one began
    slow = w(1, 1, 9.5, 12.5, server="10.0.0.11", tl=1)
    new = [w(0, i, i, i + 0.1, server="10.0.0.12", tl=2) for i in range(12, 20)]
    assert checker.split_brain([*old, slow, *new]) == []
    # the old primary acknowledges a write begun after the new one had acknowledged
    late = w(1, 2, 15.0, 15.1, server="10.0.0.11", tl=1)
    found = checker.split_brain([*old, slow, *new, late])
    assert found == [{"a": "10.0.0.11 tl 1", "b": "10.0.0.12 tl 2", "from": 12.1, "to": 15.0}]
    report = _report([*old, slow, *new, late], [row(o) for o in [*old, slow, *new, late]])
    assert "split brain" in checker.verdict(report)[0]


def test_stale_reads_are_measured_against_acknowledged_writes() -> None:
    writes = [w(0, i, i, i + 0.1) for i in range(1, 40)] + [w(1, 1, 0, 0.1)]
    fresh = Op("r0", 20.05, 20.2, "ok", seen=[19, 1])
    stale = Op("r0", 30.0, 30.1, "ok", server="10.0.0.12", seen=[5, 1])  # misses seq 6 (6.1)
    out = checker.stale(writes, [fresh, stale, Op("r0", 31, 32, "error")], bound=10)
    assert out["reads_ok"] == 2 and out["over_bound"] == 1 and out["max_s"] == 23.9
    assert out["worst"] == {"at_s": 30.0, "server": "10.0.0.12"}
    assert out["over_by_server"] == {"10.0.0.12": [30.0, 30.0, 1]}
    assert checker.stale(writes, [fresh], bound=10)["max_s"] == 0.0
    behind = Op("r0", 20.05, 20.2, "ok", seen=[18, 1])  # misses seq 19, acknowledged at 19.1
    assert checker.stale(writes, [behind], bound=10)["max_s"] == pytest.approx(0.95)


def test_writes_resumed_is_the_end_of_the_longest_silence() -> None:
    writes = [w(0, i, t, t + 0.05) for i, t in enumerate([1, 2, 3, 9, 10, 11], start=1)]
    resumed, gap = checker.writes_resumed(writes, 2.5, 12)
    assert resumed == pytest.approx(6.55) and gap == pytest.approx(6.0)
    assert checker.writes_resumed(writes[:3], 0.5, 3.5) == (0.0, 1.0)
    assert checker.writes_resumed(writes, 20, 30) == (None, 10)


def test_not_ready_after_the_last_heal_fails() -> None:
    report = _report([w(0, 1, 0, 1)], [(ID_STRIDE * 0 + 1, 0, 1, "s", 7, 1)])
    report["final"] = {"ready": False, "bound_s": 60, "reason": "db3 is not streaming"}
    assert checker.verdict(report) == [
        "not failover-ready 60s after the last heal: db3 is not streaming"]


def test_cli_plan_prints_the_seeds_schedule_without_a_lab(tmp_path: object) -> None:
    result = CliRunner().invoke(cli, ["lab", "soak", "--plan", "--seed", "59"])
    assert result.exit_code == 0, result.output
    steps = plan.first(59, plan.menu_for(None, False), 12)
    assert [line.strip() for line in result.output.splitlines()[1:]] == [s.line() for s in steps]
    bad = CliRunner().invoke(cli, ["lab", "soak", "--plan", "--faults", "kill,bogus"])
    assert bad.exit_code == 1 and "unknown fault kind(s): bogus" in bad.output


def _report(writes: list[Op], rows: list[tuple[object, ...]], reads: list[Op] | None = None,
            mode: str = "quorum") -> dict[str, object]:
    reads = reads or []
    return {"mode": mode, "data": checker.data(writes, rows),
            "split_brain": checker.split_brain(writes),
            "stale_reads": checker.stale(writes, reads, 30.0),
            "final": {"ready": True, "bound_s": 120, "reason": ""},
            "writes": checker.totals(writes)}


def test_a_replica_without_the_primarys_rows_fails() -> None:
    writes = [w(0, 1, 0, 1)]
    report = _report(writes, [row(writes[0])])
    report["replicas"] = {"10.0.0.12": {"rows": 1, "same_as_primary": True},
                          "10.0.0.13": {"rows": 0, "same_as_primary": False}}
    assert checker.verdict(report) == [
        ("replica 10.0.0.13 does not hold the primary's rows after the run (0 rows, the "
        "primary 1)")]


def test_log_signals_count_only_what_the_run_added(tmp_path: Path) -> None:
    from builder.lab.soak import logscan

    node = tmp_path / "db1"
    node.mkdir()
    log = node / "patroni.log"
    log.write_text("INFO: pg_rewind exit code=0\n")  # before the run
    start = logscan.sizes([node])
    with log.open("a") as f:
        f.write("INFO: running pg_rewind from db3\n"
                "INFO: running pg_rewind from db3 in progress\n" * 3 +
                "INFO: pg_rewind exit code=0\nINFO: running pg_rewind from db3\n"
                "INFO: pg_rewind exit code=1\n"
                "INFO: promoted self to leader by acquiring session lock\n"
                "FATAL: requested starting point 0/5000000 is ahead of the WAL flush position "
                "of this server 0/4FFFFF0\n")
    (node / "etcd.log").write_text("demoting self because DCS is not accessible\n")  # new file
    found = logscan.count([node], start)
    assert found["pg_rewind_runs"] == 2 and found["pg_rewind_failures"] == 1
    assert found["promotions"] == 1
    assert found["wal_ahead_of_flush"] == 1 and found["dcs_lost_demotions"] == 1
    log.write_text("exit code=0\n")  # truncated (shorter than at the start): read whole
    assert logscan.count([node], start)["pg_rewind_runs"] == 0
    log.write_text("pg_rewind exit code=0\n")
    assert logscan.count([node], start)["pg_rewind_runs"] == 1


class _TcRunner(Runner):
    """Records every command; `tc ... netem` fails as on a kernel without sch_netem unless
    `netem`."""

    def __init__(self, netem: bool) -> None:
        super().__init__()
        self.netem, self.argvs = netem, []  # type: list[list[str]]

    def run(self, argv: Sequence[str | Path], **_: Any) -> subprocess.CompletedProcess[bytes]:
        args = [str(a) for a in argv]
        self.argvs.append(args)
        refused = "tc" in args and "netem" in args and not self.netem
        return subprocess.CompletedProcess(args, 2 if refused else 0, b"",
                                           b"Error: Specified qdisc kind is unknown." if refused
                                           else b"")


@pytest.mark.parametrize("netem", [True, False])
def test_link_faults_take_tc_netem_where_the_kernel_has_it(
        netem: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.lab.net import NodeNet
    from builder.lab.soak import links

    monkeypatch.setattr(links, "_NETEM", {})
    runner = _TcRunner(netem)
    node = NodeNet("db1", "soakx-db1", "vsoakx-db1", "10.87.3.11")
    slow, _ = links.slow(runner, node, 3)
    lossy, _ = links.lossy(runner, node, 3)
    assert links.netem_known() is netem
    probes = [a for a in runner.argvs if "netem" in a and "1ms" in a]
    assert len(probes) == 1 and links.PROBE_LINK in probes[0]  # once, never on eth0
    tc_adds = [a for a in runner.argvs if "tc" in a and "add" in a and a not in probes]
    if netem:
        assert slow.startswith("netem delay") and "reorder" in slow and lossy == "netem loss 8%"
        assert sum("netem" in a for a in tc_adds) == 4  # both ways, both faults
        assert not [a for a in runner.argvs if "nft" in a]
    else:
        assert slow.startswith("tbf rate 128kbit") and lossy == "nft random drop 8%"
        assert not [a for a in tc_adds if "netem" in a]
        assert [a for a in runner.argvs if "nft" in a]


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root")
def test_the_netem_probe_tells_this_kernel_the_truth(monkeypatch: pytest.MonkeyPatch) -> None:
    from builder.lab.net import NodeNet
    from builder.lab.soak import links

    ns = "soak-netem-probe"
    run = Runner().run
    run(["ip", "netns", "add", ns])
    try:
        ns_exec = ["ip", "netns", "exec", ns]
        run([*ns_exec, "ip", "link", "add", "truth0", "type", "veth", "peer", "name", "truth1"])
        truth = run([*ns_exec, "tc", "qdisc", "add", "dev", "truth0", "root", "netem", "delay",
                     "1ms"], check=False).returncode == 0
        monkeypatch.setattr(links, "_NETEM", {})
        seen: list[tuple[list[str], int]] = []

        class Recording(Runner):
            def run(self, argv: Sequence[str | Path], **kw: Any
                    ) -> subprocess.CompletedProcess[bytes]:
                proc = super().run(argv, **kw)
                seen.append(([str(a) for a in argv], proc.returncode))
                return proc

        assert links.netem_available(Recording(), NodeNet("x", ns, "unused", "10.87.9.9")) is truth
        assert [code for argv, code in seen if "tc" in argv] == [0 if truth else 2]
        assert all(code == 0 for argv, code in seen if "tc" not in argv)  # the veth came and went
        links_left = run([*ns_exec, "ip", "-o", "link"]).stdout.decode()
        assert links.PROBE_LINK not in links_left
    finally:
        run(["ip", "netns", "del", ns], check=False)
