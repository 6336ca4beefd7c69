#!/usr/bin/env python3
"""Cold and warm (cached) time of `pgha-build build`, for the default cluster and a 9-node one.

Prints a table; not a test. Each figure is the median of --runs runs of the real command
(a new process each time, as a user runs it). Cold: an empty output folder. Warm: the same
command again with nothing changed.

    python3 bench/build_bench.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).resolve().parent / "results" / "build.md"
NINE = {
    "name": "nine",
    "nodes": [
        *({"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"} for i in range(1, 8)),
        {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.5"},
        {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.6"},
    ],
    "load_balancer": {"virtual_ip": "10.77.0.100"},
}


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(cluster_args: list[str], runs: int, work: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "builder", "-q", *cluster_args]
    cold, warm = [], []
    for i in range(runs):
        out = work / f"out{i}"
        shutil.rmtree(out, ignore_errors=True)
        cold.append(timed([*cmd, "-o", str(out), "build"]))
        warm.append(timed([*cmd, "-o", str(out), "build"]))
    return statistics.median(cold), statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update bench/results/")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nine = work / "nine.yaml"
        nine.write_text(yaml.safe_dump(NINE))
        rows = [("default (4 nodes)", measure([], args.runs, work)),
                ("9 nodes", measure(["-c", str(nine)], args.runs, work))]
    lines = [f"pgha-build build, median of {args.runs} runs (targets: cold < 5 s, warm < 0.5 s)",
             f"{'cluster':<20} {'cold (s)':>9} {'warm (s)':>9}"]
    lines += [f"{name:<20} {cold:>9.2f} {warm:>9.3f}" for name, (cold, warm) in rows]
    print("\n".join(lines))
    if not args.no_write:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(f"# Build benchmark (bench/build_bench.py)\n\n{when}, "
                           f"{os.cpu_count()} cores\n\n```\n" + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
