"""`pgha-build f5`: the F5 BIG-IP configuration of a cluster with load_balancer.kind f5, and
`--apply URL` to send it to the BIG-IP's AS3 (a dry-run there unless --yes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from builder.cli import App, cli, pass_app
from builder.core.errors import PghaError, ValidationFailed

if TYPE_CHECKING:
    from builder.core.httpclient import Api
    from builder.model.cluster import Cluster


@cli.command()
@click.option("--apply", "apply_url", metavar="URL",
              help="POST the declaration to this BIG-IP's AS3 (https://BIGIP): a dry-run "
                   "unless --yes. Credentials: PGHA_F5_USER + PGHA_F5_PASSWORD, or "
                   "PGHA_F5_TOKEN, from the environment only.")
@click.option("--yes", is_flag=True, help="With --apply: deploy for real.")
@click.option("--status", "status_url", metavar="URL",
              help="Show the BIG-IP's pool members (read-only; same credentials): healthy when "
                   "exactly one is up for read-write and at least one for read-only.")
@click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CA bundle that verifies the BIG-IP's management certificate.")
@click.option("--insecure", is_flag=True,
              help="Do not verify the BIG-IP's certificate (a lab BIG-IP's self-signed one).")
@click.option("--timeout", type=click.IntRange(10, 3600), default=300, show_default=True,
              help="Seconds to wait for AS3 to finish.")
@click.option("--force", is_flag=True, help="Rewrite the files even if inputs are unchanged.")
@pass_app
def f5(app: App, apply_url: str | None, yes: bool, status_url: str | None,
       ca_file: Path | None, insecure: bool, timeout: int, force: bool) -> None:
    """Write the F5 BIG-IP configuration to OUTPUT/<cluster>/f5/: as3.json (AS3 declaration),
    tmsh.txt (the same as tmsh commands) and README.md (for the network team)."""
    from builder.f5 import apply
    from builder.stages import f5 as stage
    from builder.stages import pipeline

    if yes and not apply_url:
        raise click.UsageError("--yes goes with --apply URL")
    if (ca_file or insecure) and not (apply_url or status_url):
        raise click.UsageError("--ca-file and --insecure go with --apply or --status URL")
    if ca_file and insecure:
        raise click.UsageError("--ca-file and --insecure contradict each other: pick one")
    if apply_url and status_url:
        raise click.UsageError("--apply and --status: one at a time")
    ctx = app.context(force, write=not status_url)  # --status writes nothing
    stage.require_f5(ctx.cluster)
    url = apply_url or status_url
    if url:  # everything checked before any file is written or any request is sent
        verify: bool | str = str(ca_file) if ca_file else not insecure
        base = apply.base_url(url)
        api = apply.api_from_env(os.environ, verify)
        _quiet_if_insecure(api)
    if status_url:
        return _status(base, api, ctx.cluster)
    pipeline.run_steps(ctx, [pipeline.F5, pipeline.MANIFEST])
    folder = ctx.out.root / "f5"
    if not apply_url:
        click.echo(f"wrote {folder}: as3.json, tmsh.txt, README.md (for the network team)")
        return
    _apply(base, api, folder / "as3.json", dry_run=not yes, timeout=timeout)


def _quiet_if_insecure(api: Api) -> None:
    from builder.core.log import log

    if api.session.verify is False:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        log.warning("not verifying the BIG-IP's certificate (--insecure)")


def _status(base: str, api: Api, cluster: Cluster) -> None:
    from builder.f5 import status
    from builder.stages import f5plan as plan

    p = plan.plan(cluster)
    states = {pool.name: status.pool_members(base, api, p, pool.name) for pool in p.pools}
    lines, problems = status.report(states, p)
    for line in lines:
        click.echo(line)
    if problems:
        raise PghaError(f"not healthy: {'; '.join(problems)}",
                        hint="ask the database team for `patronictl list`; check the "
                             "monitors' reasons above")


def _apply(base: str, api: Api, path: Path, dry_run: bool, timeout: int) -> None:
    import json

    from builder.f5 import apply

    decl = json.loads(path.read_text())
    mode = "dry-run (controls.dryRun=true)" if dry_run else "deploy"
    click.echo(f"AS3 {mode}: {path} -> {base}{apply.DECLARE}")
    outcome = apply.apply(base, api, decl, dry_run, wait_s=timeout)
    for line in outcome.lines:
        click.echo(line)
    if outcome.errors:
        for line in outcome.errors:
            click.echo(f"  {line}", err=True)
        raise ValidationFailed(f"AS3 did not apply the declaration: {len(outcome.errors)} "
                               "error(s), listed above",
                               hint="fix the cluster file (or the BIG-IP), regenerate, retry")
    if dry_run:
        click.echo("dry-run only: nothing was changed. Deploy with --yes.")
    else:
        click.echo("deployed: verify with the commands in README.md")
