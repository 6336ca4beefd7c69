"""Clients of the running lab: SQL through the relays on 127.0.0.1, HTTP to Patroni's REST API.

SQL uses psycopg2 (PyPI psycopg2-binary, or Debian python3-psycopg2). HTTP goes only to lab
addresses, after `net.assert_local_route` (see Endpoints.rest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from builder.core.errors import PghaError
from builder.core.http import http, tls_context  # noqa: F401 - the lab's clients use them from here

PROBE_TABLE = "pgha_lab_probe"
# The TCP settings docs/vip.md tells clients to use: a connection whose load balancer died or
# hung without a reset (the VIP moved away under it) fails within seconds, not hours.
CLIENT_TCP = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
              "keepalives_count": 3, "tcp_user_timeout": 10000}


def psycopg2() -> Any:
    try:
        import psycopg2 as mod
    except ImportError:
        raise PghaError("the lab needs psycopg2 for its SQL checks",
                        hint="pip install psycopg2-binary (or apt-get install python3-psycopg2)"
                        ) from None
    return mod


@dataclass(frozen=True)
class Sql:
    """Where and how to reach PostgreSQL through the load balancer, from the host."""

    host: str
    rw_port: int
    ro_port: int
    user: str
    password: str
    # With TLS: the server name the certificate must carry (the cluster's service name) and
    # the CA. libpq connects to `host` as hostaddr and verifies the certificate against
    # server_name (sslmode=verify-full), as a client connecting by that name would.
    server_name: str | None = None
    sslrootcert: str | None = None

    def dsn(self, port: int) -> dict[str, Any]:
        """libpq connection parameters (no password)."""
        if self.sslrootcert is None:
            return {"host": self.host, "port": port, "user": self.user, "dbname": "postgres"}
        return {"host": self.server_name, "hostaddr": self.host, "port": port,
                "user": self.user, "dbname": "postgres", "sslmode": "verify-full",
                "sslrootcert": self.sslrootcert}

    def connect(self, port: int, timeout: int = 2) -> Any:
        conn = psycopg2().connect(**self.dsn(port), password=self.password,
                                  connect_timeout=timeout, application_name="pgha-lab",
                                  **CLIENT_TCP)
        conn.autocommit = True
        return conn

    def query(self, port: int, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect(port)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    def can_write(self) -> bool:
        try:
            rows = self.query(self.rw_port,
                              f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} (t timestamptz); "
                              f"INSERT INTO {PROBE_TABLE} VALUES (now()); "
                              "SELECT pg_is_in_recovery()")
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        return rows == [(False,)]

    def can_read(self) -> bool:
        try:
            return self.query(self.ro_port, "SELECT pg_is_in_recovery()") == [(True,)]
        except Exception:  # noqa: BLE001
            return False


def wait_until(what: str, check: Any, timeout: float, interval: float = 0.2) -> float:
    """Poll `check()` until true; return the seconds waited, or raise after `timeout`."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise PghaError(f"timed out after {timeout:.0f}s waiting for {what}",
                            hint="see `pgha-build lab status` and the logs under "
                                 "/var/lib/pgha-lab/<cluster>/<node>/root/var/log/pgha/")
        time.sleep(interval)
