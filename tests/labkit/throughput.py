"""Read throughput of the client paths into the lab, with pgbench -S (select only), for the
benchmark: how much the host's path (127.0.0.1 forwarded to the VIP) costs against a client
inside a namespace going through HAProxy on the VIP, and against PostgreSQL directly.

pgbench is PostgreSQL's own (Debian postgresql-15: <pg_bin_dir>/pgbench). The password goes in
PGPASSWORD of pgbench's environment only. Addresses are lab addresses, checked with the route
check before anything is sent from the root namespace.
"""

from __future__ import annotations

import re
from pathlib import Path

from builder.core.errors import PghaError
from builder.lab import net
from builder.lab.lab import HOST, Lab
from builder.lab.status import leader

CLIENTS = 8
TPS = re.compile(rb"tps = ([0-9.]+) \(without initial connection time\)")


def _pgbench(lab: Lab) -> str:
    exe = Path(lab.layout.pg_bin_dir) / "pgbench"
    if not exe.is_file():
        raise PghaError(f"pgbench not found at {exe}", hint="apt-get install postgresql-15")
    return str(exe)


def _env(lab: Lab) -> dict[str, str]:
    su = lab.secrets().superuser
    return {"PGPASSWORD": su.password, "PGUSER": su.username, "PGDATABASE": "postgres",
            "PGCONNECT_TIMEOUT": "5"}


def init(lab: Lab, scale: int = 1) -> None:
    """pgbench's tables on the primary, through the host path."""
    lab.runner.run([_pgbench(lab), "-i", "-q", "-s", str(scale), "-h", HOST,
                    "-p", str(lab.ports()["rw"])], env=_env(lab), timeout=120)


def tps(lab: Lab, host: str, port: int, seconds: int, netns: str | None = None) -> float:
    """pgbench -S with CLIENTS clients for `seconds` against host:port (from `netns` if given)."""
    argv = [_pgbench(lab), "-S", "-n", "-c", str(CLIENTS), "-j", "2", "-T", str(seconds),
            "-h", host, "-p", str(port)]
    if netns is None and host != HOST:
        net.assert_local_route(lab.runner, lab.net, host)
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    proc = lab.runner.run(argv, env=_env(lab), timeout=seconds + 60)
    found = TPS.search(proc.stdout)
    if not found:
        raise PghaError(f"pgbench printed no tps: {proc.stdout.decode()[-300:]}")
    return float(found.group(1))


def paths(lab: Lab, seconds: int = 10) -> dict[str, float]:
    """tps of the three paths: the host (127.0.0.1 -> VIP -> HAProxy -> primary), a client in
    a namespace (a replica's, -> VIP -> HAProxy -> primary) and direct to the primary."""
    primary = leader(lab)
    if primary is None:
        raise PghaError("no leader to measure against", hint="see `pgha-build lab status`")
    client = next(n for n in lab.db_nodes if n.name != primary)
    rw = lab.ports()["rw"]
    init(lab)
    return {
        "host": tps(lab, HOST, rw, seconds),
        "namespace": tps(lab, lab.entry, rw, seconds, netns=client.netns),
        "direct": tps(lab, lab.net.node(primary).address, lab.cluster.ports.postgres, seconds),
    }
