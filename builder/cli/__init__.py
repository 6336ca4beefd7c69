"""The `pgha-build` command line: a thin click layer over the pipeline.

One module per group of commands; each command loads the cluster through the App in ctx.obj
(once), builds a Context and runs pipeline steps. Expected failures print one line (and a hint)
and exit with the documented code; tracebacks only with --debug.
"""

from __future__ import annotations

import errno
import importlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder import __version__
from builder.core import log as logmod
from builder.core.errors import EXIT_CODES_HELP, ConfigError, PghaError, ToolFailed
from builder.core.redact import text as redact
from builder.core.run import Runner

if TYPE_CHECKING:  # the model (pydantic) loads only when a command needs the cluster
    from builder.core.context import Context
    from builder.model.cluster import Cluster


@dataclass
class App:
    cluster_file: Path | None
    output: Path
    debug: bool = False
    runner: Runner = field(default_factory=Runner)
    _cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            from builder.model.loading import load

            self._cluster = load(self.cluster_file)
        return self._cluster

    def context(self, force: bool = False, write: bool = True) -> Context:
        """The build context; with `write`, the output folder is checked to be writable first
        (one clear line rather than a traceback from deep inside a stage)."""
        from builder.core.context import Context

        cluster = self.cluster
        if write:
            writable_folder(self.output / cluster.name)
        return Context.create(cluster, self.output, self.runner, force=force)


# Characters a folder name may not have once resolved: the output path is written into
# generated files (dnsmasq.conf's tftp-root, kickstart and lab paths), one line each.
_PATH_BAD = frozenset("\"\\$`%") | {chr(c) for c in range(0x20)} | {"\x7f"}


def check_output_path(value: Path) -> Path:
    """-o/--output, refused when it (or the folder it resolves to) has a line break, a
    control character, a double quote, `\\`, `$`, a backtick or `%`."""
    for text in (str(value), str(value.absolute())):
        bad = sorted({c for c in text if c in _PATH_BAD})
        if bad:
            raise ConfigError(f"output folder {text[:80]!r} has {' '.join(map(repr, bad[:4]))}: "
                              "it is written into generated configuration files",
                              hint="pass -o/--output with a plain folder name")
    return value


def writable_folder(path: Path) -> None:
    """Create path if missing and prove it writable, or raise one PghaError."""
    hint = "pass -o/--output with a folder you can write to"
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".pgha-write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except FileExistsError:
        raise PghaError(f"output folder {path} exists and is not a folder", hint=hint) from None
    except OSError as exc:
        raise PghaError(f"cannot write to output folder {path}: {exc.strerror}",
                        hint=hint) from None


pass_app = click.make_pass_decorator(App)

# Filesystem failures that come from the user's environment (permissions, a file where a
# folder should be, a full or read-only disk): one line, never a traceback.
USER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                         errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG})


class PghaGroup(click.Group):
    """Loads command modules on demand (COMMAND_MODULES), and turns expected failures
    (PghaError) into one printed line and the documented exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_MODULES) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(f"builder.cli.{COMMAND_MODULES[cmd_name]}")
        return self.commands.get(cmd_name)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except PghaError as err:
            app = ctx.obj
            if isinstance(app, App) and app.debug:
                raise
            _print_error(err)
            ctx.exit(err.exit_code)
        except OSError as exc:
            app = ctx.obj
            if exc.errno not in USER_ERRNOS or (isinstance(app, App) and app.debug):
                raise
            _print_error(PghaError(
                f"{exc.strerror}: {redact(str(exc.filename or ''))}".rstrip(": "),
                hint="check the paths and permissions of the cluster file and the output "
                     "folder; --debug shows where it happened"))
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(
    cls=PghaGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES_HELP,
)
@click.option("-c", "--cluster", "cluster_file", type=click.Path(path_type=Path),
              envvar="PGHA_CLUSTER", show_envvar=True,
              help="Cluster file (YAML). Default: the built-in reference lab.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=Path("output"),
              show_default=True, help="Output folder; artifacts go to OUTPUT/<cluster>/.")
@click.option("-v", "--verbose", count=True, help="More output (-v shows every command run).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.option("--debug", is_flag=True, help="Show tracebacks (implies -v).")
@click.version_option(__version__, prog_name="pgha-build")
@click.pass_context
def cli(ctx: click.Context, cluster_file: Path | None, output: Path, verbose: int,
        quiet: bool, debug: bool) -> None:
    """Build everything to deploy a Patroni PostgreSQL HA cluster on RHEL 8 from one YAML file:
    role RPMs, kickstarts, first-boot seeds, images, and a local lab that proves it works.

    \b
    Start:  pgha-build init cluster.yaml && pgha-build -c cluster.yaml check
    Build:  pgha-build build        (specs, RPMs + repo, kickstarts, manifest)
    """
    logmod.setup(-1 if quiet else (max(verbose, 1) if debug else verbose))
    ctx.obj = App(cluster_file=cluster_file, output=output, debug=debug)
    check_output_path(output)


def _print_error(err: PghaError) -> None:
    """The error on one line (problems and a tool's stderr indented below), then the hint;
    credentials redacted."""
    click.echo(redact(f"error: {_one_line(err.message)}"), err=True)
    for problem in getattr(err, "problems", []):  # ConfigError, DepsolveFailed
        click.echo(redact(f"  {_one_line(problem)}"), err=True)
    if isinstance(err, ToolFailed) and err.stderr_tail:
        for line in err.stderr_tail.splitlines():
            click.echo(redact(f"  | {line}"), err=True)
    if err.hint:
        click.echo(redact(f"hint: {_one_line(err.hint)}"), err=True)


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def main() -> None:
    cli(prog_name="pgha-build")


# Each command lives in one module, imported only when that command runs, so `--help` and the
# warm path of `build` do not pay for every other command's dependencies. A test checks that
# this table and the modules agree.
COMMAND_MODULES = {
    "init": "model_cmds", "check": "model_cmds", "show": "model_cmds", "schema": "model_cmds",
    "specs": "build_cmds", "rpms": "build_cmds", "kickstart": "build_cmds", "build": "build_cmds",
    "mirror": "build_cmds",
    "seeds": "seed_cmds", "render": "seed_cmds", "plan": "seed_cmds",
    "images": "image_cmds", "pxe": "image_cmds", "serve": "image_cmds",
    "lab": "lab_cmds",
    "release": "release_cmds",
    "f5": "f5_cmds",
    "config": "ops_cmds", "restart": "ops_cmds", "upgrade-plan": "ops_cmds",
}
