"""`pgha-build plan` and the membership rules of `check` (builder/stages/plan.py): each node's
fate for a changed cluster file against the last build's seeds (written by the real `seeds`
command), and the etcd quorum rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.core.paths import EXAMPLE_CLUSTER
from builder.stages import plan


def _cluster(tmp_path: Path, name: str, edit) -> Path:
    data = yaml.safe_load(Path(EXAMPLE_CLUSTER).read_text())
    edit(data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(tmp_path: Path, cluster: Path, *args: str):
    return CliRunner().invoke(cli, ["-c", str(cluster), "-o", str(tmp_path / "out"), *args])


def _fates(output: str) -> dict[str, str]:
    rows = [line.split(None, 2) for line in output.splitlines() if line[:2] in ("db", "lb")]
    return {row[0]: row[1] + (" " + row[2].split()[0] if row[1] == "new" else "")
            for row in rows}


def _add_db4(data: dict) -> None:
    data["nodes"].append({"name": "db4", "roles": ["db"], "address": "10.77.0.14"})


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """The example cluster's seeds written by `seeds`: the last build."""
    same = _cluster(tmp_path, "same", lambda d: None)
    res = _run(tmp_path, same, "seeds")
    assert res.exit_code == 0, res.output
    return same


def test_unchanged_then_add_db4(tmp_path: Path, built: Path) -> None:
    res = _run(tmp_path, built, "plan")
    assert res.exit_code == 0, res.output
    assert set(_fates(res.output).values()) == {"unchanged"}

    res = _run(tmp_path, _cluster(tmp_path, "add", _add_db4), "plan")
    assert res.exit_code == 0, res.output
    fates = _fates(res.output)
    assert fates["db4"] == "new seed" and fates["lb1"] == "reload"
    assert all(fates[n] == "reload" for n in ("db1", "db2", "db3")), res.output
    lines = {line.split()[0]: line for line in res.output.splitlines()}
    assert "patroni.yml changed; reloads patroni" in lines["db1"]
    assert "/etc/haproxy/haproxy.cfg" in lines["lb1"] and "reloads haproxy" in lines["lb1"]
    check = _run(tmp_path, _cluster(tmp_path, "add", _add_db4), "check")
    assert check.exit_code == 0 and "an even number of etcd members (4" in check.output


def test_remove_readdress_and_quorum(tmp_path: Path, built: Path) -> None:
    def drop_db3(data: dict) -> None:
        data["nodes"] = [n for n in data["nodes"] if n["name"] != "db3"]
        data["nodes"].append({"name": "db5", "roles": ["db"], "address": "10.77.0.15"})

    res = _run(tmp_path, _cluster(tmp_path, "swap", drop_db3), "plan")
    assert res.exit_code == 0, res.output
    assert _fates(res.output)["db3"] == "remove" and "its etcd member goes" in res.output

    def move_db2(data: dict) -> None:
        next(n for n in data["nodes"] if n["name"] == "db2")["address"] = "10.77.0.22"

    res = _run(tmp_path, _cluster(tmp_path, "move", move_db2), "plan")
    assert _fates(res.output)["db2"] == "re-image", res.output

    def drop_two(data: dict) -> None:
        data["nodes"] = [n for n in data["nodes"] if n["name"] not in ("db2", "db3")]
        data["nodes"] += [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"}
                          for i in (5, 6)]

    bad = _cluster(tmp_path, "bad", drop_two)
    for command in ("check", "plan"):
        res = _run(tmp_path, bad, command)
        assert res.exit_code == 2, res.output
        assert "removing or moving db2, db3 leaves 1 of the 3 etcd members" in res.output
        assert "Traceback" not in res.output


def test_quorum_rule() -> None:
    three = {"db1": "a", "db2": "b", "db3": "c"}
    assert plan.quorum_problems({}, three) == []
    assert plan.quorum_problems(three, {"db1": "a", "db2": "b"}) == []
    assert plan.quorum_problems(three, {**three, "db3": "z"}) == []  # one moved: 2 of 3 stay
    assert plan.quorum_problems(three, {"db1": "a", "db2": "x", "db4": "d"})  # 1 of 3 stays
    five = {f"db{i}": str(i) for i in range(1, 6)}
    assert plan.quorum_problems(five, {"db1": "1", "db2": "2", "db3": "3"}) == []
    assert plan.quorum_problems(five, {"db1": "1", "db2": "2"})


