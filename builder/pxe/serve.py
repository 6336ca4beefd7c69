"""`pgha-build serve`: what PXE installs and image builds fetch over HTTP, read-only.

URL layout (under http://ADDR:PORT):
  /kickstart/   output/<cluster>/kickstart/ (role kickstarts, hosts/<host>.ks)
  /repo/        output/<cluster>/rpms/ (the pgha dnf repository)
  /seeds/       output/<cluster>/seeds/: /seeds/<host>/... and /seeds/<host>-cidata.iso are
                served only to a client whose address is that host's address (403 otherwise)
  /pxe/         output/<cluster>/pxe/ (the PXE tree: kernel, initrd, boot loader configs)
  /install/     the install tree, when the install source is a local folder
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from pathlib import Path

from builder.core.paths import OutputPaths
from builder.model.cluster import Cluster
from builder.pxe.httpserve import AccessRule, Mount

DEFAULT_PORT = 8080


def seed_rule(cluster: Cluster) -> AccessRule:
    """Allow a seed path only to the address of the host it belongs to."""
    owners = {n.name: str(n.address) for n in cluster.nodes}

    def allow(client: str, rel: str) -> bool:
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
        return str(mapped) == owner

    return allow


def mounts(cluster: Cluster, out: OutputPaths, install_tree: str | None) -> list[Mount]:
    served = [Mount("/kickstart/", out.kickstart), Mount("/repo/", out.rpms),
              Mount("/seeds/", out.seeds, allow=seed_rule(cluster)), Mount("/pxe/", out.pxe)]
    if install_tree and not install_tree.startswith(("http://", "https://", "ftp://")) \
            and Path(install_tree).is_dir():
        served.append(Mount("/install/", Path(install_tree)))
    return served


def default_bind(cluster: Cluster) -> tuple[str, int]:
    """The host and port of repos.pgha: the address the kickstarts point at."""
    parts = urllib.parse.urlsplit(cluster.repos.pgha)
    return parts.hostname or "0.0.0.0", parts.port or DEFAULT_PORT


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--bind {text}: expected ADDR:PORT, e.g. 10.77.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)
