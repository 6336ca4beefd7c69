#!/usr/bin/env python3
"""Rejoin time of a replaced replica (issue 19): `lab replace` (the node re-imaged: its folder
wiped, booted from the same RPMs and seed; the agent rejoins etcd and Patroni clones it) with
an empty database and after `pgbench -i -s SCALE`, and in the same run the hand-built way:
the replica's processes killed, `etcdctl member remove` of its old member and `etcdctl member
add` of the new one (from another db node's namespace, with the operator's certificate), its
etcd and PostgreSQL data dirs emptied, ETCD_INITIAL_CLUSTER / _STATE=existing edited in its
etcd env file, etcd and Patroni started by hand (Patroni clones the empty data dir, as
`patronictl reinit` does); and `patronictl reinit --force --wait` of a replica alone (the
clone step). Then the load balancer holding the virtual IP replaced under a writer. Prints a
table and writes bench/results/lifecycle.md. Figures, not timed assertions. Needs root.

    python3 bench/lifecycle_bench.py [--scales 0,70] [--no-write]

Rejoin: from the start of the new node's boot until it streams and the cluster can fail over
(`lab replace` measures it; the wipe before it is not counted). The lab: its own name (lifeb),
network 10.81.2.0/24 and host ports 31021-31023, fast profile, quorum mode, TLS, two load
balancers with keepalived and the virtual IP 10.81.2.100.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import changekit
import labclusters

from builder.lab import faults, lifecycle, nodes, vip
from builder.lab import lab as labmod
from builder.lab.health import http, wait_until
from builder.lab.readiness import leader, wait_failover_ready

ROOT = Path(__file__).resolve().parent
OUTPUT = Path("/var/tmp/pgha-lifecycle-bench")
DATA = labclusters.cluster_data("lifeb", "10.81.2", (31021, 31022, 31023), load_balancers=2,
                                virtual_ip="10.81.2.100")
PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _replica(lab: labmod.Lab) -> str:
    primary = leader(lab)
    return next(n.name for n in lab.db_nodes if n.name != primary)


def pgbench_init(lab: labmod.Lab, scale: int) -> float:
    sql = lab.sql()
    dsn = " ".join(f"{k}={v}" for k, v in sql.dsn(lab.ports()["rw"]).items())
    t0 = time.monotonic()
    subprocess.run(["pgbench", "-i", "-q", "-s", str(scale), dsn], check=True,
                   env={**os.environ, "PGPASSWORD": sql.password}, capture_output=True)
    return time.monotonic() - t0


def db_size_mb(lab: labmod.Lab) -> float:
    sql = lab.sql()
    rows = sql.query(lab.ports()["rw"], "SELECT pg_database_size('postgres')")
    return float(rows[0][0]) / 1e6


def reinit(lab: labmod.Lab, name: str, timeout: float = 900) -> float:
    """The hand-built way's clone step: patronictl reinit of a replica, until failover-ready."""
    t0 = time.monotonic()
    faults.patronictl(lab, name, "reinit", "--force", "--wait", lab.cluster.name, name)
    wait_failover_ready(lab, timeout)
    return time.monotonic() - t0


def etcdctl(lab: labmod.Lab, via: str, *args: str) -> str:
    """etcdctl (v3 API) in db node `via`'s namespace with the operator's client certificate;
    the caller names the --endpoints."""
    pki = lab.ctx.out.pki
    tls = [f"--cacert={pki / 'ca.crt'}", f"--cert={pki / 'operator.crt'}",
           f"--key={pki / 'operator.key'}"] if lab.cluster.tls.enabled else []
    argv = ["ip", "netns", "exec", lab.net.node(via).netns, "etcdctl", *tls, *args]
    return subprocess.run(argv, check=True, capture_output=True, text=True,
                          env={"PATH": PATH, "ETCDCTL_API": "3"}).stdout


def _answers(lab: labmod.Lab, via: str, url: str) -> bool:
    try:
        etcdctl(lab, via, f"--endpoints={url}", "endpoint", "health")
    except subprocess.CalledProcessError:
        return False
    return True


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if "=" in line and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip().strip('"') for k, v in pairs}


