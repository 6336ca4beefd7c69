"""One soak run: the schedule for a seed, the clients, the nemesis loop, the final heal and
the wait for failover-ready, the checker, and the report (JSON, and a summary for people).

The loop: inject a fault, hold it, heal it, then wait until the cluster is failover-ready
again (at most `settle_s`: a cluster still recovering takes the next fault, so faults
compose), pause the step's gap, next. When the time is up every fault is healed and the
cluster must be failover-ready within `ready_bound_s`, or the run fails.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.core.errors import PghaError
from builder.lab import faults
from builder.lab.health import http
from builder.lab.lab import Lab
from builder.lab.readiness import failover_readiness, leader, wait_failover_ready
from builder.lab.soak import checker, clients, links, logscan, nemesis, plan

TAIL_S = 5.0  # clients keep going this long after the final readiness
REPLICA_CATCHUP_S = 30.0  # replicas must hold the primary's rows this soon after the end


@dataclass
class Options:
    minutes: float
    seed: int
    mode: str | None = None  # faults.MODES; None: the running cluster's
    kinds: list[str] | None = None  # plan.MENU names; None: all that apply
    writers: int = 3
    readers: int = 2
    op_timeout_s: float = 10.0
    stale_bound_s: float = 30.0
    settle_s: float = 60.0
    ready_bound_s: float = 120.0
    gap: tuple[float, float] = plan.DEFAULT_GAP


@dataclass
class Run:
    lab: Lab
    opts: Options
    echo: Callable[[str], None]
    t0: float = field(default_factory=time.monotonic)
    faults: list[checker.Fault] = field(default_factory=list)
    logs_at: dict[str, int] = field(default_factory=dict)  # log sizes when the run began

    @property
    def log_folders(self) -> list[Path]:
        return [self.lab.node_dirs(n.name).logs for n in self.lab.db_nodes]

    def now(self) -> float:
        return time.monotonic() - self.t0

    def wait_ready(self, limit: float, stop_at: float) -> float | None:
        """Poll failover readiness until ready (its time), `limit` seconds or `stop_at`."""
        end = min(self.now() + limit, stop_at)
        while self.now() < end:
            if failover_readiness(self.lab).ready:
                return self.now()
            time.sleep(0.5)
        return None

    def step(self, step: plan.Step, nem: nemesis.Nemesis, deadline: float) -> None:
        start = self.now()
        try:
            act = nem.inject(step)
        except Exception as err:  # noqa: BLE001 - a fault that cannot start is logged, not fatal
            self.echo(f"{start:7.1f}s  {step.line()}: could not inject: {err}")
            return
        nemesis.hold(act, step.hold_s, lambda: False)
        healed = self.now()
        try:
            act.heal()
        except Exception as err:  # noqa: BLE001 - recorded; heal_all and the final check follow
            act.notes.append(f"heal failed: {getattr(err, 'message', err)}")
        ready = self.wait_ready(self.opts.settle_s, deadline + self.opts.settle_s)
        self.faults.append(checker.Fault(step.index, step.kind, act.nodes, start, healed, ready,
                                         act.detail, tuple(act.notes)))
        took = f"ready after {ready - start:.1f}s" if ready else "not ready yet"
        self.echo(f"{start:7.1f}s  #{step.index} {step.kind} {'+'.join(act.nodes)} "
                  f"({act.detail}) {healed - start:.1f}s, {took} {' '.join(act.notes)}")


def soak(lab: Lab, opts: Options, echo: Callable[[str], None]) -> dict[str, Any]:
    """Run the soak; returns the report (report["failures"] empty when it passed)."""
    kinds = plan.menu_for(opts.kinds, lab.vip is not None, nemesis.has_data_fs(lab))
    wait_failover_ready(lab, opts.ready_bound_s)
    before = faults.mode_of(faults.current_config(lab))
    mode = opts.mode or before
    if mode != before:
        faults.set_mode(lab, mode)
        wait_failover_ready(lab, opts.ready_bound_s)
    try:
        return _soak(lab, opts, kinds, mode, echo)
    finally:
        if mode != before:
            with contextlib.suppress(PghaError):
                faults.set_mode(lab, before)


def _soak(lab: Lab, opts: Options, kinds: list[str], mode: str,
          echo: Callable[[str], None]) -> dict[str, Any]:
    sql = lab.sql()
    clients.setup(sql)
    run = Run(lab, opts, echo)
    run.logs_at = logscan.sizes(run.log_folders)
    writers = [clients.Writer(sql, i, run.t0, opts.op_timeout_s) for i in range(opts.writers)]
    readers = [clients.Reader(sql, i, opts.writers, run.t0, opts.op_timeout_s)
               for i in range(opts.readers)]
    nem = nemesis.Nemesis(lab)
    everyone: list[clients.Client] = [*writers, *readers]
    deadline = opts.minutes * 60
    echo(f"soak: seed {opts.seed}, {mode} mode, {opts.minutes:g} min, faults: {', '.join(kinds)}")
    final: dict[str, Any] = {}
    try:
        for c in everyone:
            c.start()
        time.sleep(min(3.0, deadline))
        for step in plan.schedule(opts.seed, kinds, opts.gap):
            if run.now() >= deadline:
                break
            run.step(step, nem, deadline)
            time.sleep(max(0.0, min(step.gap_s, deadline - run.now())))
        final = _final(run, nem)
    finally:
        nem.heal_all()
        for c in everyone:
            c.stop()
    return report(run, mode, writers, readers, final)


def _final(run: Run, nem: nemesis.Nemesis) -> dict[str, Any]:
    nem.heal_all()
    revived: list[str] = []
    with contextlib.suppress(PghaError):
        revived = nem.revive()
    healed = run.now()
    ready = run.wait_ready(run.opts.ready_bound_s, float("inf"))
    reason = "" if ready else failover_readiness(run.lab).reason
    if ready:
        time.sleep(TAIL_S)
    return {"healed_s": round(healed, 3), "ready": ready is not None, "reason": reason,
            "ready_after_heal_s": None if ready is None else round(ready - healed, 3),
            "bound_s": run.opts.ready_bound_s, "end_s": round(run.now(), 3),
            "revived": revived}


def _rows(lab: Lab, tries: int) -> list[tuple[int, int, int, str, int, int]] | None:
    """The primary's rows, retried for a while (None: no primary answered)."""
    for _ in range(tries):
        with contextlib.suppress(Exception):
            return clients.final_rows(lab.sql())
        time.sleep(1)
    return None


