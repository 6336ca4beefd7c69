"""The `backup:` section: pgBackRest repository, retention, schedules and encryption.

Where backups go: the node(s) whose role has the `backup_repo` capability (the `backup` role: a
VM of its own, or sharing one such as the load balancer). The repository host reaches the
database nodes, and they reach it, over pgBackRest's TLS server with certificates from the
cluster CA (no SSH keys). Backups run on the repository host against whichever node is the
primary (pgBackRest finds it among pg1..pgN), or from a replica with `from_standby`.

Backups are on when a repository exists (`enabled` unset) and TLS is on; `rules` below reports
what cannot work. This module holds no I/O.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from builder.model.types import _bounded, _pattern, _schema

# A systemd OnCalendar expression (systemd.time(7)): the characters its grammar uses, no '%'
# (unit specifiers), no quotes, no newline. `check --deep` and the tests run
# `systemd-analyze calendar` on it.
CALENDAR_RE = r"[A-Za-z0-9*,./:~-]([A-Za-z0-9*,./:~ -]{0,62}[A-Za-z0-9*,./:~-])?"
Calendar = Annotated[str, _bounded(64, "the schedule"), _schema(CALENDAR_RE), _pattern(
    CALENDAR_RE, "a systemd OnCalendar expression (e.g. 'Sun *-*-* 01:00:00', 'daily')")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Retention(_Strict):
    full: int = Field(default=2, ge=1, le=100,
                      description="full backups kept (with the WAL that makes each restorable: "
                                  "the oldest point you can restore to is the oldest full)")
    diff: int = Field(default=7, ge=1, le=365,
                      description="differential backups kept (older ones expire first)")


class Schedule(_Strict):
    """systemd timers on the repository host (OnCalendar, the host's time zone)."""

    full: Calendar = Field(default="Sun *-*-* 01:00:00", description="full backups")
    diff: Calendar = Field(default="Mon..Sat *-*-* 01:00:00",
                           description="differential backups")


class Backup(_Strict):
    enabled: bool | None = Field(
        default=None, description="unset: on when a node has the backup role and TLS is on")
    stanza: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9-]{0,31}$",
                               description="pgBackRest stanza; default: the cluster name")
    retention: Retention = Field(default_factory=Retention)
    schedule: Schedule = Field(default_factory=Schedule)
    encryption: bool = Field(
        default=True, description="aes-256-cbc repository encryption; the passphrase is "
        "generated into secrets.yaml and only the repository host's seed carries it")
    archive_timeout: int = Field(
        default=60, ge=0, le=3600,
        description="seconds: a WAL segment is archived at least this often while there are "
                    "writes: the most a site loss can lose (RPO), 0 = only full segments")
    from_standby: bool = Field(default=False,
                               description="copy files from a replica (the primary still "
                                           "starts and stops the backup)")
    compress_type: Literal["lz4", "zst", "gz", "none"] = Field(
        default="lz4", description="lz4: fastest (default); zst: smaller, more CPU")
    process_max: int = Field(default=2, ge=1, le=32,
                             description="parallel processes for backup and restore")


def backup_rules(c: Any, report: Any) -> None:
    """Cross-field rules of `backup:` (called from model.rules.check)."""
    from builder.model import roles

    b = c.backup
    repos = roles.nodes_with(c.nodes, "backup_repo")
    if b.enabled and not c.tls.enabled:
        report.error("backup.enabled", "pgBackRest's TLS server needs the cluster's TLS "
                     "(tls.enabled): turn TLS on or backups off")
    if b.enabled and not repos:
        report.error("backup.enabled", "no node has a role with a backup repository: add "
                     "the backup role to a node (its own VM, or e.g. the load balancer)")
    if len(repos) > 1:
        report.error("nodes", "more than one node has the backup role "
                     f"({', '.join(n.name for n in repos)}): one repository host per cluster")
    if not enabled(c):
        if b.enabled is None and c.load_balancer.kind == "f5":
            report.warn("backup", "no backups: with an F5 BIG-IP the repository needs a node "
                        "of its own; give one the backup role")
        elif b.enabled is None:
            report.warn("backup", "no backups: no node has the backup role (a DROP TABLE or "
                        "the loss of every db node cannot be undone)")
        return
    db = {n.name for n in roles.nodes_with(c.nodes, "postgres")}
    if all(n.name in db for n in repos):
        report.warn("nodes", "the only backup repository is on a database node: losing that "
                    "host loses the database and its backups; put the backup role elsewhere")


def enabled(c: Any) -> bool:
    """Backups on: explicitly, or (unset) when a repository node exists and TLS is on."""
    from builder.model import roles

    if c.backup.enabled is not None:
        return bool(c.backup.enabled)
    return c.tls.enabled and bool(roles.nodes_with(c.nodes, "backup_repo"))


def stanza(c: Any) -> str:
    return str(c.backup.stanza or c.name)


def valid_calendar(text: str) -> bool:
    return re.fullmatch(CALENDAR_RE, text) is not None
