"""Commands that make machines: images (per role), pxe (lab installs), serve (HTTP for both)."""

from __future__ import annotations

import click

from builder.cli import App, cli, pass_app
from builder.core.context import Context
from builder.core.errors import ConfigError, PghaError
from builder.core.log import log
from builder.images import backends
from builder.model import imageformats


def _formats(value: str | None, app: App) -> tuple[str, ...]:
    if value is None:
        return tuple(app.cluster.image.formats)
    try:
        return tuple(imageformats.parse_formats(value))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _warn_if_unbooted(app: App, role: str) -> None:
    """A role that only ever comes second (the reference cluster's backup, on lb1) has no
    image of its own in this cluster: say which image its nodes boot instead."""
    from builder.model import roles

    if role in roles.image_roles(app.cluster.nodes):
        return
    hosts = [n for n in app.cluster.nodes if role in n.roles]
    if hosts:
        log.warning("no node of %s boots a '%s' image: %s boot(s) the %s image, which carries "
                    "the %s role; building a stand-alone '%s' image anyway",
                    app.cluster.name, role, ", ".join(n.name for n in hosts),
                    "/".join(sorted({n.roles[0] for n in hosts})), role, role)


def _backend_context(own: Context, backend: str) -> Context:
    """The context the backend builds in: the user's, or for the lab's platform (debian12) the
    cluster exactly as `lab up --engine vm` runs it, with its artifacts under
    output/<cluster>/debian12/ (where the lab builds its RPMs and images), listed in the same
    manifest: the image built here is the one the lab boots."""
    platform = backends.get(backend).platform
    if platform is None or platform == own.cluster.platform:
        return own
    from builder.lab.lab import lab_cluster

    return Context(cluster=lab_cluster(own.cluster, engine="vm"),
                   out=own.out.for_platform(platform), runner=own.runner, epoch=own.epoch,
                   force=own.force)


@cli.command()
@click.option("--role", required=True, metavar="ROLE",
              help="The role image to bake: a role that nodes have first (db, haproxy in the "
                   "reference cluster). The image also carries the other roles of those nodes "
                   "(haproxy's carries backup when lb1 is both).")
@click.option("--format", "formats", metavar="LIST", help=imageformats.cli_help())
@click.option("--backend", type=click.Choice(backends.NAMES), default=backends.NAMES[0],
              show_default=True, help=backends.cli_help())
@click.option("--install-source", metavar="PATH_OR_URL",
              help="RHEL 8 DVD ISO, install tree or URL (default: image.install_source).")
@click.option("--cloud-image", metavar="QCOW2", help="KVM Guest Image for --backend cloud-image.")
@click.option("--deps-repo", type=click.Path(exists=True, file_okay=False), metavar="DIR",
              help="cloud-image: a local dnf repository of the role's dependencies (offline).")
@click.option("--kvm/--no-kvm", default=None, help="Default: KVM when /dev/kvm works.")
@click.option("--qcow2-compression", type=click.Choice(["zlib", "zstd"]), default="zlib",
              show_default=True, help="zstd is faster but needs qemu >= 5.1 to read.")
@click.option("--blueprint", is_flag=True,
              help="Also write an image-builder blueprint (TOML) beside the kickstarts.")
@click.option("--depsolve/--no-depsolve", default=True, show_default=True,
              help="Resolve the role's packages with dnf against its repositories first.")
@click.option("--dry-run", is_flag=True, help="Print the commands instead of running them.")
@click.option("--force", is_flag=True, help="Rebuild even if inputs are unchanged.")
@pass_app
def images(app: App, role: str, formats: str | None, backend: str, install_source: str | None,
           cloud_image: str | None, deps_repo: str | None, kvm: bool | None,
           qcow2_compression: str, blueprint: bool, depsolve: bool, dry_run: bool,
           force: bool) -> None:
    """Build a bootable disk image of one role (RHEL 8, or the lab's Debian 12 with --backend
    debian12), in each format, cached on its inputs.

    The image must let someone in: it needs admin.ssh_key in the cluster file, or admin.login:
    none to build an image without any login on purpose (build, pxe and lab do not ask)."""
    from builder.images import cloudimage, preflight
    from builder.images import stage as imagemod
    from builder.model import roles
    from builder.stages import pipeline

    roles.get(role)
    _warn_if_unbooted(app, role)
    own = app.context(force)
    preflight.require_login(own.cluster)
    ctx = _backend_context(own, backend)
    opts = imagemod.ImageOptions(
        role=role, formats=_formats(formats, app), backend=backend,
        install_source=install_source, cloud_image=cloud_image, deps_repo=deps_repo, kvm=kvm,
        compression=qcow2_compression, dry_run=dry_run,  # type: ignore[arg-type]
        depsolve=depsolve)
    if blueprint:
        for path in cloudimage.write_blueprint(own, role):
            click.echo(f"wrote {path}")
        pipeline.run_steps(own, [pipeline.MANIFEST])
    if not dry_run:
        # the manifest now too: SHA256SUMS stays right if the image build then fails
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
        pipeline.run_steps(own, [pipeline.MANIFEST])
        ctx.messages.clear()
    result = imagemod.build_images(ctx, opts)
    if dry_run:
        click.echo("\n".join(result.dry_run) or "# nothing to do: every image is up to date")
        return
    if ctx is not own:
        own.messages.extend(ctx.messages)
    pipeline.run_steps(own, [pipeline.MANIFEST])
    for art in result.artifacts:
        click.echo(f"{ctx.out.root / art.path}")


