"""Which certificates each node gets, and the cluster's PKI loaded (or made) for a build.

Boundary: turns the model and the roles' `certificates` into CertSpecs (names, usages) and asks
`builder.model.pki` to issue what is missing or stale. No TLS material when `tls.enabled` is
false. The names a certificate carries:
- every one: the node's short name, FQDN and address;
- `client_names` (PostgreSQL's, which clients reach through HAProxy in TCP mode, so the server
  certificate they verify is the database node's): the cluster's service names
  (`<cluster>.<domain>` first, then `tls.service_names`), the virtual IP, and each load
  balancer's name, FQDN and address;
- `loopback`: 127.0.0.1 and localhost (etcd's local client listener).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from builder.core.paths import OutputPaths
from builder.model import pki, roles
from builder.model import secrets as secretsmod
from builder.model.cluster import Cluster, Node
from builder.model.secrets import Secrets

OPERATOR_CN = "pgha-operator"
PROMETHEUS_CN = "pgha-prometheus"


def _names(cluster: Cluster, node: Node) -> tuple[list[str], list[str]]:
    return [node.name, f"{node.name}.{cluster.network.domain}"], [str(node.address)]


def client_names(cluster: Cluster) -> tuple[list[str], list[str]]:
    """(DNS names, addresses) clients may use to reach PostgreSQL through the load balancers."""
    dns, ips = list(cluster.service_names()), []
    if cluster.load_balancer.virtual_ip is not None:
        ips.append(str(cluster.load_balancer.virtual_ip))
    for lb in cluster.nodes:
        if any(roles.get(r).load_balancer for r in lb.roles):
            more_dns, more_ips = _names(cluster, lb)
            dns += more_dns
            ips += more_ips
    return dns, ips


def node_specs(cluster: Cluster, node: Node) -> dict[str, pki.CertSpec]:
    """certificate name -> what it must say, for every certificate of the node's roles."""
    specs: dict[str, pki.CertSpec] = {}
    for role_name in node.roles:
        for cert in roles.get(role_name).certificates:
            dns, ips = _names(cluster, node)
            if cert.client_names:
                more_dns, more_ips = client_names(cluster)
                dns += more_dns
                ips += more_ips
            if cert.loopback:
                dns.append("localhost")
                ips.append("127.0.0.1")
            if cert.address_as_dns:
                dns.append(str(node.address))
            specs[cert.name] = pki.CertSpec(
                common_name=f"{node.name}.{cluster.network.domain}",
                dns=tuple(dict.fromkeys(dns)), ips=tuple(dict.fromkeys(ips)),
                server=cert.server, client=cert.client)
    return specs


def _pair_paths(folder: Path, stem: str) -> tuple[Path, Path]:
    return folder / f"{stem}.crt", folder / f"{stem}.key"


def load_or_create(out: OutputPaths, cluster: Cluster, rotate: bool = False,
                   adopt_ca: bool = False) -> pki.Pki | None:
    """The cluster's PKI: its CA (made once, never again) and every node's certificates (issued
    when missing, stale or `rotate`). None when TLS is off."""
    if not cluster.tls.enabled:
        return None
    folder = out.pki
    ca = pki.load_or_create_ca(folder, cluster.name, cluster.tls.ca_days, adopt=adopt_ca)
    days = cluster.tls.cert_days
    operator, new = pki.ensure(ca, *_pair_paths(folder, "operator"),
                               pki.CertSpec(OPERATOR_CN, server=False), days, rotate)
    reissued = ["operator"] if new else []
    prometheus = None
    if cluster.monitoring.enabled:
        prometheus, new = pki.ensure(ca, *_pair_paths(folder, "prometheus"),
                                     pki.CertSpec(PROMETHEUS_CN, server=False), days, rotate)
        reissued += ["prometheus"] if new else []
    nodes: dict[str, dict[str, pki.Issued]] = {}
    for node in cluster.nodes:
        for name, spec in node_specs(cluster, node).items():
            pair, new = pki.ensure(ca, *_pair_paths(folder / "nodes" / node.name, name),
                                   spec, days, rotate)
            nodes.setdefault(node.name, {})[name] = pair
            if new:
                reissued.append(f"{node.name}/{name}")
    return pki.Pki(ca=ca, operator=operator, nodes=nodes, reissued=tuple(reissued),
                   prometheus=prometheus)


def read_existing(out: OutputPaths) -> dict[str, pki.Issued]:
    """Every certificate already under out.pki (label -> pair), read only: for `check`."""
    found: dict[str, pki.Issued] = {}
    for crt in sorted(out.pki.rglob("*.crt")) if out.pki.is_dir() else []:
        key = crt.with_suffix(".key")
        try:
            found[crt.relative_to(out.pki).with_suffix("").as_posix()] = pki.Issued(
                key.read_text() if key.exists() else "", crt.read_text())
        except (OSError, UnicodeDecodeError):
            continue
    return found


def expiry_warnings(out: OutputPaths, now: dt.datetime | None = None) -> list[str]:
    """One line per certificate under out.pki that expires within pki.WARN_DAYS days."""
    lines = []
    for label, when in pki.expiring(read_existing(out), now):
        state = "has expired" if when <= (now or dt.datetime.now(dt.UTC)) else "expires"
        lines.append(f"certificate {out.pki / label}.crt {state} on {when:%Y-%m-%d %H:%M} UTC")
    return lines


def load_secrets(out: OutputPaths, cluster: Cluster, rotate: bool = False,
                 rotate_certs: bool = False, adopt_ca: bool = False) -> Secrets:
    """The cluster's passwords (secrets.yaml) with its PKI: what every seed is rendered from."""
    sec = secretsmod.load_or_create(out, cluster.name, rotate=rotate)
    return sec.with_tls(load_or_create(out, cluster, rotate=rotate_certs, adopt_ca=adopt_ca))
