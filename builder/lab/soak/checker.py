"""The soak's checker: everything the clients saw, the rows the primary holds at the end and the
fault log in; findings and a verdict out. Pure (no lab), so each check has unit tests with
histories made by hand.

Checks (docs/soak.md):
- lost: acknowledged writes missing at the end (must be 0 in an RPO-0 mode: sync, quorum, strict);
- unacked present: rows whose write ended "unknown" (allowed, counted); present after "error"
  or never attempted (phantom) are anomalies;
- duplicates: an id present more than once (the table has no unique key, so a double apply
  would show);
- split brain: two primaries (server, timeline) whose acknowledgements interleave: each
  acknowledged a write that certainly began after the other had acknowledged one;
- replicas: once the writers stopped, every replica holds exactly the primary's rows;
- stale reads: a read on the read-only port that misses a write acknowledged more than
  `stale_bound` seconds before the read began;
- per fault: time until writes resumed (fault start to the end of the longest stretch without
  an acknowledgement, 0 when no stretch was over RESUME_GAP_S) and until failover-ready.
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from builder.lab.soak.clients import ID_STRIDE, Op

RPO0_MODES = ("sync", "quorum", "strict")
RESUME_GAP_S = 1.0
# Faults after whose heal writes must be back this soon, or the run fails: the cluster must
# recover from them by itself (disk-full: PostgreSQL takes writes again once space is free).
RESUME_AFTER_HEAL_S = {"disk-full": 60.0}
SAMPLE = 20  # ids listed per finding


@dataclass(frozen=True)
class Fault:
    """One injected fault, times in seconds since the run began."""

    index: int
    kind: str
    nodes: list[str]
    start: float
    healed: float
    ready: float | None  # failover-ready again (None: not before the next fault or the end)
    detail: str = ""
    notes: tuple[str, ...] = ()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def totals(ops: Iterable[Op]) -> dict[str, int]:
    count = Counter(op.outcome for op in ops)
    return {"attempted": sum(count.values()), "ok": count["ok"], "error": count["error"],
            "unknown": count["unknown"]}


def data(writes: list[Op], rows: list[tuple[Any, ...]] | None) -> dict[str, Any]:
    """Lost, unacknowledged-but-present, phantom and duplicate rows (rows None: the table
    could not be read, nothing is checked and the run fails)."""
    if rows is None:
        return {**data([], []), "unchecked": True}
    outcome = {op.id: op.outcome for op in writes}
    present = Counter(int(r[0]) for r in rows)
    lost = sorted(i for i, o in outcome.items() if o == "ok" and i not in present)
    unknown = sorted(i for i in present if outcome.get(i) == "unknown")
    after_error = sorted(i for i in present if outcome.get(i) == "error")
    phantom = sorted(i for i in present if i not in outcome)
    dups = sorted(i for i, n in present.items() if n > 1)
    return {"rows": len(rows), "lost": len(lost), "lost_ids": lost[:SAMPLE],
            "unknown_present": len(unknown),
            "unknown_absent": sum(1 for o in outcome.values() if o == "unknown") - len(unknown),
            "present_after_error": len(after_error), "present_after_error_ids": after_error[:SAMPLE],
            "phantom": len(phantom), "phantom_ids": phantom[:SAMPLE],
            "duplicates": len(dups), "duplicate_ids": dups[:SAMPLE]}


def primaries(writes: list[Op]) -> list[dict[str, Any]]:
    """Every (server, timeline) that acknowledged writes: how many, first and last."""
    seen: dict[tuple[str, int], list[Op]] = defaultdict(list)
    for op in writes:
        if op.outcome == "ok":
            seen[(op.server, op.tl)].append(op)
    out = [{"server": s, "timeline": tl, "acks": len(ops),
            "first_ack": round(min(o.end for o in ops), 3),
            "last_start": round(max(o.start for o in ops), 3)}
           for (s, tl), ops in seen.items()]
    return sorted(out, key=lambda p: p["first_ack"])


def split_brain(writes: list[Op]) -> list[dict[str, Any]]:
    """Pairs of primaries whose acknowledgements interleave for certain: A acknowledged a write
    that began after B's first acknowledgement, and B one that began after A's."""
    found = []
    prims = primaries(writes)
    for i, a in enumerate(prims):
        for b in prims[i + 1:]:
            if a["last_start"] > b["first_ack"] and b["last_start"] > a["first_ack"]:
                found.append({"a": f"{a['server']} tl {a['timeline']}",
                              "b": f"{b['server']} tl {b['timeline']}",
                              "from": b["first_ack"], "to": a["last_start"]})
    return found


def stale(writes: list[Op], reads: list[Op], bound: float) -> dict[str, Any]:
    """How stale each successful read was: the time since the oldest acknowledged write it
    missed had been acknowledged (0 when it missed none)."""
    acked: dict[int, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for op in sorted((o for o in writes if o.outcome == "ok"), key=lambda o: o.id):
        seqs, ends = acked[op.id // ID_STRIDE]
        seqs.append(op.id % ID_STRIDE)
        ends.append(op.end)
    ages: list[tuple[float, Op]] = []
    for op in reads:
        if op.outcome != "ok":
            continue
        age = 0.0
        for writer, seen in enumerate(op.seen):
            seqs, ends = acked.get(writer, ([], []))
            i = bisect.bisect_right(seqs, seen)
            if i < len(seqs) and ends[i] < op.start:
                age = max(age, op.start - ends[i])
        ages.append((age, op))
    over = [op for a, op in ages if a > bound]
    worst = max(ages, key=lambda x: x[0], default=None)
    return {"reads_ok": len(ages), "bound_s": bound, "over_bound": len(over),
            "max_s": round(worst[0] if worst else 0.0, 3),
            "p99_s": round(percentile([a for a, _ in ages], 0.99) or 0.0, 3),
            # where to look: the stalest read (when it began, which server answered) and
            # the span of the reads over the bound, per server
            "worst": {"at_s": round(worst[1].start, 3), "server": worst[1].server}
            if worst and worst[0] else None,
            "over_by_server": {srv: [round(min(o.start for o in ops), 1),
                                     round(max(o.start for o in ops), 1), len(ops)]
                               for srv, ops in _by_server(over).items()}}


def _by_server(ops: list[Op]) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        out[op.server].append(op)
    return dict(out)


def writes_resumed(writes: list[Op], start: float, until: float) -> tuple[float | None, float]:
    """Fault start to the end of the longest stretch without an acknowledgement in
    [start, until] (0 when none was over RESUME_GAP_S; None when no write was acknowledged at
    all), and that stretch's length."""
    ends = sorted(op.end for op in writes if op.outcome == "ok" and start <= op.end <= until)
    if not ends:
        return None, until - start
    points = [start, *ends]
    gap, at = max((b - a, b) for a, b in itertools.pairwise(points))
    return (round(at - start, 3) if gap > RESUME_GAP_S else 0.0), round(gap, 3)


