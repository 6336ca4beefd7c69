"""The soak's clients: writers inserting unique ids through the read-write port and readers
asking the read-only port what each writer has written, every attempt recorded.

A write's outcome is "ok" (COMMIT returned), "error" (it certainly did not commit: no
connection, or the server refused the statement, e.g. a read-only server) or "unknown" (sent,
and then the connection broke or the attempt outlived its timeout: it may have committed).
An attempt that outlives `op_timeout` is ended by shutting its socket (an application timeout),
never by a query cancel: a cancel ends a wait for a synchronous standby with a warning and a
success, which would count a write as acknowledged that no standby has.

Each row carries who wrote it (writer, seq) and, from the server's own defaults, which server
and timeline committed it: the checker tells primaries apart with them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from builder.lab.health import Sql

TABLE = "pgha_soak"
ID_STRIDE = 1_000_000_000  # id = writer * ID_STRIDE + seq: unique without coordination
# SQLSTATEs that say the statement was not applied (anything else after sending: unknown).
# 53100 (disk_full) comes as an ERROR only before the commit record is written: a failed
# write of that record is a PANIC, the connection drops and the attempt is unknown.
NOT_APPLIED = {"25006", "57P03", "53300", "53100", "42P01", "40001", "40P01"}
SCHEMA = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
  id bigint NOT NULL,
  writer int NOT NULL,
  seq int NOT NULL,
  server inet DEFAULT inet_server_addr(),
  sysid bigint DEFAULT (pg_control_system()).system_identifier,
  tl int DEFAULT ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int,
  at timestamptz DEFAULT clock_timestamp());
CREATE INDEX ON {TABLE} (writer, seq);
"""


@dataclass
class Op:
    """One attempt: when (seconds since the run began), its outcome and what came back."""

    client: str
    start: float
    end: float = 0.0
    outcome: str = ""
    id: int = 0  # writes
    server: str = ""
    tl: int = 0
    seen: list[int] = field(default_factory=list)  # reads: each writer's highest seq
    error: str = ""


class Client:
    """One thread of attempts with one connection, reconnecting after any failure."""

    def __init__(self, sql: Sql, name: str, t0: float, op_timeout: float,
                 interval: float) -> None:
        self.sql, self.name, self.t0 = sql, name, t0
        self.op_timeout, self.interval = op_timeout, interval
        self.ops: list[Op] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"soak-{name}", daemon=True)
        self._conn: Any = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.op_timeout + 10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            op = Op(self.name, self.now())
            self.attempt(op)
            op.end = self.now()
            self.ops.append(op)
            if op.outcome != "ok":
                self._close()
                self._stop.wait(0.1)
            self._stop.wait(self.interval)
        self._close()

    def attempt(self, op: Op) -> None:
        raise NotImplementedError

    def _connect(self, port: int, op: Op) -> Any:
        if self._conn is None:
            try:
                self._conn = self.sql.connect(port, timeout=max(1, int(self.op_timeout)))
            except Exception as err:  # noqa: BLE001 - nothing was sent
                op.outcome, op.error = "error", _short(err)
                return None
        return self._conn

    def _execute(self, conn: Any, op: Op, query: str, args: tuple[Any, ...]) -> Any:
        """Run one statement under the attempt's timeout; None when it failed (op says how)."""
        timer = threading.Timer(self.op_timeout, _shutdown, (conn,))
        timer.start()
        try:
            with conn.cursor() as cur:
                cur.execute(query, args)
                return cur.fetchone()
        except Exception as err:  # noqa: BLE001 - classified below
            code = getattr(err, "pgcode", None)
            op.outcome = "error" if code in NOT_APPLIED else "unknown"
            why = "timeout" if timer.finished.is_set() else (code or "connection")
            op.error = f"{why}: {_short(err)}"
            return None
        finally:
            timer.cancel()

    def _close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None


class Writer(Client):
    def __init__(self, sql: Sql, index: int, t0: float, op_timeout: float = 10,
                 interval: float = 0.02) -> None:
        super().__init__(sql, f"w{index}", t0, op_timeout, interval)
        self.index = index
        self.seq = 0

    def attempt(self, op: Op) -> None:
        self.seq += 1
        op.id = self.index * ID_STRIDE + self.seq
        conn = self._connect(self.sql.rw_port, op)
        if conn is None:
            return
        row = self._execute(conn, op, f"INSERT INTO {TABLE} (id, writer, seq) VALUES "
                            "(%s, %s, %s) RETURNING host(server), tl",
                            (op.id, self.index, self.seq))
        if row is not None:
            op.outcome, op.server, op.tl = "ok", str(row[0]), int(row[1])


class Reader(Client):
    def __init__(self, sql: Sql, index: int, writers: int, t0: float, op_timeout: float = 10,
                 interval: float = 0.05) -> None:
        super().__init__(sql, f"r{index}", t0, op_timeout, interval)
        self.writers = writers

    def attempt(self, op: Op) -> None:
        conn = self._connect(self.sql.ro_port, op)
        if conn is None:
            return
        row = self._execute(conn, op, "SELECT host(inet_server_addr()), array(SELECT coalesce("
                            f"(SELECT max(seq) FROM {TABLE} WHERE writer = w), 0) FROM "
                            "generate_series(0, %s) w ORDER BY w)", (self.writers - 1,))
        if row is not None:
            op.outcome, op.server, op.seen = "ok", str(row[0]), [int(s) for s in row[1]]


def _shutdown(conn: Any) -> None:
    """End a hung attempt from outside: shut the connection's socket down (libpq then fails
    the statement at once); the Client closes the connection afterwards."""
    with contextlib.suppress(Exception):
        fd = os.dup(conn.fileno())
        with socket.socket(fileno=fd) as sock:
            sock.shutdown(socket.SHUT_RDWR)


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:160]


def setup(sql: Sql) -> None:
    sql.query(sql.rw_port, SCHEMA)


def final_rows(sql: Sql) -> list[tuple[int, int, int, str, int, int]]:
    """Every row on the primary now: (id, writer, seq, server, system id, timeline)."""
    rows = sql.query(sql.rw_port, f"SELECT id, writer, seq, host(server), sysid, tl FROM {TABLE}")
    return [(int(r[0]), int(r[1]), int(r[2]), str(r[3]), int(r[4]), int(r[5])) for r in rows]


def replica_rows(sql: Sql, replicas: list[str], want: tuple[int, int],
                 timeout: float) -> dict[str, tuple[int, int]]:
    """(rows, sum of ids) of each replica in `replicas` (addresses), asked through the
    read-only port (new connection each time, so the balancer spreads them) until every one
    has `want` (the primary's) or `timeout` passes; a replica never reached is left out."""
    seen: dict[str, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            row = sql.query(sql.ro_port, "SELECT host(inet_server_addr()), count(*), "
                            f"coalesce(sum(id), 0) FROM {TABLE}")[0]
            seen[str(row[0])] = (int(row[1]), int(row[2]))
        if all(seen.get(r) == want for r in replicas):
            break
        time.sleep(0.2)
    return seen
