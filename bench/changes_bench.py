#!/usr/bin/env python3
"""What day-2 changes cost clients (issue 20), with a writer through the read-write port and a
reader on the read-only port (tests/changekit.py): a restart-requiring parameter change applied
by `config --apply` (PATCH /config, then the rolling restart), and a rolling upgrade to the next
release (`lab upgrade`). Repeated --runs times on one lab.

    python3 bench/changes_bench.py [--profile fast|default] [--runs 2]

Prints a table and writes it to bench/results/changes.md (figures in changes.json). Figures,
not assertions. Needs root; its own lab name (chgb), network (10.83.2.0/24) and host ports
(33200-33202), taken down at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import changekit
import labclusters

from builder.lab import changes, upgrade
from builder.lab import lab as labmod
from builder.ops import change

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = Path("/var/tmp/pgha-changes-bench")


def data(profile: str, release: int, max_connections: int) -> dict[str, Any]:
    d = labclusters.cluster_data("chgb", "10.83.2", (33200, 33201, 33202))
    return {**d, "profile": profile, "release": release,
            "patroni": {"parameters": {"max_connections": max_connections}}}


def run(profile: str, runs: int) -> list[dict[str, Any]]:
    lab = labclusters.make_lab(data(profile, 1, 100), OUTPUT)
    labmod.down(lab)
    rows = []
    try:
        labmod.up(lab, timeout=180)
        for i in range(runs):
            wanted = labclusters.make_lab(data(profile, 1 + i, 110 + 10 * i), OUTPUT)
            rows.append({"change": "max_connections (restart) by config --apply", **_figures(
                changekit.measure(lab, lambda w=wanted: change.run(
                    w.cluster, changes.target(lab), print, apply=True, timeout=180)),
                lambda r: r["restarts"])})
            n1 = labclusters.make_lab(data(profile, 2 + i, 110 + 10 * i), OUTPUT)
            rows.append({"change": f"rolling upgrade to release {2 + i}", **_figures(
                changekit.measure(n1, lambda n=n1: upgrade.run(n, print, 180)), lambda r: r)})
    finally:
        labmod.down(lab)
    return rows


def _figures(m: dict[str, Any], steps: Any) -> dict[str, Any]:
    return {"seconds": m["seconds"], "write_outages_s": m["write_outages_s"],
            "primary_changes": m["primary_changes"], "acked": m["acked"], "lost": len(m["lost"]),
            "longest_read_outage_s": m["longest_read_outage_s"],
            "steps_s": [s["seconds"] for s in steps(m["result"])]}


def table(rows: list[dict[str, Any]], profile: str) -> str:
    head = (f"## Day-2 changes with a writer (bench/changes_bench.py, profile {profile})\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
            f"{os.cpu_count()} cores, shared with other engineers' work (figures vary with the "
            "load). Write outages: gaps over 1 s between acknowledged writes.\n\n"
            "| change | total s | write outages s | primary changes | acked | lost | "
            "read-only longest outage s | steps s |\n|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['change']} | {r['seconds']} | {', '.join(map(str, r['write_outages_s'])) or '-'} "
        f"| {r['primary_changes']} | {r['acked']} | {r['lost']} | {r['longest_read_outage_s']} "
        f"| {', '.join(map(str, r['steps_s']))} |\n" for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=["fast", "default"], default="fast")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    rows = run(args.profile, args.runs)
    text = table(rows, args.profile)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "changes.md").write_text(text)
    (RESULTS / "changes.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