@cli.command()
@click.option("--install-source", metavar="PATH_OR_URL",
              help="RHEL 8 install tree or URL for the kernel, initrd and inst.repo.")
@click.option("--force", is_flag=True, help="Rewrite even if inputs are unchanged.")
@pass_app
def pxe(app: App, install_source: str | None, force: bool) -> None:
    """Write host kickstarts, a BIOS+UEFI TFTP tree and dnsmasq.conf to OUTPUT/<cluster>/pxe/."""
    from builder.pxe import tree as pxemod
    from builder.stages import pipeline

    ctx = app.context(force)
    step = ("pxe", lambda c: pxemod.build_pxe(c, install_source))
    pipeline.run_steps(ctx, [pipeline.KICKSTART, step, pipeline.MANIFEST])
    click.echo(f"PXE tree in {ctx.out.pxe}; start `pgha-build serve` and dnsmasq with "
               f"{ctx.out.pxe / 'dnsmasq.conf'}")


@cli.command()
@click.option("--bind", metavar="ADDR:PORT",
              help="Default: the host and port of repos.pgha (what the kickstarts use).")
@click.option("--install-source", metavar="DIR", help="Also serve this install tree at /install/.")
@click.option("--boot-args", metavar="HOST",
              help="Print the kernel command line words with which HOST's first-boot agent "
                   "fetches its seed from serve (pgha.seed=, pgha.seed_token=, pgha.seed_ca=) "
                   "and exit. They hold the host's token: keep them private.")
@pass_app
def serve(app: App, bind: str | None, install_source: str | None,
          boot_args: str | None) -> None:
    """Serve kickstarts, the pgha repository, seeds (each only to its host) and the PXE tree."""
    from builder.core import httpserve
    from builder.pxe import seedauth
    from builder.pxe import serve as servemod

    cluster = app.cluster
    if boot_args is not None:
        click.echo(servemod.boot_args(cluster, app.context().out, boot_args))
        return
    try:
        address = servemod.parse_bind(bind) if bind else servemod.default_bind(cluster)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    ctx = app.context()
    mounts = servemod.mounts(cluster, ctx.out, install_source or cluster.image.install_source)
    seeds = servemod.seed_mount(cluster, ctx.out)
    plain = cluster.image.seeds_over_http
    seed_bind = (address[0], cluster.image.seed_port)
    tls = None if plain else seedauth.server_context(ctx.out, cluster,
                                                     servemod.default_bind(cluster)[0])
    try:
        server = httpserve.Server(address, [*mounts, seeds] if plain else mounts)
        others = [] if plain else [httpserve.Server(seed_bind, [seeds, servemod.ca_mount(
            ctx.out)], tls)]
    except OSError as exc:
        raise PghaError(f"cannot listen on {address[0]}:{address[1]} / {seed_bind[1]}: "
                        f"{exc.strerror}", hint="use --bind with an address of this host and "
                        "free ports (the seed port is image.seed_port)") from None
    click.echo(f"serving {ctx.out.root} on {server.url} (read-only; Ctrl-C stops)", err=True)
    for srv in [server, *others]:
        for mount in srv.mounts:
            click.echo(f"  {srv.url}{mount.prefix} <- {mount.root}", err=True)
    if plain:
        click.echo("warning: image.seeds_over_http: seeds cross the network in clear text "
                   "(lab only)", err=True)
    httpserve.serve_until_interrupted(server, *others)
