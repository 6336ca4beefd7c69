"""PXE lab installs: per-host kickstarts, a TFTP tree for BIOS and UEFI, and a dnsmasq snippet.

- output/<cluster>/kickstart/hosts/<host>.ks: rendered from kickstart/hosts/host.ks.j2 (static
  address, host name, the host's role packages, %post fetching the host's seed from `serve`),
  validated with pykickstart. No secrets inside, so they are not secret artifacts.
- output/<cluster>/pxe/tftp/: pxelinux.0 + ldlinux.c32 (BIOS, pxelinux.cfg/01-<mac>), GRUB
  from grub-mknetdir (UEFI, grub/grub.cfg dispatching on the MAC to grub/grub.cfg-01-<mac>),
  and the installer kernel and initrd from the install source, under rhel8/.
- output/<cluster>/pxe/dnsmasq.conf: dhcp-host per MAC, boot file per client architecture.
Every entry points `inst.ks=` and `inst.repo=` at `pgha-build serve` (the host and port of
repos.pgha). Hosts without a MAC get a kickstart but no PXE entry, with a warning.
"""

from __future__ import annotations

import ipaddress
import shutil
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from builder import __version__
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.log import log
from builder.core.run import require
from builder.core.state import Artifact, cached_stage, input_key
from builder.model import minorpolicy, roles
from builder.model.cluster import Node
from builder.pxe import seedauth, serve
from builder.stages import installsrc, kickstart, signing
from builder.stages.seeds import SEED_FILES, render

HOST_TEMPLATE = Path("kickstart/hosts/host.ks.j2")
PXELINUX = Path("/usr/lib/PXELINUX/pxelinux.0")
LDLINUX = Path("/usr/lib/syslinux/modules/bios/ldlinux.c32")
GRUB_EFI = Path("/usr/lib/grub/x86_64-efi")
BOOT_DIR = "rhel8"
GRUB_CORE = "grub/x86_64-efi/core.efi"


def serve_base(ctx: Context) -> str:
    """Where `pgha-build serve` is reached: scheme://host:port of repos.pgha."""
    parts = urllib.parse.urlsplit(ctx.cluster.repos.pgha)
    return f"{parts.scheme}://{parts.netloc}"


def mac_dashes(mac: str) -> str:
    return mac.replace(":", "-")


def host_context(ctx: Context, node: Node) -> dict[str, object]:
    node_roles = [roles.get(r) for r in node.roles]
    volume = next((r.data_volume for r in node_roles if r.data_volume), None)
    context = render.base_context(ctx.cluster)
    packages = [r.package for r in node_roles]
    return {**context, **signing.kickstart_context(ctx, packages), "node": node,
            "role": node_roles[0],
            "data_volume": render.render_string(volume, context) if volume else None,
            "packages": packages, "device": node.mac or "link",
            "netmask": str(ctx.cluster.network.cidr.netmask),
            "fqdn": f"{node.name}.{ctx.cluster.network.domain}",
            "seed_url": f"{serve.seed_base(ctx.cluster)}/seeds/{node.name}/",
            "seed_ca": _seed_ca(ctx), "seed_files": SEED_FILES}


def _seed_ca(ctx: Context) -> str | None:
    """The cluster CA certificate (PEM, re-encoded from the parsed certificate) that %post
    checks serve's certificate with; None with image.seeds_over_http."""
    if ctx.cluster.image.seeds_over_http:
        return None
    cert = x509.load_pem_x509_certificate(seedauth.ca_pem(ctx.out, ctx.cluster).encode())
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def render_host(ctx: Context, node: Node) -> str:
    return render.render_file(render.template(HOST_TEMPLATE), host_context(ctx, node))


def write_host_kickstarts(ctx: Context) -> list[Artifact]:
    rendered = {n.name: render_host(ctx, n) for n in ctx.cluster.nodes}
    key = input_key("kickstart-hosts", __version__, sorted(rendered.items()))
    arts = [Artifact("kickstart", f"kickstart/hosts/{h}.ks", host=h) for h in rendered]

    def write() -> None:
        kickstart.require_valid({f"hosts/{h}.ks": t for h, t in rendered.items()},
                                hint="fix kickstart/hosts/host.ks.j2 or the "
                                     "partials")
        for host, text in rendered.items():
            atomic_write(ctx.out.kickstart / "hosts" / f"{host}.ks", text)
        ctx.messages.append(f"pxe: wrote {len(rendered)} host kickstart(s)")

    return cached_stage(ctx, "kickstart-hosts", key, arts, write,
                        fresh="pxe: host kickstarts up to date")


