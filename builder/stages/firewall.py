"""Firewall by source: firewalld rich rules for each node, rendered from the model and checked.

Boundary: pure rendering of rules (`node_rules`), plus `check_rules`, which loads the role's
firewalld services and a node's rules into a scratch firewalld configuration with the real
`firewall-offline-cmd --system-config` (Debian package `firewalld`) and reads them back.

Each role's `firewall` entries name a firewalld service (shipped in the role RPM) and who may
use it (`sources`): nodes with a role capability (etcd_member, postgres, load_balancer) by their
/32 address (with `load_balancer.kind: f5`, the BIG-IP's `f5.self_ips` are the load balancers),
`clients`, the cluster's `network.client_networks`, and `monitoring`, its Prometheus servers
(`monitoring.sources`, none while monitoring is off). A service with sources is
never opened to the whole zone; the agent adds one rule per (source, service):
`rule family="ipv4" source address="10.77.0.12/32" service name="pgha-etcd" accept`.
Addresses and names come from typed model fields (IPv4 addresses, role-file service names), so
nothing in a rule can be user text.
"""

from __future__ import annotations

import ipaddress
import shutil
import tempfile
from pathlib import Path

from builder.core.errors import ValidationFailed
from builder.core.run import Runner, require
from builder.model import roles
from builder.model.cluster import Cluster, Node

DEFAULT_ZONE = "public"


def sources(cluster: Cluster, kinds: list[str]) -> list[ipaddress.IPv4Network]:
    """The networks a firewall service admits: node addresses (/32) by capability, and
    the client networks."""
    nets: list[ipaddress.IPv4Network] = []
    for kind in kinds:
        if kind == "clients":
            nets += list(cluster.network.client_networks or [])
            continue
        if kind == "monitoring":
            nets += list(cluster.monitoring.sources) if cluster.monitoring.enabled else []
            continue
        for n in cluster.nodes:
            if any(getattr(roles.get(r), kind) for r in n.roles):
                nets.append(ipaddress.IPv4Network(f"{n.address}/32"))
        if kind == "load_balancer" and cluster.load_balancer.kind == "f5":  # a BIG-IP
            nets += [ipaddress.IPv4Network(f"{a}/32") for a in cluster.load_balancer.f5.self_ips]
    return sorted(set(nets), key=lambda net: (int(net.network_address), net.prefixlen))


def rich_rule(source: ipaddress.IPv4Network, service: str) -> str:
    return f'rule family="ipv4" source address="{source}" service name="{service}" accept'


def node_rules(cluster: Cluster, node: Node) -> list[str]:
    """The rich rules of every source-limited firewall service of the node's roles."""
    out: list[str] = []
    for role_name in node.roles:
        for svc in roles.get(role_name).firewall:
            out += [rich_rule(src, svc.name) for src in sources(cluster, list(svc.sources))]
    return list(dict.fromkeys(out))


def open_services(node: Node) -> list[str]:
    """Firewall services opened to the whole zone (those without sources)."""
    return [svc.name for r in node.roles for svc in roles.get(r).firewall if not svc.sources]


def check_rules(runner: Runner, services: dict[str, str], rules: list[str],
                where: str) -> None:
    """Load `services` (name -> firewalld service XML) and `rules` into a scratch firewalld
    configuration with firewall-offline-cmd, and check that it lists exactly these rules.
    Raises ValidationFailed naming `where` and the first rule firewalld refused."""
    require("firewall-offline-cmd")
    work = Path(tempfile.mkdtemp(prefix="pgha-firewalld-"))
    try:
        (work / "services").mkdir()
        for name, xml in services.items():
            (work / "services" / f"{name}.xml").write_text(xml)
        conf = Path("/etc/firewalld/firewalld.conf")
        if conf.is_file():
            shutil.copy(conf, work / "firewalld.conf")
        base = ["firewall-offline-cmd", "--system-config", str(work)]
        for rule in rules:
            done = runner.run([*base, f"--zone={DEFAULT_ZONE}", f"--add-rich-rule={rule}"],
                              check=False)
            if done.returncode != 0:
                raise ValidationFailed(
                    f"{where}: firewalld refused rule {rule!r}: {done.stderr.decode(errors='replace').strip()[-200:]}",
                    hint="fix the role's firewall entry or the cluster's client_networks")
        listed = runner.run([*base, f"--zone={DEFAULT_ZONE}", "--list-rich-rules"]).stdout.decode()
        missing = [r for r in rules if r not in listed.splitlines()]
        unknown = sorted({r.split('service name="')[1].split('"')[0] for r in rules} - set(services))
        if missing or unknown:
            raise ValidationFailed(
                f"{where}: firewalld config check failed: "
                + (f"rules not listed back: {missing[:1]}" if missing else
                   f"no firewalld service named {', '.join(unknown)}"),
                hint="every source-limited rule must name a service of the node's roles")
    finally:
        shutil.rmtree(work, ignore_errors=True)