def _start_by_hand(lab: labmod.Lab, name: str, svc: dict[str, Any]) -> None:
    """A service started as an operator would (systemctl start): the seed's argv, user and
    env file, in the node's namespace; its pid file where `lab down` finds it."""
    user = pwd.getpwnam(svc["user"])
    env = {"PATH": PATH, "LANG": "C.UTF-8", "HOME": user.pw_dir}
    if svc.get("env_file"):
        env.update(_env_file(Path(svc["env_file"])))
    argv = ["ip", "netns", "exec", lab.net.node(name).netns, "setpriv",
            f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--",
            *svc["argv"]]
    root = lab.node_dirs(name).root
    with (root / "var/log/pgha" / f"{svc['name']}.log").open("ab") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd="/")
    (root / "run/pgha" / f"{svc['name']}.pid").write_text(f"{proc.pid}\n")


def _streams(lab: labmod.Lab, name: str) -> bool:
    code, body = http("GET", lab.rest_url(lab.net.node(name), "/patroni"), timeout=2,
                      context=lab.rest_context())
    return code == 200 and isinstance(body, dict) and body.get("state") == "running" and \
        body.get("replication_state") == "streaming"


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def hand_replace(lab: labmod.Lab, name: str, timeout: float = 900) -> dict[str, float]:
    """The hand-built replacement of replica `name` (see the module docstring): seconds for
    the etcd steps and in all, until the cluster is failover-ready with the node streaming."""
    seed = json.loads((lab.node_dirs(name).seed / "pgha" / "seed.json").read_text())
    svcs = {s["name"]: s for s in seed["services"]}
    join = seed["etcd_join"]
    via = leader(lab) or next(n.name for n in lab.db_nodes if n.name != name)
    others = ",".join(m["client_url"] for m in join["members"] if m["name"] != name)
    t0 = time.monotonic()
    nodes.kill(lab.runner, lab.net.node(name))  # the VM is lost
    listed = json.loads(etcdctl(lab, via, f"--endpoints={others}", "member", "list",
                                "-w", "json"))["members"]
    old = next(m for m in listed if m.get("name") == name)
    etcdctl(lab, via, f"--endpoints={others}", "member", "remove", format(old["ID"], "x"))
    added = etcdctl(lab, via, f"--endpoints={others}", "member", "add", name,
                    f"--peer-urls={join['peer_url']}")
    initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"', added)
    assert initial is not None, added
    # the new VM: its files as before, its etcd and PostgreSQL data dirs empty
    env_path = Path(svcs["etcd"]["env_file"])
    env = env_path.read_text()
    _empty(Path(_env_file(env_path)["ETCD_DATA_DIR"]))
    conf = yaml.safe_load(Path(svcs["patroni"]["argv"][-1]).read_text())
    _empty(Path(conf["postgresql"]["data_dir"]))
    env = re.sub(r"(?m)^ETCD_INITIAL_CLUSTER=.*$", f"ETCD_INITIAL_CLUSTER={initial[1]}", env)
    env = re.sub(r"(?m)^ETCD_INITIAL_CLUSTER_STATE=.*$", "ETCD_INITIAL_CLUSTER_STATE=existing",
                 env)
    env_path.write_text(env)
    _start_by_hand(lab, name, svcs["etcd"])
    own = next(m["client_url"] for m in join["members"] if m["name"] == name)
    wait_until(f"{name}'s etcd healthy", lambda: _answers(lab, via, own), timeout, 0.2)
    t_etcd = time.monotonic()
    _start_by_hand(lab, name, svcs["patroni"])
    # Its own Patroni (started above, so a new one) streaming: the old member key in the DCS
    # may still say "streaming" until its TTL ends, so the cluster view alone would be early.
    wait_until(f"{name}'s new Patroni streaming", lambda: _streams(lab, name), timeout, 0.5)
    wait_failover_ready(lab, timeout)
    return {"etcd_s": round(t_etcd - t0, 1), "hand_s": round(time.monotonic() - t0, 1)}


def replace_vip_holder(lab: labmod.Lab) -> dict[str, Any]:
    """`lab replace` of the load balancer holding the VIP, under a writer through the VIP."""
    holder = vip.wait_holder(lab)
    marks: dict[str, float] = {}

    def replace() -> dict[str, Any]:
        marks["t0"] = time.monotonic()
        return lifecycle.replace(lab, holder, 300)

    with vip.VipWatch(lab) as watch:
        figures = changekit.measure(lab, replace)
    done = figures.pop("result")
    return {"old": holder, "new": done["vip_holder"],
            "vip_moved_s": round(watch.moved(marks["t0"], holder) or -1, 2),
            "both_s": round(done["wipe_s"] + done["ready_s"], 1), "boot_s": done["ready_s"],
            "outage_s": figures["longest_write_outage_s"], "acked": figures["acked"],
            "lost": len(figures["lost"])}