def per_fault(writes: list[Op], faults: list[Fault], end: float) -> list[dict[str, Any]]:
    out = []
    for i, f in enumerate(faults):
        until = faults[i + 1].start if i + 1 < len(faults) else end
        resumed, gap = writes_resumed(writes, f.start, until)
        out.append({"index": f.index, "kind": f.kind, "nodes": f.nodes, "detail": f.detail,
                    "notes": list(f.notes), "start_s": round(f.start, 3),
                    "held_s": round(f.healed - f.start, 3), "writes_resumed_s": resumed,
                    "writes_after_heal_s": None if resumed is None else
                    round(max(0.0, f.start + resumed - f.healed), 3),
                    "longest_write_gap_s": gap,
                    "ready_s": None if f.ready is None else round(f.ready - f.start, 3),
                    "ready_after_heal_s": None if f.ready is None else round(f.ready - f.healed,
                                                                              3)})
    return out


def verdict(report: dict[str, Any]) -> list[str]:
    """Why the run failed (empty: it passed)."""
    why = []
    d, mode = report["data"], report["mode"]
    if d.get("unchecked"):
        why.append("the rows could not be read at the end: no primary answered")
    if d["lost"] and mode in RPO0_MODES:
        why.append(f"{d['lost']} acknowledged writes lost in {mode} mode (RPO 0)")
    for key, what in (("duplicates", "duplicate ids"), ("phantom", "rows never written"),
                      ("present_after_error", "rows present whose write failed for certain")):
        if d[key]:
            why.append(f"{d[key]} {what}")
    for addr, rep in report.get("replicas", {}).items():
        if not rep["same_as_primary"]:
            why.append(f"replica {addr} does not hold the primary's rows after the run "
                       f"({rep['rows']} rows, the primary {d['rows']})")
    if report["split_brain"]:
        why.append(f"split brain: {len(report['split_brain'])} pair(s) of primaries "
                   "acknowledged writes over the same period")
    why += _not_resumed(report.get("faults", []))
    if report["stale_reads"]["over_bound"]:
        s = report["stale_reads"]
        why.append(f"{s['over_bound']} reads staler than {s['bound_s']:g}s (max {s['max_s']}s)")
    if not report["final"]["ready"]:
        why.append(f"not failover-ready {report['final']['bound_s']:g}s after the last heal: "
                   f"{report['final']['reason']}")
    if not report["writes"]["ok"]:
        why.append("no write was acknowledged at all")
    return why


def _not_resumed(faults: list[dict[str, Any]]) -> list[str]:
    """Faults of RESUME_AFTER_HEAL_S whose writes were not back within the bound after the heal
    (no acknowledged write before the next fault counts as not back)."""
    why = []
    for f in faults:
        bound = RESUME_AFTER_HEAL_S.get(f["kind"])
        late = f.get("writes_after_heal_s")
        if bound is not None and (late is None or late > bound):
            took = ("no write was acknowledged after the heal" if late is None
                    else f"writes came back {late:.1f}s after the heal")
            why.append(f"#{f['index']} {f['kind']} on {'+'.join(f['nodes'])}: {took} "
                       f"(bound {bound:g}s)")
    return why
