#!/usr/bin/env python3
"""TLS benchmark: hard-kill failover RTO with TLS on every link against the same lab without
TLS, measured in the same run, plus boot time and certificate rotation. Prints a table and
writes bench/results/tls.md. Figures, not timed assertions. Needs root; about 6-8 minutes.

    python3 bench/tls_bench.py [--rounds 3] [--profile fast] [--no-write]

Both labs run at the same time (own names, networks 10.81/10.82.0.0/24 and host ports), so the
machine's load is the same for both; each round kills the primary of each lab in turn (the
order alternates) with a writer inserting through :5000, and waits for the killed node to
rejoin. RTO: kill to the first acknowledged write after the outage (scenarios.kill_primary).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from builder.lab import lab as labmod
from builder.lab import tlsops
from builder.model.cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from labkit import scenarios

ROOT = Path(__file__).resolve().parent
OUTPUT = Path("/var/tmp/pgha-tls-bench")


def _cluster(name: str, net: int, port: int, profile: str, tls: bool) -> Cluster:
    data = {
        "name": name, "profile": profile,
        "network": {"cidr": f"10.{net}.0.0/24", "gateway": f"10.{net}.0.1",
                    "dns": [f"10.{net}.0.1"]},
        "nodes": [*({"name": f"db{i}", "roles": ["db"], "address": f"10.{net}.0.1{i}"}
                    for i in (1, 2, 3)),
                  {"name": "lb1", "roles": ["haproxy"], "address": f"10.{net}.0.10"}],
        "load_balancer": {"primary_port": port, "replica_port": port + 1,
                          "stats_port": port + 2},
    }
    return labmod.lab_cluster(Cluster.model_validate(data), tls=tls)


def run(rounds: int, profile: str) -> tuple[dict[str, list[float]], dict[str, str]]:
    labs = {"tls": labmod.Lab.of(_cluster("bentls", 81, 35000, profile, True), OUTPUT),
            "plain": labmod.Lab.of(_cluster("benplain", 82, 36000, profile, False), OUTPUT)}
    rto: dict[str, list[float]] = {k: [] for k in labs}
    extra: dict[str, str] = {}
    try:
        for key, lab in labs.items():
            labmod.down(lab)
            t = labmod.up(lab, timeout=120)
            extra[f"boot_{key}"] = f"{t['total_s']:.1f}"
        for i in range(rounds):
            order = list(labs) if i % 2 == 0 else list(reversed(labs))
            for key in order:
                scenarios.healthy(labs[key])
                out = scenarios.kill_primary(labs[key])
                print(f"  round {i + 1} {key}: RTO {out.rto:.1f}s, lost {len(out.lost)}",
                      file=sys.stderr)
                rto[key].append(out.rto)
        scenarios.healthy(labs["tls"])
        done = tlsops.rotate_certs(labs["tls"])
        extra["rotation"] = f"{len(done['reissued'])} certificates in {done['applied_s']:.1f}s"
    finally:
        for lab in labs.values():
            labmod.down(lab)
    return rto, extra


def table(rto: dict[str, list[float]], extra: dict[str, str]) -> str:
    med = {k: statistics.median(v) for k, v in rto.items()}
    ratio = med["tls"] / med["plain"] if med["plain"] else float("nan")
    lines = ["| | TLS on every link | no TLS |", "|---|---|---|",
             (f"| boot to healthy, build included (s) | {extra['boot_tls']} | "
              f"{extra['boot_plain']} |"),
             ("| RTO hard kill of the primary (s), each round | "
              + ", ".join(f"{x:.1f}" for x in rto["tls"]) + " | "
              + ", ".join(f"{x:.1f}" for x in rto["plain"]) + " |"),
             f"| RTO median (s) | {med['tls']:.1f} | {med['plain']:.1f} |",
             f"| TLS / no TLS (median) | {ratio:.2f} | |",
             f"| certificate rotation, applied by reload | {extra.get('rotation', '-')} | |"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="fast", choices=["default", "fast"])
    parser.add_argument("--no-write", action="store_true", help="do not update bench/results")
    args = parser.parse_args()
    rto, extra = run(args.rounds, args.profile)
    text = table(rto, extra)
    print(text)
    if not args.no_write:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        (ROOT / "results").mkdir(exist_ok=True)
        (ROOT / "results" / "tls.md").write_text(
            f"# TLS benchmark (bench/tls_bench.py)\n\n{when}, {platform.node() or 'this host'}, "
            f"{os.cpu_count()} cores (shared with other work), profile {args.profile}, "
            f"{args.rounds} rounds; both labs up at once, kills alternating.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
