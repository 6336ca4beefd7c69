#!/usr/bin/env python3
"""Time of the depsolve gate (`pgha-build check --depsolve`) for all roles against local repos.

Builds the RHEL 8 / PGDG stand-in repositories of tests/rhel8_repos.py, a cluster file pointing
at them, and the cluster's RPMs once (`pgha-build rpms`); then times --runs runs of the real
command as a user runs it (a new process each time): the gate plus its cluster check and
kickstart validation. The target is under 10 s for all roles. Prints a table; not a test.

    python3 bench/depsolve_bench.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import rhel8_repos


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="depsolve-bench-") as tmp:
        base = Path(tmp)
        repos = rhel8_repos.build_all(base / "repos")
        cluster = base / "cluster.yaml"
        cluster.write_text(yaml.safe_dump({"name": "bench",
                                           "repos": rhel8_repos.cluster_repos(repos)}))
        cmd = [sys.executable, "-m", "builder", "-q", "-c", str(cluster), "-o", str(base / "out")]
        subprocess.run([*cmd, "rpms"], check=True, capture_output=True)
        times, out = [], ""
        for _ in range(args.runs):
            seconds, out = timed([*cmd, "check", "--depsolve"])
            times.append(seconds)
    print("| what | median | min | max | runs |")
    print("|---|---|---|---|---|")
    print(f"| check --depsolve, all roles (db, haproxy), local repos | "
          f"{statistics.median(times):.2f} s | {min(times):.2f} s | {max(times):.2f} s | "
          f"{args.runs} |")
    print()
    print("\n".join(line for line in out.splitlines() if line.startswith("depsolve:")))


if __name__ == "__main__":
    main()
