"""The cluster file's dynamic settings against a running cluster's (GET /config), the
difference as PATCH /config wants it, and applying it: what `patronictl edit-config` does.

What the cluster file renders into bootstrap.dcs (stages/dcs.py) is the wanted state. A managed
key whose value differs is changed; a PostgreSQL parameter the running cluster has and the file
no longer lists is deleted (null in the PATCH: Patroni then uses PostgreSQL's default); keys
the file does not manage at all (e.g. set by hand with patronictl) are kept and listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from builder.model.cluster import Cluster
from builder.ops.target import Target
from builder.stages import dcs

# PostgreSQL parameters with context "postmaster": a change takes effect only after a restart
# (PostgreSQL 15's `postgres --describe-config`; Patroni reports the truth per member as
# pending_restart once the change is applied).
_POSTMASTER = """
archive_mode autovacuum_freeze_max_age autovacuum_max_workers
autovacuum_multixact_freeze_max_age bonjour bonjour_name cluster_name data_directory
data_sync_retry dynamic_shared_memory_type event_source external_pid_file hba_file hot_standby
huge_page_size huge_pages ident_file jit_provider listen_addresses logging_collector
max_connections max_files_per_process max_locks_per_transaction max_logical_replication_workers
max_pred_locks_per_transaction max_prepared_transactions max_replication_slots max_wal_senders
max_worker_processes min_dynamic_shared_memory old_snapshot_threshold port recovery_target
recovery_target_action recovery_target_inclusive recovery_target_lsn recovery_target_name
recovery_target_time recovery_target_timeline recovery_target_xid shared_buffers
shared_memory_type shared_preload_libraries superuser_reserved_connections
track_activity_query_size track_commit_timestamp unix_socket_directories unix_socket_group
unix_socket_permissions wal_buffers wal_decode_buffer_size wal_level wal_log_hints
"""
RESTART_PARAMETERS = frozenset(_POSTMASTER.split())
PARAMETERS = ("postgresql", "parameters")
_ABSENT = object()


@dataclass(frozen=True)
class Change:
    path: tuple[str, ...]
    old: Any  # _ABSENT: not set on the running cluster
    new: Any  # _ABSENT: delete (null in the PATCH)

    @property
    def key(self) -> str:
        return ".".join(self.path)

    @property
    def needs_restart(self) -> bool:
        return self.path[:2] == PARAMETERS and self.path[-1] in RESTART_PARAMETERS

    def line(self) -> str:
        if self.old is _ABSENT:
            text = f"+ {self.key}: {_show(self.new)}"
        elif self.new is _ABSENT:
            text = f"- {self.key}: {_show(self.old)} (removed: PostgreSQL's default)"
        else:
            text = f"~ {self.key}: {_show(self.old)} -> {_show(self.new)}"
        return text + ("   [needs a restart]" if self.needs_restart else "")


@dataclass(frozen=True)
class Diff:
    changes: list[Change]
    unmanaged: list[str]  # running keys the cluster file does not manage (kept)

    def patch(self) -> dict[str, Any]:
        """The PATCH /config body: nested changes, null for deletions."""
        body: dict[str, Any] = {}
        for c in self.changes:
            node = body
            for part in c.path[:-1]:
                node = node.setdefault(part, {})
            node[c.path[-1]] = None if c.new is _ABSENT else c.new
        return body

    def restart_keys(self) -> list[str]:
        return [c.path[-1] for c in self.changes if c.needs_restart]


def _show(value: Any) -> str:
    return json.dumps(value)


def _same(path: tuple[str, ...], old: Any, new: Any) -> bool:
    """PostgreSQL parameters compare as PostgreSQL reads them (100 == "100", true == "on")."""
    if path[:2] == PARAMETERS:
        return _guc(old) == _guc(new)
    return bool(old == new and type(old) is type(new))


def _guc(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip().lower()


def compare(current: dict[str, Any], wanted: dict[str, Any]) -> Diff:
    changes: list[Change] = []
    unmanaged: list[str] = []
    _walk((), current, wanted, changes, unmanaged)
    return Diff(changes, unmanaged)


def _walk(path: tuple[str, ...], current: dict[str, Any], wanted: dict[str, Any],
          changes: list[Change], unmanaged: list[str]) -> None:
    for key, new in wanted.items():
        here = (*path, key)
        old = current.get(key, _ABSENT)
        if isinstance(new, dict) and isinstance(old, dict):
            _walk(here, old, new, changes, unmanaged)
        elif old is _ABSENT or not _same(here, old, new):
            changes.append(Change(here, old, new))
    for key in sorted(set(current) - set(wanted)):
        here = (*path, key)
        if path == PARAMETERS:
            changes.append(Change(here, current[key], _ABSENT))
        else:
            unmanaged.append(".".join(here))


def diff(cluster: Cluster, target: Target) -> tuple[Diff, dict[str, Any]]:
    """The difference between the cluster file and the running cluster, and GET /config."""
    _name, current = target.first("GET", "/config")
    return compare(current, dcs.dynamic_config(cluster)), current


def apply(target: Target, d: Diff) -> dict[str, Any]:
    """PATCH /config with the difference; returns the configuration Patroni now holds."""
    _name, answer = target.first("PATCH", "/config", d.patch(), timeout=10)
    return answer if isinstance(answer, dict) else {}


def report(d: Diff) -> list[str]:
    """The difference for people, one line per change."""
    if not d.changes:
        lines = ["the running cluster's dynamic configuration matches the cluster file"]
    else:
        lines = [c.line() for c in d.changes]
    if d.unmanaged:
        lines.append("kept (not set by the cluster file): " + ", ".join(d.unmanaged))
    return lines