def test_etcd_start_only_settings_are_no_reason_to_restart() -> None:
    old = "ETCD_NAME=db1\nETCD_INITIAL_CLUSTER=db1=a,db2=b\n"
    assert not plan._matters(old, "ETCD_NAME=db1\nETCD_INITIAL_CLUSTER=db1=a,db2=b,db4=d\n")
    assert plan._matters(old, "ETCD_NAME=db1\nETCD_HEARTBEAT_INTERVAL=200\n"
                              "ETCD_INITIAL_CLUSTER=db1=a,db2=b\n")
    seed = {"node": {"address": "1"}, "roles": ["db"], "instance_id": "a",
            "services": [{"name": "etcd", "argv": ["etcd"], "env_file": "/e"}],
            "files": [{"path": "/e", "content": old}]}
    changed = {**seed, "instance_id": "b",
               "files": [{"path": "/e", "content": old + "ETCD_HEARTBEAT_INTERVAL=200\n"}]}
    fate, detail = plan.changed_fate(seed, changed)
    assert fate == "restart" and "etcd has no reload" in detail


def _drop(name: str):
    def edit(data: dict) -> None:
        data["nodes"] = [n for n in data["nodes"] if n["name"] != name]
    return edit


@pytest.fixture
def built4(tmp_path: Path) -> Path:
    """The last build has four db nodes (db1-db4): one can go and three etcd members stay."""
    four = _cluster(tmp_path, "four", _add_db4)
    res = _run(tmp_path, four, "seeds")
    assert res.exit_code == 0, res.output
    return four


def _drop_db3_from4(data: dict) -> None:
    _add_db4(data)
    _drop("db3")(data)


def test_check_refuses_removing_the_primary(tmp_path: Path, built4: Path) -> None:
    """db3 deleted from the file: refused when it is the current primary (--leader), accepted
    when another node leads, a warning naming --leader when nobody said who leads."""
    gone = _cluster(tmp_path, "gone", _drop_db3_from4)
    for command in ("check", "plan"):
        res = _run(tmp_path, gone, command, "--leader", "db3")
        assert res.exit_code == 2, res.output
        assert "db3 is the current primary (--leader) and this change removes" in res.output
        assert "switch over" in res.output and "Traceback" not in res.output
        res = _run(tmp_path, gone, command, "--leader", "db1")
        assert res.exit_code == 0, res.output
        assert "current primary" not in res.output
    res = _run(tmp_path, gone, "check")
    assert res.exit_code == 0, res.output
    assert "warning: nodes: this change removes or re-images the database node(s) db3" in \
        res.output and "--leader NODE" in res.output


def test_check_refuses_re_imaging_the_primary(tmp_path: Path, built: Path) -> None:
    def move_db2(data: dict) -> None:
        next(n for n in data["nodes"] if n["name"] == "db2")["address"] = "10.77.0.22"

    moved = _cluster(tmp_path, "moved", move_db2)
    res = _run(tmp_path, moved, "check", "--leader", "db2")
    assert res.exit_code == 2 and "db2 is the current primary" in res.output, res.output
    assert _run(tmp_path, moved, "check", "--leader", "db1").exit_code == 0
    # a load balancer leaving concerns no primary: nothing asked, no warning
    res = _run(tmp_path, _cluster(tmp_path, "lbonly", _drop("lb1")), "check")
    assert res.exit_code == 0 and "current primary" not in res.output, res.output


def test_leader_unknown_name_and_unchanged_file(tmp_path: Path, built4: Path) -> None:
    res = _run(tmp_path, built4, "check")
    assert res.exit_code == 0 and "current primary" not in res.output
    gone = _cluster(tmp_path, "gone9", _drop_db3_from4)
    for cluster, bad in ((gone, "db9"), (gone, "lb1"), (built4, "db7")):
        res = _run(tmp_path, cluster, "check", "--leader", bad)
        assert res.exit_code != 0 and f"--leader {bad}: not a database node" in res.output
        assert "one of: db1, db2, db3, db4" in res.output and "Traceback" not in res.output


def test_check_refuses_quorum_loss_and_warns_on_even_count(tmp_path: Path, built: Path) -> None:
    """The other two membership rules, each on its own: 2 of 3 etcd members gone at once is
    refused (exit 2, whoever leads); a 4th member is accepted with the even-count warning."""
    def swap_two(data: dict) -> None:  # db2 and db3 out, db5 and db6 in: still 3 members
        data["nodes"] = [n for n in data["nodes"] if n["name"] not in ("db2", "db3")]
        data["nodes"] += [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"}
                          for i in (5, 6)]

    res = _run(tmp_path, _cluster(tmp_path, "twogone", swap_two), "check", "--leader", "db1")
    assert res.exit_code == 2, res.output
    assert "would lose etcd quorum" in res.output and "leaves 1 of the 3" in res.output
    res = _run(tmp_path, _cluster(tmp_path, "four", _add_db4), "check")
    assert res.exit_code == 0, res.output
    assert "warning: nodes: an even number of etcd members (4" in res.output
