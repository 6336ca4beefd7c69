"""The command line through click's CliRunner: the newcomer's commands, errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import EXIT_CONFIG, EXIT_TOOL_MISSING


def test_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("init", "check", "show", "schema", "specs", "rpms", "kickstart", "build"):
        assert name in result.output
    assert "Exit codes" in result.output


def test_init_then_check(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    result = CliRunner().invoke(cli, ["init", str(target)])
    assert result.exit_code == 0 and target.exists()
    again = CliRunner().invoke(cli, ["init", str(target)])
    assert again.exit_code != 0 and "already exists" in again.output
    result = CliRunner().invoke(cli, ["-c", str(target), "check"])
    assert result.exit_code == 0, result.output
    assert "ok: cluster 'pgha' is valid" in result.output
    assert "warning: admin.ssh_key" in result.output


def test_check_reports_every_error_with_paths(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({
        "nodes": [
            {"name": "db1", "roles": ["db"], "address": "10.77.0.11"},
            {"name": "db2", "roles": ["db"], "address": "10.77.0.11"},
            {"name": "db3", "roles": ["db"], "address": "10.0.0.300"},
        ],
        "patroni": {"ttl": 24},
    }))
    result = CliRunner().invoke(cli, ["-c", str(f), "check"])
    assert result.exit_code == EXIT_CONFIG
    assert "nodes[2].address (line" in result.output
    assert "10.0.0.300 is not an IPv4 address" in result.output
    assert "Traceback" not in result.output


def test_cross_field_errors_exit_config(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("patroni: {ttl: 24}\n")
    result = CliRunner().invoke(cli, ["-c", str(f), "check"])
    assert result.exit_code == EXIT_CONFIG
    assert "patroni.ttl (line 1): loop_wait + 2*retry_timeout = 25 exceeds ttl 24" in result.output


def test_malformed_yaml_one_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("nodes:\n  - name: db1\n   roles: [db]\n")
    result = CliRunner().invoke(cli, ["-c", str(f), "show"])
    assert result.exit_code == EXIT_CONFIG
    assert "malformed YAML at line 3, column" in result.output


def test_show_yaml_and_json() -> None:
    result = CliRunner().invoke(cli, ["show", "--json"])
    data = json.loads(result.output)
    assert data["schema_version"] == 1 and data["nodes"][3]["name"] == "lb1"
    result = CliRunner().invoke(cli, ["show"])
    assert yaml.safe_load(result.output)["patroni"]["ttl"] == 30


def test_schema_is_json_schema() -> None:
    data = json.loads(CliRunner().invoke(cli, ["schema"]).output)
    assert data["$schema"].endswith("2020-12/schema")
    assert "nodes" in data["properties"]


def test_unknown_role_for_kickstart(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-o", str(tmp_path), "kickstart", "--role", "nope"])
    assert result.exit_code == EXIT_CONFIG and "unknown role 'nope'" in result.output


def test_missing_tool_is_one_line_with_package(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PATH", str(tmp_path))  # no rpmbuild anywhere
    result = CliRunner().invoke(cli, ["-o", str(tmp_path / "out"), "rpms"])
    assert result.exit_code == EXIT_TOOL_MISSING
    assert "'rpmbuild' was not found" in result.output
    assert "apt-get install rpm" in result.output and "dnf install rpm-build" in result.output


def test_bad_source_date_epoch(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    result = CliRunner().invoke(cli, ["-o", str(tmp_path), "specs"])
    assert result.exit_code == 1 and "SOURCE_DATE_EPOCH='yesterday'" in result.output


@pytest.mark.integration
def test_build_then_warm_build(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["-o", str(out), "build"])
    assert result.exit_code == 0, result.output
    assert (out / "pgha" / "manifest.json").exists()
    result = CliRunner().invoke(cli, ["-o", str(out), "build"])
    assert "up to date" in result.output
    # A changed artifact is noticed: the warm path falls back to a real (cached) build.
    rpm = next((out / "pgha" / "rpms").glob("pgha-common-*.noarch.rpm"))
    rpm.write_bytes(b"corrupt")
    result = CliRunner().invoke(cli, ["-o", str(out), "build"])
    assert "built cluster" in result.output
    assert rpm.read_bytes()[:4] == b"\xed\xab\xee\xdb"  # an RPM again


def test_cli_import_stays_light() -> None:
    """`pgha-build --help` and the warm build must not pay for pydantic, jinja2, requests."""
    code = ("import sys, builder.cli; "
            "print(sorted(m for m in ('pydantic', 'jinja2', 'requests', 'pykickstart') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_command_table_matches_modules() -> None:
    import importlib

    from builder.cli import COMMAND_MODULES

    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(f"builder.cli.{module}")
    assert set(cli.commands) == set(COMMAND_MODULES)


def test_lab_day2_commands_load_on_demand_and_are_all_listed() -> None:
    """`lab`'s day-2 commands live in lab_day2_cmds, loaded when one runs; the group lists them
    all, and each name the group promises is a command of that module."""
    import click

    from builder.cli import lab_cmds, lab_day2_cmds

    group = cli.get_command(click.Context(cli), "lab")
    assert isinstance(group, click.Group)
    assert set(lab_cmds.DAY2) == set(lab_day2_cmds.COMMANDS)
    assert set(lab_cmds.DAY2) <= set(group.list_commands(click.Context(group)))
    for name in lab_cmds.DAY2:
        assert group.get_command(click.Context(group), name) is lab_day2_cmds.COMMANDS[name]
