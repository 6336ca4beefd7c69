"""`lab verify`: prove the backup repository restorable, without touching the cluster.

1. `pgbackrest verify`: every file of every backup and every WAL segment in the repository is
   read back and its checksum compared;
2. a copy restored on the repository node (a scratch folder under its root) to the target: the
   end of the archive (default), a time or a named restore point; started alone with no TCP
   listener, no WAL archiving (the copy's new timeline must never reach the repository) and no
   synchronous standby;
3. `pg_amcheck --all --heapallindexed --install-missing` on every database of the copy: each
   B-tree index checked against its table, every heap page checked; an optional query of the
   operator's on the copy (e.g. the rows of a dropped table, as of the target);
4. the copy stopped cleanly and `pg_checksums --check` over every data file (Patroni's
   bootstrap initialises the cluster with `data-checksums`, roles/db/templates/patroni.yml.j2);
5. the copy removed, also on failure.

Boundary: pgBackRest, pg_ctl, pg_amcheck, pg_checksums and psql run in the repository node's
namespace as postgres, with that node's pgbackrest.conf (`--reset-pg1-host`: the copy is local
there). On a real cluster the same steps run on a spare host with PostgreSQL installed
(docs/backup.md).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import TYPE_CHECKING, Any

from builder.core.errors import PghaError
from builder.lab import backup, restore

if TYPE_CHECKING:
    from builder.lab.lab import Lab

SCRATCH = "var/lib/pgha-verify"


def _settings(data: str, sock: str) -> str:
    """pg_ctl -o for the copy: alone, unreachable, never archiving into the repository."""
    return (f"-c listen_addresses='' -c unix_socket_directories='{sock}' "
            f"-c hba_file='{data}/pg_hba.conf' -c ident_file='{data}/pg_ident.conf' "
            "-c archive_mode=off -c ssl=off -c synchronous_standby_names=''")


def restore_copy(lab: Lab, node: str, base: str, kind: str, target: str | None) -> float:
    """`pgbackrest restore` of the stanza into base/data, started and promoted; seconds."""
    t0 = time.monotonic()
    data, log_file = f"{base}/data", f"{base}/postgres.log"
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(data, mode=0o700)
    for path in (base, data):
        shutil.chown(path, lab.layout.postgres_user, lab.layout.postgres_user)
    backup.pgbackrest(lab, "restore", f"--pg1-path={data}", "--reset-pg1-host",
                      *restore.target_args(kind, target), node=node)
    restore.run_pg(lab, node, "pg_ctl", "-D", data, "-l", log_file, "-w", "-t", "600", "-o",
           _settings(data, base), "start", check=False)
    restore.wait_promoted(lab, node, data, base, log_file,
                          after="the cluster was not touched; the copy is removed")
    return time.monotonic() - t0


def amcheck(lab: Lab, node: str, sock: str) -> dict[str, int]:
    """pg_amcheck over every database of the running copy: relations and pages checked."""
    code, out = restore.run_pg(lab, node, "pg_amcheck", "-h", sock, "-U",
                               lab.layout.postgres_user, "--all", "--install-missing", "--heapallindexed", "--progress",
                     check=False)
    if code != 0:
        raise PghaError(f"pg_amcheck found corruption in the restored copy (exit {code}): "
                        + " / ".join(out.strip().splitlines()[-3:]),
                        hint="the backup or the WAL it replays is damaged: take a new full "
                        "backup now and keep the repository for analysis")
    done = re.findall(r"(\d+)/\d+ relations \(100%\),\s+(\d+)/\d+ pages", out)
    relations, pages = (int(done[-1][0]), int(done[-1][1])) if done else (0, 0)
    return {"relations": relations, "pages": pages}


def verify(lab: Lab, kind: str = "latest", target: str | None = None,
           query: str | None = None) -> dict[str, Any]:
    """The five steps above; figures, and the query's rows (text lines) when one is given."""
    restore.target_args(kind, target)  # a bad target: an error before anything runs
    node = backup.repo_node(lab).name
    base = str(lab.node_dirs(node).root / SCRATCH)
    t0 = time.monotonic()
    backup.pgbackrest(lab, "verify")
    out: dict[str, Any] = {"node": node, "target": kind if target is None else
                           f"{kind} {target}", "verify_s": round(time.monotonic() - t0, 1)}
    try:
        out["restore_s"] = round(restore_copy(lab, node, base, kind, target), 1)
        if query is not None:
            _code, text = restore.run_pg(lab, node, "psql", "-h", base, "-U",
                                         lab.layout.postgres_user, "-d", "postgres", "-XAt",
                                         "-v", "ON_ERROR_STOP=1", "-c", query)
            out["rows"] = text.splitlines()
        t1 = time.monotonic()
        out["amcheck"] = amcheck(lab, node, base)
        restore.run_pg(lab, node, "pg_ctl", "-D", f"{base}/data", "-m", "fast", "-w", "stop")
        out["checksums"] = restore.checksums(lab, node, f"{base}/data")
        out["check_s"] = round(time.monotonic() - t1, 1)
    finally:
        drop_copy(lab, node, base)
    return out


def drop_copy(lab: Lab, node: str, base: str) -> None:
    """The copy stopped (if it still runs) and removed."""
    restore.run_pg(lab, node, "pg_ctl", "-D", f"{base}/data", "-m", "immediate", "-w", "stop",
           check=False)
    shutil.rmtree(base, ignore_errors=True)


def lines(done: dict[str, Any]) -> list[str]:
    """What `lab verify` prints."""
    am, ck = done["amcheck"], done["checksums"]
    out = [(f"pgbackrest verify: every backup file and WAL segment checks out "
            f"({done['verify_s']}s)"),
           f"restored a copy to {done['target']} on {done['node']} in {done['restore_s']}s",
           f"pg_amcheck: {am['relations']} relations, {am['pages']} pages, no corruption",
           (f"pg_checksums: {ck['files']} files, {ck['blocks']} blocks, {ck['bad']} bad "
            "checksums"),
           "the copy is removed; the cluster was not touched"]
    if "rows" in done:
        out[2:2] = ["query on the copy:", *(f"  {row}" for row in done["rows"])]
    return out
