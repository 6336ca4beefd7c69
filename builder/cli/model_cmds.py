"""Commands about the cluster description itself: init, check, show, schema."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click

from builder.cli import App, cli, pass_app
from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.paths import EXAMPLE_CLUSTER

EXAMPLE = EXAMPLE_CLUSTER
EXAMPLE_VIP = EXAMPLE_CLUSTER.with_name("cluster-vip.yaml")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path), default=Path("cluster.yaml"))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--vip", is_flag=True,
              help="The reference cluster with two load balancers and a virtual IP (keepalived).")
def init(path: Path, force: bool, vip: bool) -> None:
    """Write a commented cluster file (the built-in reference lab) to PATH."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "a directory" if stat.S_ISDIR(
            info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise PghaError(f"{path} is {kind}: init writes only regular files",
                        hint="give the path of a new .yaml file")
    if info is not None and not force:
        raise PghaError(f"{path} already exists", hint="pass --force to overwrite it")
    atomic_write(path, (EXAMPLE_VIP if vip else EXAMPLE).read_text())
    click.echo(f"wrote {path}: edit it, then run `pgha-build -c {path} check`")


LEADER_HELP = ("The current primary (as `patronictl list` shows it): a change that removes or "
               "re-images it is refused (switch over first). Default: asked from this "
               "cluster's running lab, if there is one; else unknown (a warning).")


def current_leader(app: App, given: str | None) -> tuple[str | None, str]:
    """(the current primary, who said so): --leader, else the running lab of this cluster,
    else (None, ""). Never asks a real cluster over the network: check runs offline."""
    if given is not None:
        return given, "--leader"
    from builder.cli.labapp import lab_of

    try:
        lab_ = lab_of(app)
        if not lab_.running():
            return None, ""
        from builder.lab.readiness import leader

        return leader(lab_), "the running lab says so"
    except PghaError:
        return None, ""


def leader_gate(app: App, given: str | None) -> None:
    """Refuse a change that removes or re-images the current primary; warn when a database
    node goes and the primary is not known."""
    from builder.core.errors import ConfigError
    from builder.model import roles
    from builder.stages import plan

    out = app.context(write=False).out
    if given is not None:
        known = {n.name for n in roles.nodes_with(app.cluster.nodes, "postgres")}
        known |= set(plan.db_seeds(out))
        if given not in known:
            raise PghaError(f"--leader {given}: not a database node of this cluster or of its "
                            "last build", hint=f"one of: {', '.join(sorted(known))}")
    if not plan.leaving_db(app.cluster, out):
        return
    problems, warnings = plan.leader_problems(app.cluster, out, *current_leader(app, given))
    for warning in warnings:
        click.echo(f"warning: nodes: {warning}", err=True)
    if problems:
        raise ConfigError("the cluster file removes the current primary", problems,
                          hint="switch over first (docs/lifecycle.md)")


@cli.command()
@click.option("--deep", is_flag=True,
              help="Also validate generated configs with the real tools (patroni, haproxy, etcd).")
@click.option("--depsolve", is_flag=True,
              help="Also resolve each role's kickstart packages with dnf against its "
                   "repositories (builds the RPMs first; needs dnf and the repositories).")
@click.option("--leader", metavar="NODE", help=LEADER_HELP)
@pass_app
def check(app: App, deep: bool, depsolve: bool, leader: str | None) -> None:
    """Validate the cluster file (every error with its YAML path) and the kickstarts. Against
    the last build's seeds (output/<cluster>/seeds/): refuse a change that loses etcd quorum or
    removes the current primary (see --leader); warn on an even number of etcd members."""
    from builder.model import roles, tlsplan
    from builder.model import rules as validate
    from builder.stages import kickstart

    cluster = app.cluster
    report = validate.check(cluster)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    from builder.core.errors import ConfigError
    from builder.stages import plan

    quorum = plan.membership_problems(cluster, app.context(write=False).out)
    if quorum:
        raise ConfigError("the cluster file would lose etcd quorum against the last build",
                          quorum, hint="remove fewer etcd members at once (see `pgha-build "
                                       "plan`, docs/lifecycle.md)")
    leader_gate(app, leader)
    for line in tlsplan.expiry_warnings(app.context(write=False).out):
        click.echo(f"warning: {line}: `pgha-build seeds --rotate-certs` issues new ones", err=True)
    kickstart.check_all(app.context(write=False))
    if deep:
        from builder.stages import deepcheck

        deepcheck.run(app.context())
    if depsolve:
        from builder.stages import depsolve as gate
        from builder.stages import pipeline

        ctx = app.context()
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS, pipeline.MANIFEST])
        for result in gate.run(ctx):
            click.echo(gate.summary(result))
    known = roles.all_roles()
    db = len([n for n in cluster.nodes if any(known[r].postgres for r in n.roles)])
    click.echo(f"ok: cluster '{cluster.name}' is valid ({len(cluster.nodes)} nodes, "
               f"{db} database), kickstarts pass pykickstart's RHEL 8 parser")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML.")
@click.option("--origin", is_flag=True,
              help="One line per value with where it comes from: file, profile <name>, "
                   "default, or default from <field>.")
@pass_app
def show(app: App, as_json: bool, origin: bool) -> None:
    """Print the fully resolved cluster (every default filled in)."""
    import yaml

    from builder.model.cluster import resolved_dict

    if origin:
        _show_origins(app)
        return
    data = resolved_dict(app.cluster)
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)


def _show_origins(app: App) -> None:
    from builder.model import yamlfile
    from builder.model.origins import origins

    cluster = app.cluster
    data = None
    if app.cluster_file is not None:
        data = yamlfile.parse(app.cluster_file, yamlfile.read_text(app.cluster_file))[0]
    rows = [(f"{path}: {json.dumps(value)}", where) for path, value, where
            in origins(cluster, data)]
    width = min(max(len(text) for text, _ in rows), 60)
    for text, where in rows:
        click.echo(f"{text.ljust(width)}  # {where}")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of the cluster file (for editor completion)."""
    from builder.model.schema import json_schema

    click.echo(json.dumps(json_schema(), indent=2))
