"""pgha-firstboot joining etcd for real (seed.json `etcd_join`, pgha_agent/etcdjoin.py): agents
run as subprocesses with --root against real etcd processes on 127.0.0.1 (one pair of ports per
node). A cold start of all nodes at once, a reboot with data intact, a re-imaged node, a second
machine with the same seed, and two nodes added at the same moment."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from test_agent_support import AGENT, make_root, make_seed, seed_file

ETCD = shutil.which("etcd")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(ETCD is None, reason="etcd is not installed")]

BASE_PORT = 31600  # this test's ports: 31600 + 10 * node (peer), + 1 (client)
ENV = "/etc/etcd/etcd.conf"
DATA = "/var/lib/etcd/test"


def urls(i: int) -> tuple[str, str]:
    """(peer URL, client URL) of node i."""
    port = BASE_PORT + 10 * i
    return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"


def env_file(root: Path, i: int, members: list[int]) -> str:
    peer, client = urls(i)
    initial = ",".join(f"n{m}={urls(m)[0]}" for m in members)
    return (f"ETCD_NAME=n{i}\nETCD_DATA_DIR={root}{DATA}\nETCD_LISTEN_PEER_URLS={peer}\n"
            f"ETCD_LISTEN_CLIENT_URLS={client}\nETCD_INITIAL_ADVERTISE_PEER_URLS={peer}\n"
            f"ETCD_ADVERTISE_CLIENT_URLS={client}\nETCD_INITIAL_CLUSTER={initial}\n"
            "ETCD_INITIAL_CLUSTER_TOKEN=test-etcd\nETCD_INITIAL_CLUSTER_STATE=new\n")


def node_seed(root: Path, i: int, members: list[int]) -> dict:
    peer = urls(i)[0]
    return make_seed(
        instance_id=f"pgha-n{i}-{len(members)}",
        services=[{"name": "etcd", "user": "root", "argv": [ETCD], "env_file": ENV}],
        health=[{"kind": "tcp", "host": "127.0.0.1", "port": BASE_PORT + 10 * i + 1,
                 "service": "etcd"}],
        directories=[{"path": DATA, "owner": "root", "group": "root", "mode": "0700"}],
        files=[seed_file(ENV, env_file(root, i, members))],
        etcd_join={"service": "etcd", "name": f"n{i}", "peer_url": peer, "data_dir": DATA,
                   "env_file": ENV,
                   "members": [{"name": f"n{m}", "peer_url": urls(m)[0],
                                "client_url": urls(m)[1]} for m in members]},
    )


class Nodes:
    def __init__(self, base: Path):
        self.base = base

    def root(self, i: int) -> Path:
        return self.base / f"n{i}" / "root"

    def start(self, i: int, members: list[int], fresh: bool = True,
              health_timeout: int = 60) -> subprocess.Popen:
        """Boot node i's agent (a fresh disk unless told otherwise); returns the process."""
        root = self.root(i)
        if fresh:
            shutil.rmtree(root.parent, ignore_errors=True)
            make_root(root)
        seed = root.parent / "seed.json"
        seed.write_text(json.dumps(node_seed(root, i, members)))
        out = (root.parent / "agent.log").open("a")
        return subprocess.Popen(
            ["python3", str(AGENT), "--root", str(root), "--seed", str(seed), "--services", "process", "--force",
             "--health-timeout", str(health_timeout)], stdout=out, stderr=subprocess.STDOUT, text=True)

    def boot(self, members: list[int], which: list[int], fresh: bool = True) -> dict[int, str]:
        """Boot the nodes at once; each agent's log of this boot."""
        before = {i: 0 if fresh else len(self.log(i)) for i in which}
        procs = {i: self.start(i, members, fresh) for i in which}
        codes = {i: p.wait(timeout=120) for i, p in procs.items()}
        logs = {i: self.log(i)[before[i]:] for i in which}
        assert all(c == 0 for c in codes.values()), logs
        return logs

    def log(self, i: int) -> str:
        return (self.root(i).parent / "agent.log").read_text()

    def stop(self, i: int) -> None:
        stop(self.root(i))

    def stop_all(self) -> None:
        for folder in self.base.glob("n*"):
            stop(folder / "root")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def stop(root: Path) -> None:
    """Stop the node's services (the process starter's pid files) and wait until they are gone,
    so that the next boot finds the ports free."""
    for pidfile in (root / "run" / "pgha").glob("*.pid"):
        pid = int(pidfile.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)


