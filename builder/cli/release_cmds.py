"""`pgha-build release`: attach the build to a GitHub (or Gitea/Forgejo) release."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import click

from builder.cli import App, cli, pass_app
from builder.core import redact
from builder.core.httpclient import RetryPolicy
from builder.core.log import log
from builder.core.paths import OutputPaths
from builder.release import forge as forgemod
from builder.release import publish as rel
from builder.release.forge import UsageError

# Tests replace this to inject a sleep/clock; the default sleeps for real.
make_policy = RetryPolicy


def token_from_env() -> str:
    """The API token; registered for redaction; refused (never shown) if it could not be a
    token: a line break or other whitespace inside, or a control character."""
    for name in ("GITHUB_TOKEN", "GH_TOKEN"):
        value = os.environ.get(name, "").strip()
        if value:
            redact.register(value)
            if not re.fullmatch(r"[\x21-\x7e]+", value):
                raise UsageError(f"{name} holds a line break, a space or a control character, "
                                 "which no API token has", hint=f"set {name} to the token alone")
            return value
    raise UsageError("no API token: set GITHUB_TOKEN or GH_TOKEN",
                     hint="a token with contents: write on the repository (in GitHub Actions: "
                          "`permissions: contents: write` and GITHUB_TOKEN)")


MAX_NOTES = 125_000  # GitHub's limit for a release body, in characters


def read_notes(path: Path) -> str:
    """The release notes: a regular UTF-8 file of bounded size (never /dev/zero or a FIFO,
    which would hang or fill memory)."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"--notes {path} is not a regular file",
                             hint="give a Markdown file")
        if info.st_size > MAX_NOTES * 4:
            raise UsageError(f"--notes {path} is {info.st_size} bytes; release notes are at "
                             f"most {MAX_NOTES} characters", hint="shorten the notes")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"--notes {path} is not UTF-8 text (byte {exc.start})",
                         hint="save the notes as UTF-8") from None
    except OSError as exc:
        raise UsageError(f"cannot read --notes {path}: {exc.strerror}") from None
    if len(text) > MAX_NOTES:
        raise UsageError(f"--notes {path} has {len(text)} characters; the limit is {MAX_NOTES}",
                         hint="shorten the notes")
    return text


def default_repo(app: App) -> str:
    proc = app.runner.run(["git", "remote", "get-url", "origin"], check=False)
    repo = forgemod.repo_from_remote(proc.stdout.decode(errors="replace"))
    if proc.returncode != 0 or repo is None:
        raise UsageError("cannot tell the repository from `git remote get-url origin`",
                         hint="pass --repo OWNER/NAME")
    return repo


@cli.command()
@click.option("--tag", required=True, help="Release tag, e.g. v1.4.0 (created if missing).")
@click.option("--repo", metavar="OWNER/NAME", help="Default: parsed from the git remote origin.")
@click.option("--api-url", metavar="URL",
              help="API base: https://HOST/api/v3 for GitHub Enterprise, https://HOST/api/v1 "
                   "for Gitea/Forgejo. Default: https://api.github.com")
@click.option("--forge", "forge_kind", type=click.Choice(forgemod.CHOICES), default="auto",
              show_default=True, help=forgemod.cli_help())
@click.option("--draft", is_flag=True, help="Create the release as a draft.")
@click.option("--prerelease", is_flag=True, help="Create the release as a pre-release.")
@click.option("--notes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Release notes (Markdown file).")
@click.option("--replace", is_flag=True,
              help="Replace assets that differ (upload as a temporary name, delete, rename).")
@click.option("--dry-run", is_flag=True, help="Show what would happen; no writes to the API.")
@click.option("--only", multiple=True, metavar="NAME",
              help="Publish only this artifact (path or asset name; repeatable).")
@click.option("--max-asset-size", type=click.IntRange(min=1), default=rel.MAX_ASSET_SIZE,
              show_default=True, help="Per-asset limit in bytes (GitHub: under 2 GiB).")
@pass_app
def release(app: App, tag: str, repo: str | None, api_url: str | None, forge_kind: str,
            draft: bool, prerelease: bool, notes: Path | None, replace: bool, dry_run: bool,
            only: tuple[str, ...], max_asset_size: int) -> None:
    """Attach the build (RPMs, SRPMs, role kickstarts, images, SHA256SUMS, manifest.json) to
    the release for TAG. Seeds, per-host kickstarts and secrets are never published. Re-running
    is safe: identical assets are skipped. Token: GITHUB_TOKEN or GH_TOKEN."""
    out = OutputPaths(app.output / app.cluster.name)
    opts = rel.Options(tag=tag, notes=read_notes(notes) if notes else None, draft=draft,
                       prerelease=prerelease, replace=replace, dry_run=dry_run, only=only,
                       max_asset_size=max_asset_size,
                       progress=log.isEnabledFor(logging.INFO))
    rel.collect(out, only)  # refuse secrets and bad names before asking for a token
    client = forgemod.connect(api_url, forgemod.check_repo(repo or default_repo(app)),
                              token_from_env(), forge_kind, make_policy())
    result = rel.publish(client, out, opts)
    _summary(result, opts, client.repo)


def _summary(result: rel.Result, opts: rel.Options, repo: str) -> None:
    counts = ", ".join(f"{result.count(op)} {word}" for op, word in
                       (("upload", "uploaded"), ("skip", "skipped"), ("replace", "replaced")))
    if opts.dry_run:
        click.echo(f"dry run, release {opts.tag} on {repo}: would have {counts}; "
                   "nothing was changed")
        for op, name in result.done:
            click.echo(f"  {op:8} {name}")
        return
    created = " (created)" if result.created else ""
    click.echo(f"release {opts.tag}{created}: {counts}  {result.release_url}".rstrip())
