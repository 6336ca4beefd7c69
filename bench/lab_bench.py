#!/usr/bin/env python3
"""Lab benchmark: boot-to-failover-ready and memory, then every fault scenario of
labkit.cases (RTO, acknowledged rows lost, blocked failovers, routing), for the `default`
and `fast` timing profiles and in each replication mode. Figures, not timed assertions. Needs
root; hold the lab lock: `flock /work/coord/lab.lock python3 bench/lab_bench.py ...`.

    python3 bench/lab_bench.py [--profile default] [--mode sync] [--cases kill,etcd2] [--no-write]

Without --mode: every case in the cluster's default replication mode. With --mode: only the
cases whose outcome depends on the mode (Case.per_mode), in each mode given. Each run merges
its figures into bench/results/lab.json and rewrites bench/results/lab.md from it, so the
matrix can be filled in several shorter runs. The lab runs on its own name, network
(10.78.0.0/24) and host ports (25000/26000/27000); it is taken down at the end (and on failure).
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

from builder.lab import faults
from builder.lab import lab as labmod
from builder.model.cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from labkit import cases as casesmod
from labkit import (
    lbscenarios,  # noqa: F401 - registers the vip_* cases
    scenarios,
    throughput,
)

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
OUTPUT = Path("/var/tmp/pgha-lab-bench")
BENCH_CLUSTER: dict[str, Any] = {
    "name": "labb",
    "network": {"cidr": "10.78.0.0/24", "gateway": "10.78.0.1", "dns": ["10.78.0.1"]},
    "nodes": [
        {"name": "db1", "roles": ["db"], "address": "10.78.0.11"},
        {"name": "db2", "roles": ["db"], "address": "10.78.0.12"},
        {"name": "db3", "roles": ["db"], "address": "10.78.0.13"},
        {"name": "lb1", "roles": ["haproxy"], "address": "10.78.0.10"},
        {"name": "lb2", "roles": ["haproxy"], "address": "10.78.0.9"},
    ],
    "load_balancer": {"primary_port": 25000, "replica_port": 26000, "stats_port": 27000,
                      "virtual_ip": "10.78.0.100"},
}


def make_lab(profile: str, mode: str | None) -> labmod.Lab:
    data: dict[str, Any] = {**BENCH_CLUSTER, "profile": profile}
    if mode is not None:
        data["patroni"] = dict(faults.MODES[mode])
    return labmod.Lab.of(labmod.lab_cluster(Cluster.model_validate(data)), OUTPUT)


def outcome(out: scenarios.Outcome) -> dict[str, Any]:
    return {"rto": out.rto, "routed": out.routed_s, "promoted": out.promoted_s,
            "acked": out.acked, "lost": len(out.lost),
            "blocked": out.blocked, "stop": out.stop_s, "back": out.rejoin_s,
            "late_acks": out.late_acks, "old": out.old, "new": out.new, "notes": out.notes,
            "vip_moved": out.vip_moved_s}


def run_profile(profile: str, mode: str | None, keys: list[str] | None,
                args_tps: bool = True) -> dict[str, Any]:
    lab = make_lab(profile, mode)
    mode_name = mode or faults.mode_of(lab.cluster.patroni.model_dump())
    chosen = [c for c in casesmod.CASES.values()
              if (keys is None or c.key in keys) and (mode is None or c.per_mode)]
    res: dict[str, Any] = {"mode": mode_name, "timings": _timings(lab), "cases": {}}
    labmod.down(lab)
    try:
        labmod.up(lab, timeout=180)  # warm: RPMs built, so the next boot measures boot only
        labmod.down(lab)
        t = labmod.up(lab, timeout=180)
        res["boot"] = {k: t[k] for k in ("rw_s", "ro_s", "ready_s", "total_s")}
        res["memory_mb"] = scenarios.memory_mb(lab)
        if args_tps:
            res["tps"] = throughput.paths(lab)
            print(f"  pgbench -S tps: {res['tps']}", file=sys.stderr, flush=True)
        for case in chosen:
            print(f"  {profile}/{mode_name}: {case.key} ...", file=sys.stderr, flush=True)
            try:
                res["cases"][case.key] = outcome(case.run(lab))
            except Exception as err:  # noqa: BLE001 - a failed case is a figure too
                res["cases"][case.key] = {"error": f"{type(err).__name__}: {err}"}
                scenarios.healthy(lab, 180)
            print(f"    {cell(res['cases'][case.key])}", file=sys.stderr, flush=True)
    finally:
        labmod.down(lab)
    return res


def _timings(lab: labmod.Lab) -> str:
    p, c = lab.cluster.patroni, lab.cluster.load_balancer.check
    return (f"ttl {p.ttl}/{p.loop_wait}/{p.retry_timeout}, check {c.inter_ms}ms/{c.fall}/"
            f"{c.rise} (fast/down {c.fastinter_ms}/{c.downinter_ms}ms)")


def cell(r: dict[str, Any]) -> str:
    """One scenario's figures in one table cell."""
    if "error" in r:
        return f"error: {r['error'][:80]}"
    lost = f"lost {r['lost']}/{r['acked']}"
    if any("writes went on" in n for n in r.get("notes", [])):
        return f"writes went on (primary kept), {lost}"
    if r.get("stop") is not None:
        return f"writes stopped after {r['stop']:.1f}s, back {_s(r['back'])} after etcd; {lost}"
    head = "BLOCKED (patronictl failover)" if r["blocked"] else f"RTO {_s(r['rto'])}"
    parts = [head, lost]
    if r.get("vip_moved") is not None:
        parts.append(f"VIP {r['old']}->{r['new']} {r['vip_moved']:.1f}s")
    if r.get("routed") is not None:
        after = r.get("promoted")
        parts.append(f"routed {r['routed']:.1f}s" + (
            f" ({r['routed'] - after:.1f}s after promotion)" if after is not None else ""))
    if r.get("late_acks"):
        parts.append(f"{r['late_acks']} acks on a non-leader")
    return ", ".join(parts)


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return "never" if value == float("inf") else f"{value:.1f}s"


