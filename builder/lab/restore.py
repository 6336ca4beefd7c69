"""`lab restore`: a point-in-time restore of the whole cluster from the pgBackRest repository.

The steps are the runbook of docs/backup.md, as commands on the lab's nodes:
1. if a primary still answers, `pgbackrest check` (switches WAL: what was written is archived);
2. Patroni stopped on every database node (it stops PostgreSQL) and its DCS state removed
   (`patronictl remove`), so nothing promotes or clones while the data is replaced;
3. on one node: its data directory moved aside, `pgbackrest restore` to the target (a time, a
   named restore point, or the end of the archive), PostgreSQL started alone to replay and
   promote, its recovery settings reset, stopped cleanly;
4. Patroni started there: it initialises the DCS from the restored data and leads;
5. a full backup of the new timeline (the old timeline's backups cannot seed its replicas);
6. the other nodes' data removed and their Patroni started: each is restored from that backup
   (create_replica_methods: pgbackrest) and streams.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from typing import TYPE_CHECKING, Any

from builder.core.errors import PghaError
from builder.core.log import log
from builder.lab import backup, faults, nodes
from builder.lab import lab as labmod
from builder.lab.health import wait_until
from builder.lab.readiness import leader

if TYPE_CHECKING:
    from builder.lab.lab import Lab


def _data_dir(lab: Lab, name: str) -> str:
    return str(lab.node_dirs(name).root / lab.layout.pg_data_dir.lstrip("/"))


def _socket(lab: Lab, name: str) -> str:
    return str(lab.node_dirs(name).root / lab.layout.pg_socket_dir.lstrip("/"))


def stop_patroni(lab: Lab, names: list[str], timeout: float = 90) -> None:
    """SIGTERM every Patroni at once (each stops its PostgreSQL); wait until both are gone."""
    for name in names:
        for pid in faults.pids_matching(lab, name, "patroni"):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def gone() -> bool:
        return not any(faults.pids_matching(lab, n, needle)
                       for n in names for needle in ("patroni", "postgres:", "bin/postgres"))

    wait_until("Patroni and PostgreSQL stopped on every database node", gone, timeout)


def clear_dcs(lab: Lab, name: str) -> None:
    """`patronictl remove <scope>` (it asks for the name and a confirmation)."""
    dirs = lab.node_dirs(name)
    config = dirs.root / lab.layout.patroni_config.lstrip("/")
    exe = os.path.join(os.path.dirname(lab.layout.patroni_bin), "patronictl")
    scope = lab.cluster.name
    lab.runner.run(["ip", "netns", "exec", lab.net.node(name).netns, exe, "-c", str(config),
                    "remove", scope], input=f"{scope}\nYes I am aware\n".encode(), check=False)


def _pg(lab: Lab, name: str, *args: str, check: bool = True) -> str:
    exe = os.path.join(lab.layout.pg_bin_dir, args[0])
    proc = lab.runner.run(backup.as_postgres(lab, name, [exe, *args[1:]]), check=check,
                          cwd=backup.POSTGRES_CWD)
    return proc.stdout.decode(errors="replace")


KINDS = ("time", "name", "latest")


def target_args(kind: str, target: str | None) -> list[str]:
    """pgBackRest restore options for a target: a time ('2026-12-03 17:00:00+00'), a named
    restore point (pg_create_restore_point), or the end of the archive (latest)."""
    if kind not in KINDS:
        raise PghaError(f"unknown restore target kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    if kind == "latest":
        return []
    if not target:
        raise PghaError(f"a restore to a {kind} needs its value", hint="--time T or --name NAME")
    return [f"--type={kind}", f"--target={target}", "--target-action=promote"]


def restore_node(lab: Lab, name: str, target: str | None, kind: str = "time") -> None:
    """Steps 3: restore, replay to the target, promote, reset the recovery settings, stop."""
    args = ["restore", *target_args("latest" if target is None else kind, target)]
    data = _data_dir(lab, name)
    aside = data + ".before-restore"
    shutil.rmtree(aside, ignore_errors=True)
    if os.path.exists(data):
        os.rename(data, aside)
    os.makedirs(data, mode=0o700)
    shutil.chown(data, lab.layout.postgres_user, lab.layout.postgres_user)
    backup.pgbackrest(lab, *args, node=name)
    log_file = str(lab.node_dirs(name).root / lab.layout.pgbackrest_log.lstrip("/")
                   / "restore-postgres.log")
    sock = _socket(lab, name)
    _pg(lab, name, "pg_ctl", "-D", data, "-l", log_file, "-w", "-t", "600", "-o",
        _local_settings(lab, name, data, sock), "start", check=False)
    wait_promoted(lab, name, data, sock, log_file)
    _pg(lab, name, "psql", "-h", sock, "-U", lab.layout.postgres_user, "-d", "postgres",
        "-XAtc", "ALTER SYSTEM RESET ALL")  # pgBackRest's restore_command and target
    _pg(lab, name, "pg_ctl", "-D", data, "-m", "fast", "-w", "stop")


def wait_promoted(lab: Lab, name: str, data: str, sock: str, log_file: str,
                  timeout: float = 600, after: str | None = None) -> None:
    """Until the restored copy left recovery; a clear error when PostgreSQL stopped instead
    (a target the archive does not reach: PostgreSQL refuses to open short of it)."""
    def promoted() -> bool:
        if "server is running" not in _pg(lab, name, "pg_ctl", "-D", data, "status",
                                          check=False):
            tail = _tail(log_file, 3)
            raise PghaError(f"{name}: PostgreSQL stopped while recovering to the target: {tail}",
                            hint="check the target (time zone, restore point name: `pgbackrest "
                            "info`); " + (after or "the data from before the restore is in "
                                          f"{data}.before-restore; run the restore again"))
        out = _pg(lab, name, "psql", "-h", sock, "-U", lab.layout.postgres_user, "-d",
                  "postgres", "-XAtc", "SELECT pg_is_in_recovery()", check=False)
        return out.strip() == "f"

    wait_until(f"{name}: recovery to the target and promotion", promoted, timeout, 0.5)


def _tail(path: str, n: int) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f if "FATAL" in ln or "LOG:  recovery" in ln]
    except OSError:
        return "(no log)"
    return " / ".join(lines[-n:]) or "(nothing logged)"


def _local_settings(lab: Lab, name: str, data: str, sock: str) -> str:
    """pg_ctl -o: this node's own settings over the restored postgresql.conf (the primary's at
    backup time: on real nodes the same paths; in the lab each node's are under its folder),
    and no TCP listener, so no client reaches the database before Patroni leads it."""
    conf = backup.config_of(lab, name)
    push = (f"{lab.layout.pgbackrest_bin} --config={conf} "
            f"--stanza={backup.backupmodel.stanza(lab.cluster)} archive-push %p")
    return (f"-c listen_addresses='' -c unix_socket_directories='{sock}' "
            f"-c hba_file='{data}/pg_hba.conf' -c ident_file='{data}/pg_ident.conf' "
            f"-c archive_command='{push}'")


def run_pg(lab: Lab, node: str, *argv: str, check: bool = True) -> tuple[int, str]:
    """A PostgreSQL program (from the lab's bin dir) as postgres on `node`: exit code, output."""
    exe = f"{lab.layout.pg_bin_dir}/{argv[0]}"
    # from /: the caller's folder (a clone under /root, mode 0700) is not postgres's to enter,
    # and psql would add "could not change directory" to the output parsed here
    proc = lab.runner.run(backup.as_postgres(lab, node, [exe, *argv[1:]]), check=check,
                          cwd=backup.POSTGRES_CWD)
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    return proc.returncode, out


def checksums(lab: Lab, node: str, data: str) -> dict[str, int]:
    """pg_checksums --check over the stopped copy: files and blocks read, bad checksums."""
    code, out = run_pg(lab, node, "pg_checksums", "--check", "-D", data, check=False)
    found = {k: int(v) for k, v in re.findall(r"(Files scanned|Blocks scanned|Bad checksums):"
                                             r"\s+(\d+)", out)}
    if code != 0 or found.get("Bad checksums", 1) != 0:
        raise PghaError("pg_checksums failed on the restored copy: "
                        + " / ".join(out.strip().splitlines()[-3:]),
                        hint="data checksums must be on (initdb --data-checksums) and every "
                        "block valid: take a new full backup and keep the repository")
    return {"files": found.get("Files scanned", 0), "blocks": found.get("Blocks scanned", 0),
            "bad": found["Bad checksums"]}


def restore(lab: Lab, target: str | None, timeout: float = 300,
            kind: str = "time") -> dict[str, Any]:
    """The whole cluster back to `target`: a time pgBackRest reads (kind "time", e.g.
    '2026-12-03 17:00:00+00'), a named restore point (kind "name"), or the end of the WAL
    archive (None). Returns timings and the node that was restored."""
    target_args("latest" if target is None else kind, target)  # a bad target stops nothing
    repo = backup.repo_node(lab)
    dbs = [n.name for n in lab.db_nodes]
    t0 = time.monotonic()
    if leader(lab) is None:  # pgBackRest would wait for the lost nodes' timeouts
        log.warning("no primary to switch WAL from: restoring what the archive holds")
    else:
        try:
            backup.pgbackrest(lab, "check")  # the WAL written so far reaches the archive
        except PghaError as exc:
            log.warning("no WAL switch archived (%s): restoring what the archive holds",
                        str(exc).splitlines()[0])
    stop_patroni(lab, dbs)
    clear_dcs(lab, dbs[0])
    first = dbs[0]
    restore_node(lab, first, target, kind)
    checked = checksums(lab, first, _data_dir(lab, first))  # before it goes live
    t_restored = time.monotonic()
    nodes.boot(labmod.PYTHON, lab.node_dirs(first), lab.net.node(first).netns, timeout)
    wait_until(f"{first} leading the restored cluster", lambda: leader(lab) == first, timeout)
    wait_until("writes on the restored primary", lab.sql().can_write, timeout)
    t_leader = time.monotonic()
    full = backup.run_backup(lab, "full")
    for name in dbs[1:]:
        shutil.rmtree(_data_dir(lab, name), ignore_errors=True)
    labmod.up(lab, dbs[1:], timeout=timeout)
    t_ready = time.monotonic()
    return {"node": first, "repository": repo.name,
            "target": "latest" if target is None else f"{kind} {target}", "checksums": checked,
            "restore_s": round(t_restored - t0, 1), "leader_s": round(t_leader - t0, 1),
            "backup": full["label"], "ready_s": round(t_ready - t0, 1)}
