"""PostgreSQL parameters the cluster file may not set (`patroni.parameters`).

Some parameters belong to the product (pg_hba, TLS, password hashing) and some open a way in
(a shell command, a library from anywhere, another config file). Each entry of DENIED says why
it is refused and what to use instead; `rules.py` reports every match at its YAML path.

The table is data: a capability that takes a parameter over (backups own archive_command and
restore_command) edits DENIED, or passes `owned=` names to `problems()`, instead of adding code
here. Names are compared case-insensitively, as PostgreSQL does. This module holds no I/O.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

# A library that *_preload_libraries may name: a bare name or $libdir/name (found in the
# package's lib folder), or an absolute path inside a PGDG package's lib folder.
_LIBRARY = re.compile(r"(\$libdir/(plugins/)?)?[A-Za-z0-9_.-]+"
                      r"|/usr/pgsql-[0-9]+/lib/[A-Za-z0-9_.-]+")


def _libraries_ok(value: object) -> bool:
    if not isinstance(value, str):
        return False
    names = [n.strip().strip('"') for n in value.split(",")]
    return all(_LIBRARY.fullmatch(n) and ".." not in n for n in names if n)


@dataclass(frozen=True)
class Denied:
    pattern: str  # fnmatch pattern on the lower-case name
    why: str
    instead: str
    allowed: Callable[[object], bool] | None = None  # a value that is fine after all


DENIED: list[Denied] = [
    Denied("hba_file", "it replaces the generated pg_hba (TLS only, per-source rules)",
           "network.client_networks and tls: pg_hba is generated from them"),
    Denied("ident_file", "it maps operating-system users to database roles behind the "
           "generated rules", "nothing: the cluster authenticates with scram-sha-256 over TLS"),
    Denied("include*", "it reads another file into postgresql.conf, which no check sees",
           "set each parameter in patroni.parameters"),
    Denied("config_file", "it points PostgreSQL at another configuration file",
           "set each parameter in patroni.parameters"),
    Denied("data_directory", "Patroni owns the data directory",
           "nothing: the platform layout sets it"),
    Denied("external_pid_file", "it writes a file wherever the postgres user may",
           "nothing: systemd tracks the postmaster"),
    Denied("archive_command", "it runs any shell command as postgres on every WAL segment",
           "backups configure archiving (docs/security.md)"),
    Denied("archive_library", "it loads a library for archiving, as archive_command runs one",
           "backups configure archiving (docs/security.md)"),
    Denied("restore_command", "it runs any shell command as postgres during recovery",
           "backups configure restores (docs/security.md)"),
    Denied("archive_cleanup_command", "it runs any shell command as postgres on a standby",
           "backups configure archiving (docs/security.md)"),
    Denied("recovery_end_command", "it runs any shell command as postgres after recovery",
           "backups configure restores (docs/security.md)"),
    Denied("*_preload_libraries", "a library outside the PostgreSQL package's lib folder "
           "runs any code in every backend", "install the extension's RPM and name the "
           "library alone (e.g. pg_stat_statements)", _libraries_ok),
    Denied("dynamic_library_path", "it lets LOAD and CREATE EXTENSION find libraries outside "
           "the packages", "install the extension's RPM (it goes into /usr/pgsql-N/lib)"),
    Denied("password_encryption", "pg_hba accepts only scram-sha-256; md5 hashes are weak",
           "leave it unset (scram-sha-256)", lambda v: v == "scram-sha-256"),
    Denied("ssl*", "TLS is set from the cluster CA (certificates, keys, TLSv1.2 minimum)",
           "the tls: section of the cluster file (docs/tls.md)"),
    Denied("krb_server_keyfile", "it reads a key file the cluster does not manage",
           "nothing: the cluster authenticates with scram-sha-256 over TLS"),
    Denied("listen_addresses", "Patroni sets it from the node's address",
           "nothing: the node's address and ports.postgres"),
    Denied("port", "Patroni sets it from ports.postgres", "ports.postgres"),
    Denied("unix_socket_*", "the socket folder and its access belong to the platform layout",
           "nothing: the layout sets it"),
]


def denied(name: str, value: object, owned: Iterable[str] = ()) -> Denied | None:
    """The entry that refuses `name: value`, or None (names in `owned` are allowed)."""
    low = name.lower()
    if low in {o.lower() for o in owned}:
        return None
    for entry in DENIED:
        if fnmatch.fnmatchcase(low, entry.pattern):
            return None if entry.allowed is not None and entry.allowed(value) else entry
    return None


def problems(params: dict[str, object], owned: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(name, one-line message) for every refused parameter."""
    out = []
    for name, value in params.items():
        entry = denied(name, value, owned)
        if entry is not None:
            out.append((name, f"may not be set here: {entry.why}; use instead: {entry.instead}"))
    return out