def merge(results: dict[str, Any], profile: str, res: dict[str, Any]) -> None:
    key = f"{profile}/{res['mode']}"
    old = results.setdefault("runs", {}).get(key, {})
    cases = {**old.get("cases", {}), **res["cases"]}
    command = "python3 bench/lab_bench.py " + " ".join(sys.argv[1:])
    commands = [c for c in old.get("commands", []) if c != command] + [command]
    results["runs"][key] = {**old, **res, "cases": cases, "commands": commands,
                            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def markdown(results: dict[str, Any]) -> str:
    runs = results.get("runs", {})
    keys = sorted(runs)
    machine = (f"{platform.node() or 'this machine'}, {os.cpu_count()} cores, shared with "
               "other engineers' builds and tests (figures vary by a few seconds); Debian 12: "
               "PostgreSQL 15, etcd 3.4, HAProxy 2.6, Patroni 4.1.")
    legend = ("RTO: fault to the first acknowledged write through the read-write port after the "
              "outage. lost: acknowledged rows missing on the primary afterwards / rows "
              "acknowledged (writer inserting numbered rows every 10 ms). routed: fault to "
              "HAProxy routing the read-write port to the new leader alone (stats polled every "
              "0.1 s), and after promotion: after the new leader first answered 200 on "
              "/primary (polled every 0.1 s). BLOCKED: no replica promoted within ttl + 2 loop_wait + 15 s, then the "
              "operator's `patronictl failover --candidate` was run (docs/replication.md).")
    lines = ["# Lab benchmark (bench/lab_bench.py)", "", machine, "", legend, "",
             "| run | timings | when | boot to failover-ready (s) | writes after (s) | memory (MB) |",
             "|---|---|---|---|---|---|"]
    for k in keys:
        r = runs[k]
        boot = r.get("boot", {})
        lines.append(f"| {k} | {r.get('timings', '')} | {r.get('when', '')} | "
                     f"{boot.get('ready_s', 0):.1f} | {boot.get('rw_s', 0):.1f} | "
                     f"{r.get('memory_mb', 0):.0f} |")
    lines += _tps_lines(runs)
    lines += ["", "| scenario | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for case in casesmod.CASES.values():
        cells = [cell(runs[k]["cases"][case.key]) if case.key in runs[k].get("cases", {})
                 else "" for k in keys]
        if any(cells):
            lines.append(f"| {case.title} | " + " | ".join(cells) + " |")
    repro = ("Reproduce (root, holding the lab lock: `flock /work/coord/lab.lock ...`; each "
             "command merges its cases into the column of its profile/mode):")
    lines += ["", repro, ""]
    for k in keys:
        lines += [f"- {k}: " + "; ".join(f"`{c}`" for c in runs[k].get("commands", []))]
    others = sorted(RESULTS.glob("lab-*.md"))
    if others:
        lines += ["", "Other lab figures: " + ", ".join(f"[{o.name}]({o.name})" for o in others)]
    return "\n".join(lines) + "\n"


def _tps_lines(runs: dict[str, Any]) -> list[str]:
    """pgbench -S (8 clients) on the read-write port by path, and the host path's ratio."""
    rows = [(k, r["tps"]) for k, r in sorted(runs.items()) if r.get("tps")]
    if not rows:
        return []
    intro = ("pgbench -S, 8 clients, tps (read-only transactions on the primary): the host "
             "path is 127.0.0.1 forwarded by the kernel to the VIP (builder.lab.forward).")
    head = ("| run | host 127.0.0.1 -> VIP -> HAProxy | namespace -> VIP -> HAProxy | direct "
            "to the primary | host / namespace |")
    lines = ["", intro, "", head, "|---|---|---|---|---|"]
    for k, t in rows:
        lines.append(f"| {k} | {t['host']:.0f} | {t['namespace']:.0f} | {t['direct']:.0f} | "
                     f"{t['host'] / t['namespace']:.2f} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profile", action="append", choices=["default", "fast"])
    parser.add_argument("--mode", action="append", choices=list(faults.MODES))
    parser.add_argument("--cases", help="comma-separated case keys: " + ",".join(casesmod.CASES))
    parser.add_argument("--no-write", action="store_true", help="do not update bench/results")
    parser.add_argument("--no-tps", action="store_true", help="skip the pgbench path figures")
    args = parser.parse_args()
    keys = args.cases.split(",") if args.cases else None
    store = RESULTS / "lab.json"
    results = json.loads(store.read_text()) if store.exists() else {}
    for profile in args.profile or ["default", "fast"]:
        for mode in args.mode or [None]:
            print(f"benchmarking profile {profile}, mode {mode or 'default'} ...",
                  file=sys.stderr)
            merge(results, profile, run_profile(profile, mode, keys, not args.no_tps))
    text = markdown(results)
    engines = RESULTS / "lab-engines.md"  # bench/engine_bench.py: process vs systemd engine
    if engines.exists():
        text += "\n" + engines.read_text().replace("# ", "## ", 1)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        store.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
        (RESULTS / "lab.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