def members(i: int = 1) -> list[dict]:
    req = urllib.request.Request(urls(i)[1] + "/v3/cluster/member/list", data=b"{}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        return sorted(json.loads(resp.read())["members"], key=lambda m: m.get("name", ""))


def healthy(i: int) -> bool:
    with urllib.request.urlopen(urls(i)[1] + "/health", timeout=5) as resp:
        return json.loads(resp.read())["health"] == "true"


def summary(i: int = 1) -> list[tuple[str, bool, bool]]:
    """(name, started, learner) of every member, as node i sees them."""
    return [(m.get("name", ""), bool(m.get("clientURLs")), bool(m.get("isLearner")))
            for m in members(i)]


@pytest.fixture
def nodes(tmp_path: Path):
    the_nodes = Nodes(tmp_path)
    yield the_nodes
    the_nodes.stop_all()


def test_cold_start_reboot_reimage_and_duplicate(nodes: Nodes):
    three = [1, 2, 3]
    logs = nodes.boot(three, three)  # all at once, no cluster yet
    assert all("bootstrapping" in text for text in logs.values()), logs
    # Each agent went on only once the new cluster's version was decided (not the initial
    # 3.0, with which Patroni would pick an API etcd 3.4 does not serve).
    assert all(re.search(r"etcd: cluster version 3\.([1-9]|\d\d)", t) for t in logs.values()), logs
    assert summary() == [("n1", True, False), ("n2", True, False), ("n3", True, False)]
    ids = {m["name"]: m["ID"] for m in members()}

    nodes.stop(3)  # reboot, data intact: nothing is re-added
    log = nodes.boot(three, [3], fresh=False)[3]
    assert "holds a member: starting it as it is" in log and "added" not in log
    assert {m["name"]: m["ID"] for m in members()} == ids

    nodes.stop(3)  # re-imaged: the stale member goes, the node joins as a new member
    log = nodes.boot(three, [3])[3]
    assert "removing the stale member n3 (id {}".format(ids["n3"]) in log, log
    assert "initial-cluster-state existing" in log and "is a voting member" in log, log
    assert summary() == [("n1", True, False), ("n2", True, False), ("n3", True, False)]
    new_ids = {m["name"]: m["ID"] for m in members()}
    assert new_ids["n3"] != ids["n3"] and new_ids["n1"] == ids["n1"]
    assert all(healthy(i) for i in three)
    env = (nodes.root(3) / ENV.lstrip("/")).read_text()
    assert "ETCD_INITIAL_CLUSTER_STATE=existing" in env and "ETCD_INITIAL_CLUSTER_STATE=new" \
        not in env

    # A second machine with n3's seed while n3 answers: refused, nothing removed.
    dup = Nodes(nodes.base / "dup")
    code = dup.start(3, three).wait(timeout=60)
    assert code == 5, dup.log(3)
    assert "is healthy and answering at http://127.0.0.1:31630" in dup.log(3)
    assert "another machine runs this node's etcd" in dup.log(3)
    assert {m["name"]: m["ID"] for m in members()} == new_ids
    dup.stop_all()


def test_two_nodes_added_at_the_same_moment(nodes: Nodes):
    nodes.boot([1, 2, 3], [1, 2, 3])
    logs = nodes.boot([1, 2, 3, 4, 5], [4, 5])  # etcd takes one learner at a time
    assert all("is a voting member" in text for text in logs.values()), logs
    assert [m[0] for m in summary()] == ["n1", "n2", "n3", "n4", "n5"]
    assert all(started and not learner for _, started, learner in summary(5))
    assert all(healthy(i) for i in (1, 4, 5))

    # n4 and n5 leave the cluster file; n5's VM is off, n4's still runs. n1 applies its new
    # seed: n5's member goes, n4's stays (it answers) until it is shut down too.
    nodes.stop(5)
    log = nodes.boot([1, 2, 3], [1], fresh=False)[1]
    assert "removing member n5" in log, log
    assert "member n4 (http://127.0.0.1:31640) is not in this seed but still answers" in log
    assert [m[0] for m in summary()] == ["n1", "n2", "n3", "n4"]
    nodes.stop(4)
    log = nodes.boot([1, 2, 3], [1], fresh=False)[1]
    assert "removing member n4" in log and "removing member n5" not in log, log
    assert summary() == [("n1", True, False), ("n2", True, False), ("n3", True, False)]


def test_reimaged_node_whose_peers_are_all_down(nodes: Nodes):
    """n3 was replaced once (its member ID is etcd's, not the one a bootstrap computes), then
    its peers all go down and n3 is re-imaged again: no member answers, so it bootstraps as on
    a cold start, and its first boot fails with one line naming the cause and the way out
    (exit 6, no marker). Doing what the line says joins it: peers up, member/ removed, again."""
    three = [1, 2, 3]
    nodes.boot(three, three)
    nodes.stop(3)
    nodes.boot(three, [3])  # replaced: the stale n3 removed, a new member added
    for i in three:
        nodes.stop(i)
    code = nodes.start(3, three, health_timeout=6).wait(timeout=60)
    log = nodes.log(3)
    assert code == 6, log
    line = next(x for x in log.splitlines() if "error:" in x)
    assert "etcd: no quorum 6s after bootstrapping on an empty data dir" in line, log
    assert f"remove {DATA}/member on this node and run pgha-firstboot again" in line
    assert not list((nodes.root(3) / "var/lib/pgha").glob("done-*"))
    nodes.stop(3)
    assert all(nodes.start(i, three, fresh=False).wait(timeout=90) == 0 for i in (1, 2))
    shutil.rmtree(nodes.root(3) / DATA.lstrip("/") / "member")
    log = nodes.boot(three, [3], fresh=False)[3]
    assert "removing the stale member n3" in log and "is a voting member" in log, log
    assert summary() == [("n1", True, False), ("n2", True, False), ("n3", True, False)]
    assert all(healthy(i) for i in three)
