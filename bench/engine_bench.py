#!/usr/bin/env python3
"""The lab's engines side by side, in one run: boot time, memory, and the faults whose
outcome depends on what supervises the services (labkit.engine_faults): a host crash and
Patroni killed on the primary; on the systemd engine also `systemctl stop patroni`; on the vm
engine (`--engines process,systemd,vm`: QEMU, minutes per boot under TCG) the host crash is a
hard power-off and Patroni frozen on the primary is fenced by the watchdog (labkit.vm_faults).

    flock -o /work/coord/lab.lock python3 bench/engine_bench.py [--profile fast] [--engines ...]

Prints a table and writes it to bench/results/lab-engines.md (and its figures to
lab-engines.json). Figures, not assertions. Needs root; the lab runs on its own name, network
(10.81.16.0/24) and host ports (25016/26016/27016) and is taken down after each engine.
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

from builder.lab import lab as labmod
from builder.model.cluster import Cluster

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from labkit import engine_faults, scenarios, vm_faults

RESULTS = Path(__file__).resolve().parent / "results"
OUTPUT = Path("/var/tmp/pgha-engine-bench")
CLUSTER: dict[str, Any] = {
    "name": "labe",
    "network": {"cidr": "10.81.16.0/24", "gateway": "10.81.16.1", "dns": ["10.81.16.1"]},
    "nodes": [
        {"name": "db1", "roles": ["db"], "address": "10.81.16.11"},
        {"name": "db2", "roles": ["db"], "address": "10.81.16.12"},
        {"name": "db3", "roles": ["db"], "address": "10.81.16.13"},
        {"name": "lb1", "roles": ["haproxy"], "address": "10.81.16.10"},
    ],
    "load_balancer": {"primary_port": 25016, "replica_port": 26016, "stats_port": 27016},
}
FAULTS = {"host crash": engine_faults.host_crash, "Patroni killed": engine_faults.patroni_killed,
          "unit stopped": engine_faults.unit_stopped, "watchdog": vm_faults.watchdog_fence}
ENGINES_OF = {"unit stopped": {"systemd"}, "Patroni killed": {"process", "systemd"},
              "watchdog": {"vm"}}
SECTION = "## The lab's engines: process vs systemd (bench/engine_bench.py)"


def run_engine(engine: str, profile: str) -> dict[str, Any]:
    data = {**CLUSTER, "profile": profile}
    if engine == "vm":
        data["patroni"] = {"watchdog": "required"}
    lab = labmod.Lab.of(labmod.lab_cluster(Cluster.model_validate(data), engine=engine), OUTPUT)
    labmod.down(lab)
    res: dict[str, Any] = {}
    try:
        t = labmod.up(lab, timeout=3600 if engine == "vm" else 300, engine=engine)
        res["boot"] = {k: round(v, 1) for k, v in t.items()}
        scenarios.healthy(lab)
        res["memory_mb"] = round(scenarios.memory_mb(lab))
        for name, fault in FAULTS.items():
            if engine not in ENGINES_OF.get(name, {engine}):
                continue
            out = fault(lab)
            res[name] = {"rto": round(out.rto, 1), "lost": len(out.lost), "acked": out.acked,
                         "failover": out.new != out.old, "back_s": _r(out.rejoin_s),
                         "notes": out.notes, "reset_s": _r(out.reset_s),
                         "late_acks": out.late_acks}
            print(f"{engine:8} {name}: RTO {out.rto:.1f}s lost {len(out.lost)}/{out.acked} "
                  f"{out.old}->{out.new} back {_r(out.rejoin_s)}s {' '.join(out.notes)}",
                  flush=True)
    finally:
        labmod.down(lab)
    return res


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def cell(res: dict[str, Any], name: str) -> str:
    r = res.get(name)
    if r is None:
        return "-"
    how = "failover" if r["failover"] else "no failover"
    return f"{r['rto']} ({how}; lost {r['lost']} of {r['acked']})"


def markdown(results: dict[str, Any], profile: str) -> str:
    engines = list(results)
    lines = [
        "# " + SECTION.removeprefix("## "),
        "",
        (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
        f"{os.cpu_count()} cores, shared with other engineers' runs (figures are noisy); "
        f"profile {profile}; both engines measured in this one run."),
        ("RTO (s): fault to the first acknowledged write through :5000 after the outage; "
        "lost: acknowledged rows missing afterwards."),
        "",
        "| | " + " | ".join(engines) + " |",
        "|---|" + "---|" * len(engines),
        "| boot (RPMs built, image cached) to writes on :5000 (s) | "
        + " | ".join(str(results[e]["boot"]["rw_s"]) for e in engines) + " |",
        "| boot to failover-ready (s) | "
        + " | ".join(str(results[e]["boot"]["ready_s"]) for e in engines) + " |",
        "| memory of the running lab (MB, PSS) | "
        + " | ".join(str(results[e]["memory_mb"]) for e in engines) + " |",
    ]
    for name in FAULTS:
        lines.append(f"| RTO {name} | " + " | ".join(cell(results[e], name) for e in engines)
                     + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="fast", choices=("fast", "default"))
    p.add_argument("--engines", default="process,systemd")
    args = p.parse_args()
    if os.geteuid() != 0:
        print("engine_bench: needs root", file=sys.stderr)
        return 1
    results = {e: run_engine(e, args.profile) for e in args.engines.split(",")}
    text = markdown(results, args.profile)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lab-engines.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / "lab-engines.md").write_text(text)
    lab_md = RESULTS / "lab.md"  # the same section at its end (bench/lab_bench.py keeps it)
    head = lab_md.read_text().split("\n" + SECTION, 1)[0] if lab_md.exists() else ""
    lab_md.write_text(head.rstrip("\n") + "\n\n" + text.replace("# ", "## ", 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
