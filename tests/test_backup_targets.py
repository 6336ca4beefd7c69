"""Restore targets and restore points without a lab: the pgBackRest options each target gives,
restore point names refused before anything runs, and `lab restore` / `lab verify` refusing an
ambiguous target with one usage line."""

from __future__ import annotations

from typing import cast

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import PghaError
from builder.lab import backup, restore, verify
from builder.lab.lab import Lab


def test_target_args_per_kind() -> None:
    assert restore.target_args("latest", None) == []
    assert restore.target_args("time", "2026-12-03 17:00:00+00") == [
        "--type=time", "--target=2026-12-03 17:00:00+00", "--target-action=promote"]
    assert restore.target_args("name", "before-migration") == [
        "--type=name", "--target=before-migration", "--target-action=promote"]
    with pytest.raises(PghaError, match="needs its value"):
        restore.target_args("name", None)
    with pytest.raises(PghaError, match="unknown restore target kind"):
        restore.target_args("xid", "42")


@pytest.mark.parametrize("name", ["", "bad name", "-x", "a;b", "x" * 64, "é"])
def test_bad_restore_point_names_are_refused_before_any_sql(name: str) -> None:
    with pytest.raises(PghaError, match="bad restore point name") as err:
        backup.restore_point(cast(Lab, None), name)  # no lab is touched
    assert err.value.hint and "letters" in err.value.hint


@pytest.mark.parametrize("name", ["before-migration-42", "v1.2:pre", "x" * 63])
def test_good_restore_point_names(name: str) -> None:
    assert backup.POINT_RE.fullmatch(name)


@pytest.mark.parametrize("args", [[], ["--latest", "--name", "p"],
                                  ["--time", "2026-12-03 17:00:00+00", "--latest"]])
def test_restore_needs_exactly_one_target(args: list[str]) -> None:
    res = CliRunner().invoke(cli, ["lab", "restore", *args])
    assert res.exit_code == 2, res.output
    assert "exactly one of --time TIME, --name NAME or --latest" in res.output


def test_verify_refuses_two_targets() -> None:
    res = CliRunner().invoke(cli, ["lab", "verify", "--name", "p", "--latest"])
    assert res.exit_code == 2 and "exactly one of" in res.output


def test_help_names_the_targets_and_checks() -> None:
    runner = CliRunner()
    text = runner.invoke(cli, ["lab", "restore", "--help"]).output
    assert "--name NAME" in text and "--time TIME" in text and "--latest" in text
    text = runner.invoke(cli, ["lab", "backup", "--help"]).output
    assert "--restore-point NAME" in text
    text = " ".join(runner.invoke(cli, ["lab", "verify", "--help"]).output.split())
    assert "pg_amcheck" in text and "pg_checksums" in text and "--query SQL" in text


def test_verify_lines_show_the_query_rows() -> None:
    done = {"node": "lb1", "target": "name p1", "verify_s": 1.0, "restore_s": 2.0,
            "rows": ["5|5"], "amcheck": {"relations": 10, "pages": 20},
            "checksums": {"files": 3, "blocks": 4, "bad": 0}}
    out = verify.lines(done)
    assert out[2:4] == ["query on the copy:", "  5|5"]
    assert "pg_checksums: 3 files, 4 blocks, 0 bad checksums" in out