def report(run: Run, mode: str, writers: list[clients.Writer], readers: list[clients.Reader],
           final: dict[str, Any]) -> dict[str, Any]:
    writes = [op for w in writers for op in w.ops]
    reads = [op for r in readers for op in r.ops]
    end = final.get("end_s", run.now())
    rows = _rows(run.lab, 30 if final.get("ready") else 3)
    out: dict[str, Any] = {
        "seed": run.opts.seed, "mode": mode, "minutes": run.opts.minutes,
        "cluster": run.lab.cluster.name, "profile": run.lab.cluster.profile,
        "versions": versions(run.lab),
        "schedule": [f.kind for f in run.faults],
        "writes": checker.totals(writes), "reads": checker.totals(reads),
        "data": checker.data(writes, rows),
        "replicas": _replicas(run.lab, rows) if final.get("ready") else {},
        "primaries": checker.primaries(writes), "split_brain": checker.split_brain(writes),
        "stale_reads": checker.stale(writes, reads, run.opts.stale_bound_s),
        "faults": checker.per_fault(writes, run.faults, end),
        "logs": logscan.count(run.log_folders, run.logs_at),
        "netem": links.netem_known(),  # link faults by tc netem (True) or tbf/nftables
        "final": final or {"ready": False, "reason": "interrupted", "bound_s": 0},
    }
    out["failures"] = checker.verdict(out)
    return out


