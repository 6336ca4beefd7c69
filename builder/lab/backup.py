"""Backups in the lab: pgBackRest on the repository node, as its systemd timers run it.

Boundary: runs `pgbackrest` inside the repository node's namespace as postgres, with that
node's own pgbackrest.conf (the one its seed carries), and reads the WAL archive's state from
the primary's pg_stat_archiver. The TLS servers (repository node and db nodes) are started by
each node's agent like any other role service. `lab up` creates the stanza; `lab backup`,
`lab status` and `lab restore` (builder.lab.restore) use the functions here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.core.errors import PghaError
from builder.lab.net import NodeNet
from builder.model import backup as backupmodel
from builder.model import roles

if TYPE_CHECKING:
    from builder.lab.lab import Lab

TYPES = ("full", "diff", "incr")


def enabled(lab: Lab) -> bool:
    return backupmodel.enabled(lab.cluster)


def repo_node(lab: Lab) -> NodeNet:
    found = roles.nodes_with(lab.cluster.nodes, "backup_repo")
    if not found or not enabled(lab):
        raise PghaError(f"lab '{lab.cluster.name}' has no backups",
                        hint="give a node the backup role (the reference cluster has it on lb1)")
    return lab.net.node(found[0].name)


# The folder the postgres-user commands start in: the caller's (a clone under /root, mode
# 0700) is not postgres's to enter, and psql/pgbackrest would add a warning to their output.
POSTGRES_CWD = Path("/")


def as_postgres(lab: Lab, node: str, argv: list[str]) -> list[str]:
    """argv run in the node's namespace as the postgres user (what systemd's User= does)."""
    user = lab.layout.postgres_user
    return ["ip", "netns", "exec", lab.net.node(node).netns, "setpriv", f"--reuid={user}",
            f"--regid={user}", "--init-groups", "--reset-env", *argv]


def config_of(lab: Lab, node: str) -> str:
    return str(lab.node_dirs(node).root / lab.layout.pgbackrest_config.lstrip("/"))


def pgbackrest(lab: Lab, *args: str, node: str | None = None, check: bool = True) -> str:
    """`pgbackrest --stanza=S ARGS` on the repository node (or `node`); its stdout."""
    name = node or repo_node(lab).name
    argv = [lab.layout.pgbackrest_bin, f"--config={config_of(lab, name)}",
            f"--stanza={backupmodel.stanza(lab.cluster)}", "--log-level-console=warn", *args]
    proc = lab.runner.run(as_postgres(lab, name, argv), check=check, cwd=POSTGRES_CWD)
    return proc.stdout.decode(errors="replace")


def stanza_create(lab: Lab) -> None:
    """The stanza (idempotent) and a check that WAL reaches the repository."""
    pgbackrest(lab, "stanza-create")
    pgbackrest(lab, "check")


def run_backup(lab: Lab, kind: str = "full", *options: str) -> dict[str, Any]:
    """One backup of whichever node is the primary (`options` over the configuration's, e.g.
    --process-max=4 for the bench); returns it as `info` describes it."""
    if kind not in TYPES:
        raise PghaError(f"unknown backup type {kind!r}", hint=f"one of {', '.join(TYPES)}")
    pgbackrest(lab, "backup", f"--type={kind}", *options)
    last = last_backup(lab)
    if last is None:
        raise PghaError("pgbackrest reported success but info lists no backup",
                        hint="see the repository node's root/var/log/pgbackrest/")
    return last


# A restore point's name: PostgreSQL keeps up to 63 bytes; this keeps it one word that every
# shell, log and `--target=` reads the same.
POINT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,62}")


def restore_point(lab: Lab, name: str) -> str:
    """A named restore point on the primary (pg_create_restore_point), then `pgbackrest check`:
    the WAL switch archives it at once, so `lab restore --name NAME` can reach it. Its LSN."""
    if not POINT_RE.fullmatch(name):
        raise PghaError(f"bad restore point name {name!r}",
                        hint="1-63 letters, digits and . _ : - (e.g. before-migration-42)")
    rows = lab.sql().query(lab.ports()["rw"], "SELECT pg_create_restore_point(%s)::text",
                           (name,))
    pgbackrest(lab, "check")
    return str(rows[0][0])


def info(lab: Lab) -> dict[str, Any]:
    data = json.loads(pgbackrest(lab, "info", "--output=json") or "[]")
    return data[0] if data else {}


def last_backup(lab: Lab, stanza_info: dict[str, Any] | None = None) -> dict[str, Any] | None:
    backups = (stanza_info if stanza_info is not None else info(lab)).get("backup") or []
    if not backups:
        return None
    b = backups[-1]
    return {"label": b["label"], "type": b["type"], "start": b["timestamp"]["start"],
            "stop": b["timestamp"]["stop"], "size": b["info"]["size"],
            "repo_size": b["info"]["repository"]["delta"],
            "wal_start": b["archive"]["start"], "wal_stop": b["archive"]["stop"]}


def archiver(lab: Lab) -> dict[str, Any]:
    """The primary's pg_stat_archiver (through the read-write port)."""
    rows = lab.sql().query(lab.ports()["rw"], (
        "SELECT archived_count, last_archived_wal, "
        "extract(epoch FROM last_archived_time)::float8, failed_count, last_failed_wal, "
        "extract(epoch FROM now() - last_archived_time)::float8 FROM pg_stat_archiver"))
    n, wal, when, failed, failed_wal, age = rows[0]
    return {"archived_count": n, "last_archived_wal": wal, "last_archived_time": when,
            "failed_count": failed, "last_failed_wal": failed_wal, "age_s": age}