def install_repo(ctx: Context, src: installsrc.InstallSource) -> str:
    if src.kind == "url":
        return src.location
    if src.kind == "dir":
        return f"{serve_base(ctx)}/install/"
    raise PghaError("PXE installs need an install tree folder or URL, not an ISO",
                    hint=f"mount it (mount -o loop,ro {src.location} /mnt/rhel8) and pass "
                         "--install-source /mnt/rhel8")


def kernel_args(ctx: Context, node: Node, repo: str) -> str:
    """The installer's command line; it carries the host's seed token and the CA fingerprint
    that its kickstart's %post checks (builder.pxe.seedauth), so these files are secret."""
    seed = f"pgha.seed_token={seedauth.host_token(seedauth.token_key(ctx.out), node.name)}"
    ca = _seed_ca(ctx)
    if ca is not None:
        seed += f" pgha.seed_ca={seedauth.ca_fingerprint(ca)}"
    return (f"inst.ks={serve_base(ctx)}/kickstart/hosts/{node.name}.ks inst.repo={repo} "
            f"{seed} inst.text console=tty0 console=ttyS0,115200n8")


def pxelinux_cfg(ctx: Context, node: Node, repo: str) -> str:
    return (f"# {render.header()}\n"
            f"DEFAULT install\nPROMPT 0\nTIMEOUT 30\n\nLABEL install\n"
            f"  MENU LABEL Install {node.name} ({', '.join(node.roles)}) of {ctx.cluster.name}\n"
            f"  KERNEL {BOOT_DIR}/vmlinuz\n"
            f"  APPEND initrd={BOOT_DIR}/initrd.img ip=dhcp {kernel_args(ctx, node, repo)}\n")


def grub_host_cfg(ctx: Context, node: Node, repo: str) -> str:
    return (f"# {render.header()}\n"
            f"set timeout=3\nmenuentry 'Install {node.name} of {ctx.cluster.name}' {{\n"
            f"  linux /{BOOT_DIR}/vmlinuz ip=dhcp {kernel_args(ctx, node, repo)}\n"
            f"  initrd /{BOOT_DIR}/initrd.img\n}}\n")


def grub_main_cfg(nodes: list[Node]) -> str:
    lines = [f"# {render.header()}",
             "# Each host's entry is grub.cfg-01-<mac>; unknown machines boot from disk."]
    for node in nodes:
        lines += [f'if [ "$net_default_mac" = "{node.mac}" ]; then',
                  f"  configfile $prefix/grub.cfg-01-{mac_dashes(str(node.mac))}", "fi"]
    lines += ["set timeout=5", "menuentry 'Boot from local disk' {", "  exit", "}"]
    return "\n".join(lines) + "\n"


PXELINUX_DEFAULT = "DEFAULT local\nPROMPT 0\nLABEL local\n  LOCALBOOT 0\n"


def server_address(ctx: Context) -> str:
    host = urllib.parse.urlsplit(ctx.cluster.repos.pgha).hostname or ""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return str(ctx.cluster.network.gateway)


def dnsmasq_conf(ctx: Context, nodes: list[Node], tftp_root: Path) -> str:
    server = server_address(ctx)
    net = ctx.cluster.network
    lines = [f"# {render.header()}",
             (f"# PXE for cluster {ctx.cluster.name}: dnsmasq --conf-file=THIS (or copy it to "
             "/etc/dnsmasq.d/)"), "# Only the hosts below get an address (static leases).",
             f"dhcp-range={net.cidr.network_address},static,{net.cidr.netmask},1h",
             f"dhcp-option=option:router,{net.gateway}",
             f"dhcp-option=option:dns-server,{','.join(str(d) for d in net.dns)}",
             f"domain={net.domain}", "enable-tftp", f"tftp-root={tftp_root.resolve()}",
             "# client architecture 7 and 9: x86-64 UEFI; anything else: BIOS",
             "dhcp-match=set:efi-x86_64,option:client-arch,7",
             "dhcp-match=set:efi-x86_64,option:client-arch,9",
             f"dhcp-boot=tag:!efi-x86_64,pxelinux.0,pgha-pxe,{server}",
             f"dhcp-boot=tag:efi-x86_64,{GRUB_CORE},pgha-pxe,{server}"]
    lines += [f"dhcp-host={n.mac},{n.name},{n.address}" for n in nodes]
    return "\n".join(lines) + "\n"


