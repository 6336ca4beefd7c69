"""`pgha-build serve`: what PXE installs and image builds fetch over HTTP, read-only.

URL layout (under http://ADDR:PORT):
  /kickstart/   output/<cluster>/kickstart/ (role kickstarts, hosts/<host>.ks)
  /repo/        output/<cluster>/rpms/ (the pgha dnf repository)
  /seeds/       output/<cluster>/seeds/, on https://ADDR:image.seed_port (builder.pxe.seedauth):
                /seeds/<host>/... and /seeds/<host>-cidata.iso only to a client whose address
                is that host's and that presents the host's token (403 otherwise)
  /pki/ca.crt   on the seed port: the cluster CA certificate (public; nothing else of pki/),
                which the first-boot agent accepts only if its SHA-256 equals pgha.seed_ca=
  /pxe/         output/<cluster>/pxe/ (the PXE tree: kernel, initrd, boot loader configs)
  /install/     the install tree, when the install source is a local folder
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path

from builder.core.errors import ConfigError
from builder.core.httpserve import AccessRule, Mount
from builder.core.paths import OutputPaths
from builder.model.cluster import Cluster
from builder.pxe import seedauth

DEFAULT_PORT = 8080


def seed_rule(cluster: Cluster, key: bytes) -> AccessRule:
    """Allow a seed path only to the address of the host it belongs to, with its token."""
    owners = {n.name: str(n.address) for n in cluster.nodes}

    def allow(client: str, rel: str, authorization: str | None) -> bool:
        first = rel.split("/", 1)[0]
        host = first.removesuffix("-cidata.iso")
        owner = owners.get(host)
        if owner is None:
            return False
        try:
            mapped = ipaddress.ip_address(client)
            if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped:
                mapped = mapped.ipv4_mapped
        except ValueError:
            return False
        return seedauth.token_ok(key, host, authorization) and str(mapped) == owner

    return allow


def mounts(cluster: Cluster, out: OutputPaths, install_tree: str | None) -> list[Mount]:
    """The public mounts (kickstarts, repository, PXE tree, install tree)."""
    served = [Mount("/kickstart/", out.kickstart), Mount("/repo/", out.rpms),
              Mount("/pxe/", out.pxe)]
    if install_tree and not install_tree.startswith(("http://", "https://", "ftp://")) \
            and Path(install_tree).is_dir():
        served.append(Mount("/install/", Path(install_tree)))
    return served


def seed_mount(cluster: Cluster, out: OutputPaths) -> Mount:
    return Mount("/seeds/", out.seeds, allow=seed_rule(cluster, seedauth.token_key(out)))


def ca_mount(out: OutputPaths) -> Mount:
    """pki/ca.crt alone (every other file of pki/, the CA key first, answers 403)."""
    return Mount("/pki/", out.pki, allow=lambda client, rel, authorization: rel == "ca.crt")


def boot_args(cluster: Cluster, out: OutputPaths, host: str) -> str:
    """The kernel command line words that let HOST's first-boot agent fetch its seed from
    `serve`: the URL, the host's token and (over HTTPS) the CA's fingerprint. Secret."""
    node = next((n for n in cluster.nodes if n.name == host), None)
    if node is None:
        raise ConfigError(f"--boot-args {host}: no such node",
                        hint="one of: " + ", ".join(n.name for n in cluster.nodes))
    words = [f"pgha.seed={seed_base(cluster)}/seeds/{node.name}/",
             f"pgha.seed_token={seedauth.host_token(seedauth.token_key(out), node.name)}"]
    if cluster.image.seeds_over_http:
        words.append("pgha.seeds_over_http=1")
    else:
        words.append(f"pgha.seed_ca={seedauth.ca_fingerprint(seedauth.ca_pem(out, cluster))}")
    return " ".join(words)


def seed_base(cluster: Cluster) -> str:
    """Where hosts fetch their seeds: https://HOST:seed_port, or the repos.pgha server with
    image.seeds_over_http (lab only)."""
    parts = urllib.parse.urlsplit(cluster.repos.pgha)
    if cluster.image.seeds_over_http:
        return f"{parts.scheme}://{parts.netloc}"
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{cluster.image.seed_port}"


def default_bind(cluster: Cluster) -> tuple[str, int]:
    """The host and port of repos.pgha: the address the kickstarts point at."""
    parts = urllib.parse.urlsplit(cluster.repos.pgha)
    return parts.hostname or "0.0.0.0", parts.port or DEFAULT_PORT


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--bind {text}: expected ADDR:PORT, e.g. 10.77.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)