def run(scales: list[int]) -> tuple[list[dict[str, object]], dict[str, Any]]:
    lab = labclusters.make_lab(DATA, OUTPUT)
    rows = []
    labmod.down(lab)
    try:
        labmod.up(lab, timeout=180)
        for scale in scales:
            load = pgbench_init(lab, scale) if scale else 0.0
            size = db_size_mb(lab)
            name = _replica(lab)
            done = lifecycle.replace(lab, name, 900)
            by_hand = hand_replace(lab, _replica(lab))
            hand = reinit(lab, _replica(lab))
            rows.append({"scale": scale, "size_mb": round(size), "load_s": round(load, 1),
                         "replace_s": done["ready_s"], "wipe_s": done["wipe_s"],
                         **by_hand, "reinit_s": round(hand, 1),
                         "etcd": lifecycle.etcd_line(lifecycle.etcd_members(lab))})
            print(rows[-1], flush=True)
        lb = replace_vip_holder(lab)
        print(lb, flush=True)
    finally:
        labmod.down(lab)
    return rows, lb


def systemd_add_remove() -> list[str]:
    """db4 added (`lab add`) and removed (`lab remove`) on the systemd engine under a writer:
    each machine's changed seed applied inside it; lab `lifes`, 10.81.4.0/24."""
    data = labclusters.cluster_data("lifes", "10.81.4", (31041, 31042, 31043))
    db4 = {"name": "db4", "roles": ["db"], "address": "10.81.4.14"}
    lab = labclusters.make_lab(data, OUTPUT)
    bigger = labclusters.make_lab({**data, "nodes": [*data["nodes"], db4]}, OUTPUT)
    labmod.down(lab)
    lines = []
    try:
        labmod.up(lab, timeout=300, engine="systemd")
        for what, the_lab, change in (
                ("add db4", bigger, lambda: lifecycle.add(bigger, "db4", 300)),
                ("remove db4", lab, lambda: lifecycle.remove(lab, "db4", 300))):
            figures = changekit.measure(the_lab, change)
            done = figures.pop("result")
            lines.append(f"{what}: {done.get('ready_s', done['total_s'])} s, etcd "
                         f"{lifecycle.etcd_line(done['etcd'])}, longest write outage "
                         f"{figures['longest_write_outage_s']} s, {len(figures['lost'])} of "
                         f"{figures['acked']} acknowledged rows lost, "
                         f"{figures['primary_changes']} primary changes")
            print(lines[-1], flush=True)
    finally:
        labmod.down(bigger)
        labmod.down(lab)
    return lines


def table(rows: list[dict[str, object]], lb: dict[str, Any]) -> str:
    lines = [("| pgbench scale | database | `lab replace`: rejoin | by hand: etcdctl member "
              "remove/add, etcd + Patroni started (etcd part) | `patronictl reinit` alone | "
              "etcd after |"), "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scale'] or 'empty'} | {r['size_mb']} MB | {r['replace_s']} s "
                     f"| {r['hand_s']} s ({r['etcd_s']} s) | {r['reinit_s']} s | {r['etcd']} |")
    lines += ["", ("| replaced | VIP moved to | VIP moved after | both load balancers serving "
                   "after (boot part) | longest write outage | rows acknowledged / lost |"),
              "|---|---|---|---|---|---|",
              (f"| {lb['old']} (held the VIP) | {lb['new']} | {lb['vip_moved_s']} s | "
               f"{lb['both_s']} s ({lb['boot_s']} s) | {lb['outage_s']} s | {lb['acked']} / "
               f"{lb['lost']} |")]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0,70", help="pgbench scales, 0 = empty database")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--systemd", action="store_true",
                        help="only `lab add` and `lab remove` of db4 on the systemd engine "
                             "(prints; writes nothing)")
    args = parser.parse_args()
    if args.systemd:
        systemd_add_remove()
        return 0
    rows, lb = run([int(s) for s in args.scales.split(",")])
    text = table(rows, lb)
    print(text)
    if not args.no_write:
        load = os.getloadavg()
        head = (f"# Rejoin of a replaced replica (bench/lifecycle_bench.py)\n\n"
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
                f"{os.cpu_count()} cores shared with other engineers' work (load "
                f"{load[0]:.1f} at the end). `python3 bench/lifecycle_bench.py --scales "
                f"{args.scales}`.\n\n")
        (ROOT / "results" / "lifecycle.md").write_text(head + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