def _replicas(lab: Lab, rows: list[tuple[int, int, int, str, int, int]] | None
              ) -> dict[str, dict[str, Any]]:
    """Whether every replica holds exactly the primary's rows once the writers stopped (count
    and sum of ids), within REPLICA_CATCHUP_S."""
    if rows is None:
        return {}
    primary = leader(lab)
    replicas = [n.address for n in lab.db_nodes if n.name != primary]
    want = (len(rows), sum(r[0] for r in rows))
    seen = clients.replica_rows(lab.sql(), replicas, want, REPLICA_CATCHUP_S)
    return {addr: {"rows": seen[addr][0] if addr in seen else None,
                   "same_as_primary": seen.get(addr) == want} for addr in replicas}


def versions(lab: Lab) -> dict[str, str]:
    """Patroni's, PostgreSQL's and etcd's versions, as the leader's REST API reports them."""
    name = leader(lab) or lab.db_nodes[0].name
    code, body = http("GET", lab.rest_url(lab.net.node(name), "/patroni"), timeout=3,
                      context=lab.rest_context())
    if code != 200 or not isinstance(body, dict):
        return {}
    pg = int(body.get("server_version") or 0)
    etcd = lab.runner.run(["etcd", "--version"], check=False).stdout.decode().split("\n")[0]
    return {"patroni": str(body.get("patroni", {}).get("version", "")),
            "postgresql": f"{pg // 10000}.{pg % 10000}" if pg else "",
            "etcd": etcd.split(":")[-1].strip()}


def write(report_: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report_, indent=2) + "\n")
    tmp.replace(path)


def summary(r: dict[str, Any]) -> str:
    """The report for people: verdict, totals, checks, then one line per fault."""
    d, w, s = r["data"], r["writes"], r["stale_reads"]
    lines = [(f"soak {'FAILED' if r['failures'] else 'passed'}: seed {r['seed']}, {r['mode']} "
             f"mode, {len(r['faults'])} faults in {r['minutes']:g} min "
             f"({', '.join(f'{k} {v}' for k, v in r['versions'].items())})")]
    lines += [f"  FAIL: {why}" for why in r["failures"]]
    lines.append(f"  writes: {w['attempted']} attempted, {w['ok']} ok, {w['error']} error, "
                 f"{w['unknown']} unknown; reads: {r['reads']['ok']} ok of "
                 f"{r['reads']['attempted']}")
    if d.get("unchecked"):
        lines.append("  rows: not read (no primary answered at the end)")
    else:
        lines.append(f"  rows: {d['rows']} present; lost {d['lost']}, unknown present "
                     f"{d['unknown_present']}, unknown absent {d['unknown_absent']}, "
                     f"duplicates {d['duplicates']}, phantom {d['phantom']}")
    lines.append("  primaries: " + ", ".join(f"{p['server']} tl {p['timeline']} "
                                              f"({p['acks']})" for p in r["primaries"]))
    reps = [f"{a} {'same rows as the primary' if v['same_as_primary'] else v['rows']}"
            for a, v in r.get("replicas", {}).items()]
    lines.append("  replicas after the run: " + (", ".join(reps) or "not checked"))
    lines.append(f"  split brain: {len(r['split_brain'])}; stale reads over {s['bound_s']:g}s: "
                 f"{s['over_bound']} (max {s['max_s']}s, p99 {s['p99_s']}s)"
                 + "".join(f"; {srv} served them from {a}s to {b}s ({n})"
                           for srv, (a, b, n) in s.get("over_by_server", {}).items()))
    for f in r["faults"]:
        lines.append(f"  {f['start_s']:7.1f}s #{f['index']} {f['kind']} {'+'.join(f['nodes'])}"
                     f" held {f['held_s']:.1f}s: writes resumed {_s(f['writes_resumed_s'])}, "
                     f"failover-ready {_s(f['ready_s'])} {' '.join(f['notes'])}".rstrip())
    if r.get("netem") is not None:
        lines.append("  link faults: " + ("tc netem" if r["netem"] else
                                          "tbf rate limits and nftables drops (no sch_netem)"))
    lines.append("  in the logs: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                             for k, v in r.get("logs", {}).items()))
    fin = r["final"]
    revived = f"; booted again: {', '.join(fin['revived'])}" if fin.get("revived") else ""
    lines.append(f"  after the last heal: failover-ready {_s(fin.get('ready_after_heal_s'))} "
                 f"(bound {fin['bound_s']:g}s){revived}")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"
