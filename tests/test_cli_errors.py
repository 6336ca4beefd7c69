"""No traceback for a user error in any command: every command with a missing, unreadable,
directory and FIFO cluster file, and with an output folder it cannot write, answers one
`error:` line (and a hint) with exit 2 or 1. Also: init refuses non-regular targets, a bad
GITHUB_TOKEN is refused without being shown, and credentials never reach the output."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from builder.cli import COMMAND_MODULES, cli, release_cmds
from builder.core.errors import PghaError
from builder.core.httpclient import RetryPolicy

# Minimal arguments per command, so that click's own usage checks pass and the command runs.
ARGS: dict[str, list[str]] = {
    "render": ["--host", "db1"], "images": ["--role", "db"], "release": ["--tag", "v1.0.0"],
    "kill": ["db1"], "partition": ["db1"], "heal": ["db1"], "exec": ["db1", "true"],
    "reboot": ["db1"], "replace": ["db1"], "add": ["db1"], "remove": ["db1"],
    "restore": ["--latest"], "restart": ["--rolling"],
}
# Commands that never read the cluster file (they are run with the other cases below).
NO_CLUSTER = {"init", "schema"}


def _commands() -> list[list[str]]:
    out = []
    for name in sorted(COMMAND_MODULES):
        command = cli.get_command(click.Context(cli), name)
        if isinstance(command, click.Group):
            subs = command.list_commands(click.Context(command))  # lazily loaded ones too
            out += [[name, sub, *ARGS.get(sub, [])] for sub in subs]
        elif name not in NO_CLUSTER:
            out.append([name, *ARGS.get(name, [])])
    return out


COMMANDS = _commands()


def _one_error(res: Result, codes: tuple[int, ...] = (1, 2)) -> str:
    assert isinstance(res.exception, SystemExit), res.exception  # not an unhandled exception
    assert res.exit_code in codes, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if not ln.startswith("warning:")]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1, res.output
    assert all(ln.startswith(("error:", "hint:")) for ln in lines), res.output
    return errors[0]


@contextlib.contextmanager
def _as_nobody() -> Iterator[None]:
    """Root reads any file: become nobody (effective ids only) for the unreadable case."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def _bad_cluster_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    unreadable = tmp_path / "unreadable.yaml"
    unreadable.write_text("name: pgha\n")
    unreadable.chmod(0)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    return {"missing": tmp_path / "missing.yaml", "unreadable": unreadable, "directory": folder,
            "fifo": fifo}


@pytest.mark.parametrize("case", ["missing", "unreadable", "directory", "fifo"])
def test_every_command_with_a_bad_cluster_file(tmp_path: Path, case: str) -> None:
    path = _bad_cluster_files(tmp_path)[case]
    tmp_path.chmod(0o755)
    for command in COMMANDS:
        with _as_nobody() if case == "unreadable" else contextlib.nullcontext():
            res = CliRunner().invoke(cli, ["-o", str(tmp_path / "out"), "-c", str(path),
                                           *command])
        line = _one_error(res, (2,))
        assert f"cluster file {path}" in line, (command, line)
    assert not (tmp_path / "out").exists()


F5_CLUSTER = {"name": "shop", "load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                                                "f5": {"self_ips": ["10.77.0.5"]}},
              "nodes": [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"}
                        for i in (1, 2, 3)]}
WRITERS = ["build", "specs", "rpms", "kickstart", "seeds", "render", "pxe", "images", "serve",
           "f5", "release", "mirror"]


@pytest.mark.parametrize("case", ["a file", "below a file"])
def test_every_writing_command_with_an_unwritable_output(tmp_path: Path, case: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x\n")
    out = blocker if case == "a file" else blocker / "sub"
    missing = set(WRITERS) - {c[0] for c in COMMANDS}
    assert not missing, f"not commands any more: {missing}"
    f5_file = tmp_path / "f5.yaml"
    f5_file.write_text(yaml.safe_dump(F5_CLUSTER))
    for name in WRITERS:
        cluster = ["-c", str(f5_file)] if name == "f5" else []
        res = CliRunner().invoke(cli, ["-o", str(out), *cluster, name, *ARGS.get(name, [])])
        line = _one_error(res)
        assert str(blocker) in line, (name, line)
    assert blocker.read_text() == "x\n"


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink", "device"])
def test_init_refuses_non_regular_targets(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "target"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "symlink":
        (tmp_path / "real").write_text("keep\n")
        target.symlink_to(tmp_path / "real")
    elif os.geteuid() == 0:
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    else:
        pytest.skip("creating a device node needs root")
    before = target.lstat()
    res = CliRunner().invoke(cli, ["init", "--force", str(target)])
    assert "init writes only regular files" in _one_error(res, (1,))
    after = target.lstat()
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)


def test_bad_token_is_refused_and_never_shown(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["-o", str(out), "kickstart"]).exit_code == 0
    token = "ghp_SECRETabc123\nX-Injected: 1"
    monkeypatch.setenv("GITHUB_TOKEN", token)
    res = CliRunner().invoke(cli, ["-o", str(out), "release", "--tag", "v1.0.0", "--repo",
                                   "o/r", "--api-url", "http://127.0.0.1:9/api"])
    line = _one_error(res)
    assert "GITHUB_TOKEN holds a line break" in line
    assert "ghp_SECRET" not in res.output


def test_url_credentials_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["-o", str(out), "kickstart"]).exit_code == 0
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_tokenvalue123")
    monkeypatch.setattr(release_cmds, "make_policy",
                        lambda: RetryPolicy(sleep=lambda s: None, timeout=5))
    res = CliRunner().invoke(cli, ["-v", "-o", str(out), "release", "--tag", "v1.0.0", "--repo",
                                   "o/r", "--api-url", "http://alice:hunter2@127.0.0.1:9/api"])
    assert res.exit_code != 0
    assert "hunter2" not in res.output and "ghp_tokenvalue123" not in res.output
    assert "Traceback" not in res.output


def test_redaction_of_urls_and_registered_tokens() -> None:
    import logging

    from builder.core import log as logmod
    from builder.core import redact

    redact.register("tok_0123456789")
    text = "GET https://bob:pw@h.example/x?t=tok_0123456789 ftp://u@h/ and http://h/plain"
    assert redact.text(text) == "GET https://***@h.example/x?t=*** ftp://***@h/ and http://h/plain"
    record = logging.LogRecord("pgha", logging.INFO, __file__, 1, "url %s", ("https://a:b@h/",),
                               None)
    logmod.setup(0)
    for handler in logmod.log.handlers:
        assert handler.filter(record)
    assert record.getMessage() == "url https://***@h/"


def test_cluster_passwords_are_redacted_from_errors(tmp_path: Path) -> None:
    from builder.core.paths import OutputPaths
    from builder.model import secrets

    out = OutputPaths(tmp_path / "pgha")
    sec = secrets.load_or_create(out, "pgha")

    @click.command()
    def fails() -> None:
        raise PghaError(f"tool said: password={sec.superuser.password}")

    cli.add_command(fails, "test-fails")
    try:
        res = CliRunner().invoke(cli, ["test-fails"])
    finally:
        cli.commands.pop("test-fails")
    assert sec.superuser.password not in res.output and "password=***" in res.output