def status(lab: Lab) -> dict[str, Any] | None:
    """What `lab status` shows: the last backup and the archive's state (None: no backups)."""
    if not enabled(lab):
        return None
    try:
        stanza = info(lab)
        out: dict[str, Any] = {"repository": repo_node(lab).name,
                               "status": (stanza.get("status") or {}).get("message"),
                               "last_backup": last_backup(lab, stanza),
                               "backups": len(stanza.get("backup") or []),
                               "wal_min_max": _wal_range(stanza)}
    except PghaError as exc:
        out = {"repository": repo_node(lab).name, "error": str(exc).splitlines()[0]}
    try:
        out["archiver"] = archiver(lab)
    except Exception as exc:  # noqa: BLE001  (a primary may be gone: status still answers)
        out["archiver"] = {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return out


def _wal_range(stanza: dict[str, Any]) -> list[str] | None:
    for archive in stanza.get("archive") or []:
        if archive.get("min"):
            return [archive["min"], archive["max"]]
    return None


def lines(data: dict[str, Any] | None) -> list[str]:
    """`lab status` lines for the backup section."""
    if data is None:
        return ["backups: off (no node has the backup role)"]
    if "error" in data:
        return [f"backups: repository on {data['repository']}: {data['error']}"]
    last = data["last_backup"]
    out = [(f"backups: repository on {data['repository']}, stanza {data['status']}, "
            f"{data['backups']} backup(s)")]
    out.append("  last backup: none yet (pgha-build lab backup)" if last is None else
               f"  last backup: {last['label']} ({last['type']}), finished "
               f"{_when(last['stop'])}, {last['size'] / 1e6:.1f} MB "
               f"({last['repo_size'] / 1e6:.1f} MB in the repository)")
    if data.get("wal_min_max"):
        out.append(f"  WAL archive: {data['wal_min_max'][0]} .. {data['wal_min_max'][1]}")
    arch = data.get("archiver") or {}
    if "error" in arch:
        out.append(f"  archiver: {arch['error']}")
    else:
        age = "" if arch["age_s"] is None else f", {arch['age_s']:.0f} s ago"
        out.append(f"  archiver: {arch['archived_count']} archived, last "
                   f"{arch['last_archived_wal'] or '-'}{age}; {arch['failed_count']} failed"
                   + (f" (last {arch['last_failed_wal']})" if arch["failed_count"] else ""))
    return out


def _when(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
