#!/usr/bin/env python3
"""Lab benchmark: boot-to-healthy, RTO (kill, partition, switchover), RPO (async vs sync),
rejoin time and memory, for the `default` and the `fast` timing profiles. Prints a table and
writes bench/results/lab.md. Figures, not timed assertions. Needs root; about 10 minutes.

    python3 bench/lab_bench.py [--profile default --profile fast] [--no-write]

The lab runs on its own name, network (10.78.0.0/24) and host ports (25000/26000/27000), so a
`pgha-build lab` can run beside it; it is taken down at the end (and on failure).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

from builder.lab import lab as labmod
from builder.lab import scenarios
from builder.model.cluster import Cluster

ROOT = Path(__file__).resolve().parent
OUTPUT = Path("/var/tmp/pgha-lab-bench")
BENCH_CLUSTER = {
    "name": "labb",
    "network": {"cidr": "10.78.0.0/24", "gateway": "10.78.0.1", "dns": ["10.78.0.1"]},
    "nodes": [
        {"name": "db1", "roles": ["db"], "address": "10.78.0.11"},
        {"name": "db2", "roles": ["db"], "address": "10.78.0.12"},
        {"name": "db3", "roles": ["db"], "address": "10.78.0.13"},
        {"name": "lb1", "roles": ["haproxy"], "address": "10.78.0.10"},
    ],
    "load_balancer": {"primary_port": 25000, "replica_port": 26000, "stats_port": 27000},
}
ROWS = [
    ("timings", "timings"), ("boot-to-healthy (s)", "boot"), ("  writes on :5000 after (s)", "rw"),
    ("RTO kill primary (s): writes / routing", "kill"),
    ("RTO partition primary (s): writes / routing", "partition"),
    ("RTO switchover (s): writes / routing", "switchover"), ("RPO lagging replica, async (rows lost)", "rpo_async"),
    ("RPO lagging replica, sync (rows lost)", "rpo_sync"), ("rejoin after kill (s)", "rejoin"),
    ("memory of the running lab (MB, PSS)", "memory"),
]


def bench(profile: str) -> dict[str, str]:
    cluster = labmod.lab_cluster(Cluster.model_validate({**BENCH_CLUSTER, "profile": profile}))
    lab = labmod.Lab.of(cluster, OUTPUT)
    labmod.down(lab)
    p, c = cluster.patroni, cluster.load_balancer.check
    res = {"timings": f"ttl {p.ttl}/{p.loop_wait}/{p.retry_timeout}, "
                      f"check {c.inter_ms}ms/{c.fall}/{c.rise}"}
    try:
        labmod.up(lab, timeout=120)  # warm: RPMs built, so the next boot measures boot only
        labmod.down(lab)
        t = labmod.up(lab, timeout=120)
        res["boot"], res["rw"] = f"{t['total_s']:.1f}", f"{t['rw_s'] + t['build_s']:.1f}"
        scenarios.healthy(lab)
        res["memory"] = f"{scenarios.memory_mb(lab):.0f}"
        _faults(lab, res)
    finally:
        labmod.down(lab)
    return res


def _faults(lab: labmod.Lab, res: dict[str, str]) -> None:
    kill = scenarios.kill_primary(lab)
    res["kill"] = _rto(kill)
    res["rejoin"] = f"{kill.rejoin_s:.1f} ({kill.notes[0]})"
    part = scenarios.partition_primary(lab)
    res["partition"] = _rto(part)
    sw = scenarios.switchover(lab)
    res["switchover"] = _rto(sw)
    for sync in (False, True):
        out = scenarios.lagging_primary_dies(lab, sync)
        res["rpo_sync" if sync else "rpo_async"] = f"{len(out.lost)} of {out.acked}"
    print(f"  {lab.cluster.profile}: done", file=sys.stderr)


def _rto(out: scenarios.Outcome) -> str:
    """Writer's RTO, then when HAProxy routed the primary port to the new leader."""
    routed = "?" if out.routed_s is None else f"{out.routed_s:.1f}"
    return f"{out.rto:.1f} / {routed} (lost {len(out.lost)})"


def table(results: dict[str, dict[str, str]]) -> str:
    profiles = list(results)
    width = max(len(label) for label, _ in ROWS)
    cols = [max(24, *(len(results[p].get(k, "")) for _, k in ROWS)) for p in profiles]
    head = f"| {'':<{width}} | " + " | ".join(f"{p:<{w}}" for p, w in zip(profiles, cols,
                                                                           strict=True)) + " |"
    sep = f"|{'-' * (width + 2)}|" + "|".join("-" * (w + 2) for w in cols) + "|"
    lines = [head, sep]
    for label, key in ROWS:
        cells = " | ".join(f"{results[p].get(key, '-'):<{w}}" for p, w in zip(profiles, cols,
                                                                               strict=True))
        lines.append(f"| {label:<{width}} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="append", choices=["default", "fast"])
    parser.add_argument("--no-write", action="store_true", help="do not update bench/results")
    args = parser.parse_args()
    results = {}
    for profile in args.profile or ["default", "fast"]:
        print(f"benchmarking profile {profile} ...", file=sys.stderr)
        results[profile] = bench(profile)
    text = table(results)
    print(text)
    if not args.no_write:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / "lab.md").write_text(
            f"# Lab benchmark (bench/lab_bench.py)\n\n{when}, {platform.node() or 'this machine'}"
            f", {_cores()} cores; Debian 12: PostgreSQL 15, etcd 3.4, HAProxy 2.6, Patroni 4.1."
            "\nRTO: fault to the first acknowledged write through :5000 after the outage (the "
            "writer retries every ~1.1 s: HAProxy waits 1 s before re-trying a refused server), "
            "then fault to HAProxy routing :5000 to the new leader (stats polled every 0.1 s); RPO: "
            "acknowledged rows missing afterwards (writer inserting numbered rows every 10 ms)."
            f"\n\n{text}\n")
    return 0


def _cores() -> int:
    import os

    return os.cpu_count() or 0


if __name__ == "__main__":
    sys.exit(main())
