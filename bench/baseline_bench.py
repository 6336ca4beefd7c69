#!/usr/bin/env python3
"""`lab up` against a cluster built by hand (bench/handbuilt.py), interleaved, same timing:
boot (to writes, reads, failover-ready), a planned switchover and a hard kill of the primary's
node, each with a writer through the read-write port (RTO: fault to the first acknowledged
write after it; lost: acknowledged rows missing afterwards). Writes bench/results/baseline.md
(and baseline.json) with every round and the ratios lab / hand-built of the medians.

    flock /work/coord/lab.lock python3 bench/baseline_bench.py [--rounds 3] [--profile default]

Needs root. The lab runs as cluster `perfb` on 10.84.0.0/24, host ports 34000-34002; the
hand-built cluster as `perfh` on 10.84.128.0/24, host ports 34100-34102. Both are taken down
at the end and on failure. Figures, no assertions: the machine is shared, so rounds are
interleaved (lab, hand-built, lab, ...) to spread the noise over both.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import handbuilt
from labkit.workload import Writer

from builder.lab import faults, readiness
from builder.lab import lab as labmod
from builder.lab.health import Sql, wait_until
from builder.model.cluster import Cluster

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = Path("/var/tmp/pgha-baseline-bench")
LAB_PREFIX, HAND_PREFIX = "10.84.0", "10.84.128"
WARMUP = 20
TIMEOUT = 240.0


def lab_cluster(profile: str) -> labmod.Lab:
    p = LAB_PREFIX
    data = {"name": "perfb", "profile": profile,
            "network": {"cidr": f"{p}.0/24", "gateway": f"{p}.1", "dns": [f"{p}.1"]},
            "nodes": [*({"name": f"db{i}", "roles": ["db"], "address": f"{p}.{10 + i}"}
                        for i in (1, 2, 3)),
                      {"name": "lb1", "roles": ["haproxy"], "address": f"{p}.10"}],
            "load_balancer": {"primary_port": 34000, "replica_port": 34001,
                              "stats_port": 34002}}
    return labmod.Lab.of(labmod.lab_cluster(Cluster.model_validate(data)), OUTPUT)


def timing_of(lab: labmod.Lab) -> handbuilt.Timing:
    p, c = lab.cluster.patroni, lab.cluster.load_balancer.check
    return handbuilt.Timing(p.ttl, p.loop_wait, p.retry_timeout, p.synchronous_mode,
                            c.inter_ms, c.fastinter_ms, c.downinter_ms, c.fall, c.rise)


def fault_with_writer(sql: Sql, leader: Callable[[], str | None],
                      fault: Callable[[str], object]) -> dict[str, Any]:
    """Writer on, fault at t0, wait for another leader and for writes; RTO and RPO."""
    old = leader()
    assert old, "no leader before the fault"
    writer = Writer(sql).start()
    try:
        writer.wait_acked(WARMUP)
        t0 = time.monotonic()
        fault(old)
        wait_until("a new leader", lambda: leader() not in (None, old), TIMEOUT, 0.2)
        writer.wait_acked(WARMUP, timeout=TIMEOUT)
    finally:
        writer.stop()
    return {"rto": round(writer.rto(t0), 2), "lost": len(writer.lost()),
            "acked": len(writer.acked)}


def lab_round(lab: labmod.Lab) -> dict[str, Any]:
    labmod.down(lab)
    try:
        t = labmod.up(lab, timeout=TIMEOUT)
        out: dict[str, Any] = {"boot": {k: round(t[k], 2) for k in ("rw_s", "ro_s", "ready_s")}}
        sql = lab.sql()

        def leader() -> str | None:
            return readiness.leader(lab)

        out["switchover"] = fault_with_writer(sql, leader, lambda _: faults.switchover(lab))
        wait_until("failover-ready again",
                   lambda: readiness.failover_readiness(lab).ready, TIMEOUT, 0.5)
        out["kill"] = fault_with_writer(sql, leader, lambda n: faults.kill(lab, n))
        return out
    finally:
        labmod.down(lab)


def hand_round(hand: handbuilt.HandBuilt) -> dict[str, Any]:
    try:
        t0 = time.monotonic()
        hand.up()
        sql = hand.sql()
        seen = handbuilt.wait_first({"rw_s": sql.can_write, "ro_s": sql.can_read,
                                     "ready_s": hand.ready}, TIMEOUT, t0)
        out: dict[str, Any] = {"boot": {k: round(v, 2) for k, v in seen.items()}}
        out["switchover"] = fault_with_writer(sql, hand.leader, lambda _: hand.switchover())
        wait_until("failover-ready again", hand.ready, TIMEOUT, 0.5)
        out["kill"] = fault_with_writer(sql, hand.leader, hand.kill)
        return out
    finally:
        hand.down()


ROWS = [("boot: writes", "boot", "rw_s"), ("boot: reads", "boot", "ro_s"),
        ("boot: failover-ready", "boot", "ready_s"),
        ("switchover: RTO", "switchover", "rto"), ("hard kill: RTO", "kill", "rto")]


def median(runs: list[dict[str, Any]], group: str, key: str) -> float:
    return statistics.median(r[group][key] for r in runs)


def report(res: dict[str, Any]) -> str:
    lab, hand = res["lab"], res["hand"]
    out = [
        "# `lab up` against a hand-built cluster, interleaved in one run",
        "",
        (f"{res['when']} on {res['host']} (2 cores, shared with other engineers: load average "
        f"{res['load']}; expect seconds of noise), {len(lab)} rounds each, alternating lab and "
        f"hand-built. Profile `{res['profile']}`: {res['timing']}. Command: "
        f"`{res['command']}`."),
        "",
        ("Hand-built (bench/handbuilt.py): etcd 3.4, PostgreSQL 15 and HAProxy 2.6 from Debian, "
        "Patroni 4.1.5 from /opt/pgha-lab/venv, configuration written as Patroni's and "
        "HAProxy's documentation show it (no TLS), same Patroni timing, replication mode and "
        "HAProxy check timing. Lab: `lab up` of the same shape (3 db nodes, 1 HAProxy), TLS on "
        "as shipped. Boot counts from the start of `lab up` after its (cached) build, and "
        "from the network set-up of the hand-built one; RTO from the fault to the first "
        "acknowledged write after it; a round runs boot, switchover, then SIGKILL of every "
        "process of the primary's node."),
        "",
        "| measure (median, s) | lab | hand-built | lab / hand-built |",
        "|---|---|---|---|",
    ]
    for label, group, key in ROWS:
        a, b = median(lab, group, key), median(hand, group, key)
        out.append(f"| {label} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    a = median(lab, "boot", "ready_s")
    b = median(hand, "boot", "rw_s")
    out.append(f"| lab failover-ready / hand-built writes | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    lost = [sum(r[g]["lost"] for r in runs for g in ("switchover", "kill"))
            for runs in (lab, hand)]
    acked = [sum(r[g]["acked"] for r in runs for g in ("switchover", "kill"))
             for runs in (lab, hand)]
    out.append(f"| acknowledged rows lost | {lost[0]} of {acked[0]} | {lost[1]} of "
               f"{acked[1]} | |")
    out += ["", "Every round (boot: writes / reads / failover-ready; RTOs):", "",
            "| round | lab | hand-built |", "|---|---|---|"]
    for i, (a_run, b_run) in enumerate(zip(lab, hand, strict=True), 1):
        out.append(f"| {i} | {_one(a_run)} | {_one(b_run)} |")
    return "\n".join(out) + "\n"


def _one(r: dict[str, Any]) -> str:
    b = r["boot"]
    return (f"boot {b['rw_s']:.1f} / {b['ro_s']:.1f} / {b['ready_s']:.1f}; switchover "
            f"{r['switchover']['rto']:.1f}; kill {r['kill']['rto']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", default="default", choices=["default", "fast"])
    args = ap.parse_args()
    if not handbuilt.root_ok():
        sys.exit("baseline_bench: needs root (network namespaces)")
    lab = lab_cluster(args.profile)
    timing = timing_of(lab)
    hand = handbuilt.HandBuilt("perfh", HAND_PREFIX, (34100, 34101, 34102), timing)
    labmod.down(lab)
    labmod.up(lab, timeout=TIMEOUT)  # warm: the RPMs are built once, outside the rounds
    labmod.down(lab)
    res: dict[str, Any] = {"lab": [], "hand": [], "profile": args.profile,
                           "timing": (f"ttl {timing.ttl}/{timing.loop_wait}/"
                                      f"{timing.retry_timeout}, synchronous_mode "
                                      f"{timing.synchronous_mode}, checks {timing.inter_ms}ms "
                                      f"fall {timing.fall} rise {timing.rise} fastinter "
                                      f"{timing.fastinter_ms}ms downinter "
                                      f"{timing.downinter_ms}ms"),
                           "command": "python3 bench/baseline_bench.py " + " ".join(sys.argv[1:]),
                           "host": platform.node(),
                           "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for i in range(args.rounds):
        for side, run in (("lab", lambda: lab_round(lab)), ("hand", lambda: hand_round(hand))):
            r = run()
            res[side].append(r)
            print(f"round {i + 1} {side}: {json.dumps(r)}", flush=True)
        write(res, args.profile)  # after every round: a long run interrupted keeps its figures
    print(report(res))


def write(res: dict[str, Any], profile: str) -> None:
    with open("/proc/loadavg") as fh:
        res["load"] = " ".join(fh.read().split()[:3])
    RESULTS.mkdir(exist_ok=True)
    name = "baseline" if profile == "default" else f"baseline-{profile}"
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text(report(res))

if __name__ == "__main__":
    main()
