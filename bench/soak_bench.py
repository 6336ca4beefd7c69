#!/usr/bin/env python3
"""Soak benchmark: `lab soak` for several seeds in each replication mode, on a lab with two
load balancers and a virtual IP (so every fault of the menu applies), with the default timing
profile. Figures, not timed assertions. Needs root; run it alone (one long benchmark at a
time on a shared machine).

    python3 bench/soak_bench.py [--minutes 12] [--seeds 101,202] [--modes quorum,async]
                                [--profile default] [--data-fs 512]

One lab per mode (booted with each db node's data on a 512 MiB file system of its own, so
disk-full is in the menu; soaked once per seed; taken down, also on failure). Each run's
report is merged into bench/results/soak.json (keyed by mode and seed) and
bench/results/soak.md is rewritten from it: per mode and fault kind the count and the
p50/p95/max time until writes resumed and until failover-ready after the heal, the checker's
totals, the versions. The lab runs on its own name, network (10.87.0.0/24) and ports
(37000-37002).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

from builder.lab import lab as labmod
from builder.lab.soak import checker, run
from builder.model.cluster import Cluster

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = Path("/var/tmp/pgha-soak-bench")
CLUSTER: dict[str, Any] = {
    "name": "soakb",
    "network": {"cidr": "10.87.0.0/24", "gateway": "10.87.0.1", "dns": ["10.87.0.1"]},
    "nodes": [
        {"name": "db1", "roles": ["db"], "address": "10.87.0.11"},
        {"name": "db2", "roles": ["db"], "address": "10.87.0.12"},
        {"name": "db3", "roles": ["db"], "address": "10.87.0.13"},
        {"name": "lb1", "roles": ["haproxy"], "address": "10.87.0.10"},
        {"name": "lb2", "roles": ["haproxy"], "address": "10.87.0.9"},
    ],
    "load_balancer": {"primary_port": 37000, "replica_port": 37001, "stats_port": 37002,
                      "virtual_ip": "10.87.0.100"},
}


def soak_mode(mode: str, seeds: list[int], minutes: float, profile: str,
              data_fs: int | None) -> dict[str, Any]:
    lab = labmod.Lab.of(labmod.lab_cluster(Cluster.model_validate({**CLUSTER,
                                                                  "profile": profile})), OUTPUT)
    labmod.down(lab)
    out = {}
    try:
        labmod.up(lab, timeout=180, data_fs_mb=data_fs)
        for seed in seeds:
            t = time.monotonic()
            load = os.getloadavg()[0]
            report = run.soak(lab, run.Options(minutes=minutes, seed=seed, mode=mode),
                              lambda line: print(line, flush=True))
            report["wall_s"] = round(time.monotonic() - t, 1)
            report["load"] = [round(load, 1), round(os.getloadavg()[0], 1)]
            print(run.summary(report), flush=True)
            out[f"{mode}/{seed}"] = report
            merge({f"{mode}/{seed}": report})
    finally:
        labmod.down(lab)
    return out


def merge(new: dict[str, Any]) -> dict[str, Any]:
    path = RESULTS / "soak.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(new)
    path.write_text(json.dumps(data, indent=1) + "\n")
    (RESULTS / "soak.md").write_text(markdown(data))
    return data


def notes() -> list[str]:
    """What the figures alone do not say (bench/results/soak-notes.md, written by hand)."""
    path = RESULTS / "soak-notes.md"
    return [*path.read_text().rstrip().splitlines(), ""] if path.exists() else []


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fault_table(reports: list[dict[str, Any]]) -> list[str]:
    rows = [("| fault | count | writes resumed p50 / p95 / max (s) | never resumed | "
            "failover-ready after heal p50 / p95 / max (s) | not ready before the next |"),
            "|---|---|---|---|---|---|"]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        for f in r["faults"]:
            kinds.setdefault(f["kind"], []).append(f)
    for kind, fs in sorted(kinds.items()):
        resumed = [f["writes_resumed_s"] for f in fs if f["writes_resumed_s"] is not None]
        ready = [f["ready_after_heal_s"] for f in fs if f["ready_after_heal_s"] is not None]
        stats = [" / ".join(_f(checker.percentile(v, q)) if q < 1 else _f(max(v, default=None))
                            for q in (0.5, 0.95, 1)) for v in (resumed, ready)]
        rows.append(f"| {kind} | {len(fs)} | {stats[0]} | {len(fs) - len(resumed)} | "
                    f"{stats[1]} | {len(fs) - len(ready)} |")
    return rows


def totals_table(data: dict[str, Any]) -> list[str]:
    rows = [("| mode / seed | minutes | faults | writes ok / error / unknown | lost | "
            "unknown present | duplicates | phantom | split brain | stale max (s) | "
            "ready after last heal (s) | load at start / end | verdict |"), "|---" * 13 + "|"]
    for key, r in sorted(data.items()):
        w, d = r["writes"], r["data"]
        rows.append(f"| {key} | {r['minutes']:g} | {len(r['faults'])} | {w['ok']} / "
                    f"{w['error']} / {w['unknown']} | {d['lost']} | {d['unknown_present']} | "
                    f"{d['duplicates']} | {d['phantom']} | {len(r['split_brain'])} | "
                    f"{r['stale_reads']['max_s']} | {_f(r['final'].get('ready_after_heal_s'))}"
                    f" | {' / '.join(f'{x:g}' for x in r.get('load', [])) or '-'}"
                    f" | {'; '.join(r['failures']) or 'pass'} |")
    return rows


def markdown(data: dict[str, Any]) -> str:
    first: dict[str, Any] = next(iter(data.values()), {})
    versions = ", ".join(f"{k} {v}" for k, v in first.get("versions", {}).items())
    lines = ["# Soak results", "",
             ("`python3 bench/soak_bench.py` (`lab soak` per seed and mode; docs/soak.md). "
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, shared with other "
             f"engineers' work while it ran. Versions: {versions}. Profile: "
             f"{first.get('profile', '?')}; cluster: 3 db nodes, 2 load balancers with a VIP."),
             "", *notes(), "## Checker totals", "", *totals_table(data), ""]
    for mode in sorted({k.split("/")[0] for k in data}):
        reports = [r for k, r in data.items() if k.split("/")[0] == mode]
        minutes = sum(r["minutes"] for r in reports)
        lines += [f"## Per fault: {mode} mode ({len(reports)} runs, {minutes:g} min)", "",
                  *fault_table(reports), ""]
    lines += [("What the failures and the long figures mean (slow links, stale reads, "
               "demotions for lost DCS access, switchovers to a degraded node): "
               "docs/soak.md, \"What the soak found\"."), "",
              ("Writes resumed: fault start to the end of the longest stretch without an "
              "acknowledged write before the next fault (0 when no stretch was over 1 s). "
              "Failover-ready after heal: from the heal (for kill and restart-lb, the boot) "
              "until the cluster can fail over again; the nemesis waits at most 60 s before "
              "the next fault."), ""]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=12)
    p.add_argument("--seeds", default="101,202")
    p.add_argument("--modes", default="quorum,async")
    p.add_argument("--profile", default="default", choices=["default", "fast"])
    p.add_argument("--data-fs", type=int, default=512,
                   help="MiB of each db node's data file system (lab up --data-fs: disk-full "
                        "joins the menu); 0: on the host's file system, no disk-full")
    p.add_argument("--render", action="store_true", help="only rewrite soak.md from soak.json")
    args = p.parse_args()
    if args.render:
        merge({})
        return 0
    if os.geteuid() != 0:
        print("the lab needs root", file=sys.stderr)
        return 1
    # `kill <pid>` ends a run cleanly: faults healed, the lab taken down (a background job
    # of a non-interactive shell ignores SIGINT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    seeds = [int(s) for s in args.seeds.split(",")]
    for mode in args.modes.split(","):
        soak_mode(mode, seeds, args.minutes, args.profile, args.data_fs or None)
    print(f"wrote {RESULTS / 'soak.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
