"""What a day-2 change costs clients, measured the same way by tests/test_lab_changes.py and
bench/changes_bench.py: a Writer (numbered rows through the read-write port) and a Reader (a
new connection to the read-only port every 0.1 s) run while the change happens.

Figures: the write outages (gaps between acknowledged writes longer than `gap`), how many times
the primary that acknowledged writes changed (switchovers seen by clients), acknowledged rows
lost, and the read-only port's longest outage."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from labkit.workload import Writer

from builder.lab.health import Sql
from builder.lab.lab import Lab


@dataclass
class Reader:
    sql: Sql
    events: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Reader:
        self._thread = threading.Thread(target=self._run, name="changekit-reader", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.sql.query(self.sql.ro_port, "SELECT 1") == [(1,)]
            except Exception:  # noqa: BLE001 - any failure is "down"
                ok = False
            self.events.append((time.monotonic(), ok))
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def longest_outage(self) -> float:
        """Longest time from a failed read to the next successful one."""
        longest, down_since = 0.0, None
        for t, ok in self.events:
            if not ok and down_since is None:
                down_since = t
            elif ok and down_since is not None:
                longest, down_since = max(longest, t - down_since), None
        if down_since is not None:
            longest = max(longest, self.events[-1][0] - down_since)
        return longest


def write_outages(writer: Writer, start: float, end: float, gap: float = 1.0) -> list[float]:
    """Gaps longer than `gap` between acknowledged writes (and the change's start and end)."""
    times = [start, *(t for _, t in writer.acked if start <= t <= end), end]
    return [round(b - a, 2) for a, b in itertools.pairwise(times) if b - a > gap]


def primary_changes(writer: Writer) -> int:
    """How many times the server acknowledging writes changed (the switchovers clients saw)."""
    order = [writer.servers[row] for row, _ in writer.acked if row in writer.servers]
    return sum(1 for a, b in itertools.pairwise(order) if a != b)


def measure(lab: Lab, change: Callable[[], Any]) -> dict[str, Any]:
    """Run `change()` under a writer and a reader; the figures, and what change() returned."""
    sql = lab.sql()
    writer, reader = Writer(sql).start(), Reader(sql).start()
    try:
        writer.wait_acked(20)
        start = time.monotonic()
        result = change()
        end = time.monotonic()
        writer.wait_acked(20)
    finally:
        writer.stop()
        reader.stop()
    outages = write_outages(writer, start, end)
    return {"seconds": round(end - start, 1), "write_outages_s": outages,
            "longest_write_outage_s": max(outages, default=0.0),
            "primary_changes": primary_changes(writer), "acked": len(writer.acked),
            "lost": writer.lost(), "longest_read_outage_s": round(reader.longest_outage(), 2),
            "result": result}