def _tftp_files(ctx: Context, nodes: list[Node], repo: str) -> dict[str, str]:
    files = {"pxelinux.cfg/default": PXELINUX_DEFAULT, "grub/grub.cfg": grub_main_cfg(nodes),
             # the public key the host kickstarts carry, for checking by hand (docs/signing.md)
             signing.KEY_FILE: signing.signing_key(ctx).public}
    for node in nodes:
        mac = mac_dashes(str(node.mac))
        files[f"pxelinux.cfg/01-{mac}"] = pxelinux_cfg(ctx, node, repo)
        files[f"grub/grub.cfg-01-{mac}"] = grub_host_cfg(ctx, node, repo)
    return files


def pxe_nodes(ctx: Context) -> list[Node]:
    nodes = []
    for node in ctx.cluster.nodes:
        if node.mac is None:
            log.warning("pxe: %s has no mac in the cluster file: no PXE entry (its kickstart "
                        "is still written; boot it with inst.ks= by hand)", node.name)
        else:
            nodes.append(node)
    return nodes


def _boot_loaders(ctx: Context, tftp: Path) -> None:
    for path in (PXELINUX, LDLINUX):
        if not path.is_file():
            raise PghaError(f"{path} is missing",
                            hint="apt-get install pxelinux syslinux-common "
                                 "(RHEL 8: dnf install syslinux-tftpboot)")
        shutil.copyfile(path, tftp / path.name)
    require("grub-mknetdir")
    ctx.runner.run(["grub-mknetdir", f"--net-directory={tftp}", "--subdir=grub",
                    "-d", str(GRUB_EFI)])


def build_pxe(ctx: Context, location: str | None) -> list[Artifact]:
    """Write the host kickstarts, the TFTP tree and dnsmasq.conf."""
    arts = write_host_kickstarts(ctx)
    where = location or ctx.cluster.image.install_source
    if not where:
        raise PghaError("no install source for the PXE kernel and initrd",
                        hint="set image.install_source or pass --install-source")
    src = installsrc.load(where, ctx.runner)
    problem = minorpolicy.minor_problem(ctx.cluster, src.version)
    if problem:
        raise PghaError(problem.split(": the install")[0],
                        hint="use RHEL 8.10 media, or pin a Patroni built for python3.6 "
                             "(pins: {patroni: 4.0.5-3PGDG.rhel8}); see docs/rhel8.md")
    nodes = pxe_nodes(ctx)
    tftp = ctx.out.pxe / "tftp"
    files = _tftp_files(ctx, nodes, install_repo(ctx, src))
    conf = dnsmasq_conf(ctx, nodes, tftp)
    key = input_key("pxe", __version__, src.identity, sorted(files.items()), conf)
    names = ["pxelinux.0", "ldlinux.c32", GRUB_CORE, f"{BOOT_DIR}/vmlinuz",
             f"{BOOT_DIR}/initrd.img", *files]
    # per-host boot entries carry the host's seed token: secret, never published
    pxe_arts = [Artifact("pxe", f"pxe/tftp/{n}", secret="-01-" in n or "/01-" in n)
                for n in names]
    pxe_arts.append(Artifact("pxe", "pxe/dnsmasq.conf"))

    def write() -> None:
        shutil.rmtree(tftp, ignore_errors=True)
        tftp.mkdir(parents=True)
        _boot_loaders(ctx, tftp)
        installsrc.copy_boot_files(src, tftp / BOOT_DIR, ctx.runner)
        for rel, text in files.items():
            atomic_write(tftp / rel, text)
        atomic_write(ctx.out.pxe / "dnsmasq.conf", conf)
        ctx.messages.append(f"pxe: {len(nodes)} host(s) in {tftp}, dnsmasq snippet "
                            f"{ctx.out.pxe / 'dnsmasq.conf'}")

    return arts + cached_stage(ctx, "pxe", key, pxe_arts, write, fresh="pxe: up to date")

