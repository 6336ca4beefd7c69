"""secrets.yaml is an input with a schema (issue 27): user names are PostgreSQL identifiers,
unknown keys are refused, a loose mode or foreign owner is warned about. A hostile user name
once put `host all all 0.0.0.0/0 trust` into pg_hba and `stats admin if TRUE` into haproxy.cfg.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import PghaError
from builder.core.paths import OutputPaths
from builder.model import secrets


def _made(tmp_path: Path) -> tuple[OutputPaths, dict]:
    out = OutputPaths(tmp_path / "pgha")
    secrets.load_or_create(out, "pgha")
    return out, yaml.safe_load(out.secrets.read_text())


def _write(out: OutputPaths, data: object) -> None:
    out.secrets.write_text(yaml.safe_dump(data))
    out.secrets.chmod(0o600)


@pytest.mark.parametrize("user", [
    "all 0.0.0.0/0 trust #", "haproxy\nstats admin if TRUE", "Postgres", "1abc", "a-b",
    "a" * 64, "", "all", "public", "replication", "pg_monitor", "ünïcode", 12, None, ["x"],
    True, "x;y", "x y", 'x"y',
])
def test_hostile_user_name_is_refused_naming_the_key(tmp_path: Path, user: object) -> None:
    out, data = _made(tmp_path)
    data["replication"]["username"] = user
    _write(out, data)
    with pytest.raises(PghaError) as err:
        secrets.load_or_create(out, "pgha")
    assert "replication.username" in err.value.message
    assert "\n" not in err.value.message
    assert "replicator" in (err.value.hint or "")


@pytest.mark.parametrize("user", ["replicator", "_x", "a" * 63, "user_2"])
def test_plain_user_names_are_accepted(tmp_path: Path, user: str) -> None:
    out, data = _made(tmp_path)
    data["replication"]["username"] = user
    _write(out, data)
    assert secrets.load_or_create(out, "pgha").replication.username == user


@pytest.mark.parametrize(("change", "needle"), [
    (lambda d: d.update(extra=1), "'extra' is not a known key"),
    (lambda d: d["rewind"].update(host="x"), "rewind.'host' is not a known key"),
    (lambda d: d.update(version=True), "unknown version"),
    (lambda d: d.update(cluster=["x"]), "cluster is not a string"),
    (lambda d: d["restapi"].update(password="a" * 2000), "restapi.password"),
    (lambda d: d.update(superuser="postgres"), "'superuser' is missing or not a mapping"),
])
def test_structure_is_checked(tmp_path: Path, change, needle: str) -> None:
    out, data = _made(tmp_path)
    change(data)
    _write(out, data)
    with pytest.raises(PghaError) as err:
        secrets.load_or_create(out, "pgha")
    assert needle in err.value.message


def test_world_readable_file_is_warned_and_tightened(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    out, _ = _made(tmp_path)
    out.secrets.chmod(0o644)
    logging.getLogger("pgha").propagate = True
    with caplog.at_level(logging.WARNING, logger="pgha"):
        secrets.load_or_create(out, "pgha")
    assert "mode 0644" in caplog.text and "--rotate-secrets" in caplog.text
    assert stat.S_IMODE(out.secrets.stat().st_mode) == 0o600


def test_fifo_or_huge_file_is_refused(tmp_path: Path) -> None:
    out, _ = _made(tmp_path)
    out.secrets.unlink()
    out.secrets.write_bytes(b"#" * (secrets.MAX_BYTES + 1))
    with pytest.raises(PghaError, match="regular file of at most 1 MiB"):
        secrets.load_or_create(out, "pgha")


def test_seeds_command_refuses_hostile_user_and_writes_no_seed(tmp_path: Path) -> None:
    out_root = tmp_path / "out"
    out = OutputPaths(out_root / "pgha")
    secrets.load_or_create(out, "pgha")
    data = yaml.safe_load(out.secrets.read_text())
    data["haproxy_stats"]["username"] = "haproxy\nstats admin if TRUE"
    _write(out, data)
    res = CliRunner().invoke(cli, ["-o", str(out_root), "seeds"])
    assert res.exit_code == 1, res.output
    assert "haproxy_stats.username" in res.output and "Traceback" not in res.output
    assert not out.seeds.exists() or not any(out.seeds.rglob("haproxy.cfg"))
