#!/usr/bin/env python3
"""Rejoin time of a replaced replica (issue 19): `lab replace` (the node re-imaged: its folder
wiped, booted from the same RPMs and seed; the agent rejoins etcd and Patroni clones it) with
an empty database and after `pgbench -i -s SCALE`, and in the same run the clone step of the
hand-built way, `patronictl reinit --force --wait` of a replica. Prints a table and writes
bench/results/lifecycle.md. Figures, not timed assertions. Needs root.

    python3 bench/lifecycle_bench.py [--scales 0,70] [--no-write]

Rejoin: from the start of the new node's boot until it streams and the cluster can fail over
(`lab replace` measures it; the wipe before it is not counted). The lab: its own name (lifeb),
network 10.81.2.0/24 and host ports 31021-31023, fast profile, quorum mode, TLS.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import labclusters

from builder.lab import faults, lifecycle
from builder.lab import lab as labmod
from builder.lab.readiness import leader, wait_failover_ready

ROOT = Path(__file__).resolve().parent
OUTPUT = Path("/var/tmp/pgha-lifecycle-bench")
DATA = labclusters.cluster_data("lifeb", "10.81.2", (31021, 31022, 31023))


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


def run(scales: list[int]) -> list[dict[str, object]]:
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
            hand = reinit(lab, _replica(lab))
            rows.append({"scale": scale, "size_mb": round(size), "load_s": round(load, 1),
                         "replace_s": done["ready_s"], "wipe_s": done["wipe_s"],
                         "reinit_s": round(hand, 1),
                         "etcd": lifecycle.etcd_line(done["etcd"])})
            print(rows[-1], flush=True)
    finally:
        labmod.down(lab)
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = [("| pgbench scale | database | `lab replace`: rejoin | hand way: `patronictl "
              "reinit` | etcd after |"), "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scale'] or 'empty'} | {r['size_mb']} MB | {r['replace_s']} s "
                     f"| {r['reinit_s']} s | {r['etcd']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0,70", help="pgbench scales, 0 = empty database")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    rows = run([int(s) for s in args.scales.split(",")])
    text = table(rows)
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
