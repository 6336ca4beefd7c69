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


def bare(specs: Path, work: Path) -> float:
    """The same packages with nothing but `rpmbuild -ba` (the product's defines) one after
    the other, then `createrepo_c`: the floor the build is compared with."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from builder.stages.rpms import rpmbuild_defines

    shutil.rmtree(work, ignore_errors=True)
    (work / "repo").mkdir(parents=True)
    start = time.perf_counter()
    for i, spec in enumerate(sorted(specs.glob("*.spec"))):
        top = work / f"t{i}"
        (top / "SOURCES").mkdir(parents=True)
        for payload in specs.glob(spec.stem + "-*-payload.tar.gz"):
            shutil.copy2(payload, top / "SOURCES" / payload.name)
        subprocess.run(["rpmbuild", "-ba", "--quiet", *rpmbuild_defines(top), str(spec)],
                       check=True, capture_output=True, env={**os.environ, "HOME": str(top)})
        for rpm in top.glob("*RPMS/**/*.rpm"):
            shutil.copy2(rpm, work / "repo" / rpm.name)
    subprocess.run(["createrepo_c", "--quiet", "--no-database", str(work / "repo")], check=True)
    return time.perf_counter() - start


def measure(cluster_args: list[str], runs: int,
            work: Path) -> tuple[float, float, float | None]:
    """Cold build, warm build and (default cluster only) the bare floor, interleaved."""
    cmd = [sys.executable, "-m", "builder", "-q", *cluster_args]
    cold, warm, floor = [], [], []
    for i in range(runs):
        out = work / f"out{i}"
        shutil.rmtree(out, ignore_errors=True)
        cold.append(timed([*cmd, "-o", str(out), "build"]))
        warm.append(timed([*cmd, "-o", str(out), "build"]))
        if not cluster_args:
            floor.append(bare(out / "pgha" / "specs", work / f"bare{i}"))
    return (statistics.median(cold), statistics.median(warm),
            statistics.median(floor) if floor else None)


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
    lines = [f"pgha-build build, median of {args.runs} runs (targets: cold < 5 s, warm < 0.5 s;",
             "bare: the same specs with rpmbuild -ba one after the other + createrepo_c,",
             "measured in the same runs, interleaved)",
             f"{'cluster':<20} {'cold (s)':>9} {'warm (s)':>9} {'bare (s)':>9} {'cold/bare':>9}"]
    for name, (cold, warm, floor) in rows:
        extra = f" {floor:>9.2f} {cold / floor:>9.2f}" if floor else ""
        lines.append(f"{name:<20} {cold:>9.2f} {warm:>9.3f}{extra}")
    with open("/proc/loadavg") as fh:
        load = " ".join(fh.read().split()[:3])
    print("\n".join(lines))
    if not args.no_write:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(f"# Build benchmark (bench/build_bench.py)\n\n{when}, "
                           f"{os.cpu_count()} cores, shared (load average {load})\n\n```\n"
                           + "\n".join(lines) + "\n```\n")


if __name__ == "__main__":
    main()
