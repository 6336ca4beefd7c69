"""A writer that inserts numbered rows through the read-write port and remembers which commits
were acknowledged, for the fault tests and the benchmark.

A row counts as acknowledged only when COMMIT returned without error; the writer also records
which server acknowledged it (`inet_server_addr()`). After a fault, `Writer.lost()` lists
acknowledged rows that the (new) primary does not have: the RPO; `Writer.late_acks()` counts rows
a former primary acknowledged after the new one had (a write routed to a demoted node).
`Writer.rto(t0)` is the time from a fault at t0 to the first acknowledged write after the first
failed one (or the longest gap between acknowledged writes if nothing failed).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from builder.lab.health import Sql

TABLE = "pgha_lab_rows"


@dataclass
class Writer:
    sql: Sql
    interval: float = 0.01
    table: str = TABLE
    acked: list[tuple[int, float]] = field(default_factory=list)
    failures: list[float] = field(default_factory=list)
    servers: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next: int = 1

    def reset_table(self) -> None:
        self.sql.query(self.sql.rw_port,
                       f"DROP TABLE IF EXISTS {self.table}; "
                       f"CREATE TABLE {self.table} (id int PRIMARY KEY, at timestamptz "
                       "DEFAULT clock_timestamp())")

    def start(self) -> Writer:
        self.reset_table()
        self._thread = threading.Thread(target=self._run, name="pgha-lab-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        conn: Any = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = self.sql.connect(self.sql.rw_port, timeout=1)
                row = self._next
                self._next += 1
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {self.table} (id) VALUES (%s) "
                                "RETURNING host(inet_server_addr())", (row,))
                    server = cur.fetchone()[0]
                self.servers[row] = str(server)
                self.acked.append((row, time.monotonic()))
            except Exception:  # noqa: BLE001 - every failure is "not acknowledged"
                self.failures.append(time.monotonic())
                _close(conn)
                conn = None
                self._stop.wait(0.1)
                continue
            self._stop.wait(self.interval)
        _close(conn)

    def wait_acked(self, count: int, timeout: float = 60) -> None:
        """Block until `count` more rows have been acknowledged."""
        target = len(self.acked) + count
        deadline = time.monotonic() + timeout
        while len(self.acked) < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"writer: fewer than {count} rows acknowledged in {timeout}s")
            time.sleep(0.05)

    def lost(self) -> list[int]:
        """Acknowledged rows the primary does not have now."""
        present = {r[0] for r in self.sql.query(self.sql.rw_port, f"SELECT id FROM {self.table}")}
        return [row for row, _ in self.acked if row not in present]

    def first_ack_on(self, address: str, after: float = 0.0) -> float | None:
        return next((t for row, t in self.acked
                     if t >= after and self.servers.get(row) == address), None)

    def late_acks(self, old: str, new: str) -> int:
        """Rows the server at address `old` acknowledged after the one at `new` had
        acknowledged its first: writes that reached a demoted primary. When the primary did
        not change (old == new): rows any other server acknowledged."""
        if old == new:
            return sum(1 for row, _ in self.acked if self.servers.get(row) != old)
        first_new = self.first_ack_on(new)
        if first_new is None:
            return 0
        return sum(1 for row, t in self.acked if t > first_new and self.servers.get(row) == old)

    def last_ack_before(self, t: float) -> float | None:
        return max((a for _, a in self.acked if a < t), default=None)

    def rto(self, t0: float) -> float:
        fail = next((t for t in self.failures if t >= t0), None)
        after = [t for _, t in self.acked if t >= t0]
        if fail is not None:
            ok = next((t for t in after if t > fail), None)
            return (ok - t0) if ok is not None else float("inf")
        times = [t0, *after]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
