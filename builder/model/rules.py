"""Cross-field rules a careful DBA would check, each reported with the YAML path it concerns.

Rules: unique names, addresses and MACs; addresses inside the network and off its reserved
addresses; known, assignable roles; an odd etcd membership of at least three; at least one
database node; no port used twice on one host; Patroni's timing rules; HAProxy's check timing
against the leader TTL; a virtual IP only with two load balancers; with an F5 BIG-IP
(`load_balancer.kind: f5`) the rules of model/f5.py instead of the HAProxy ones. Warnings do
not fail a build.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from builder.model import f5, gucpolicy, roles, sanity
from builder.model.backup import backup_rules
from builder.model.cluster import Cluster
from builder.model.types import MAX_FQDN


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Report:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(Problem(path, message))


# Rules about how many nodes have a role: meaningless once an invalid node was left out.
NODE_COUNT_PATHS = frozenset({"nodes", "patroni.synchronous_mode"})


def check(c: Cluster) -> Report:
    report = Report()
    for rule in (_unique, _addresses, _roles, _etcd, _ports, _timing, _load_balancer, _tls,
                 _parameters, _monitoring, backup_rules):
        rule(c, report)
    for level, path, message in sanity.check(c):
        (report.error if level == "error" else report.warn)(path, message)
    return report


def _unique(c: Cluster, r: Report) -> None:
    for attr in ("name", "address", "mac"):
        values = [getattr(n, attr) for n in c.nodes]
        counts = Counter(v for v in values if v is not None)
        seen: set[object] = set()
        for i, v in enumerate(values):
            if v is not None and counts[v] > 1:
                if v in seen:
                    r.error(f"nodes[{i}].{attr}", f"{v} is already used by another node")
                seen.add(v)


def _addresses(c: Cluster, r: Report) -> None:
    net = c.network.cidr
    reserved = {net.network_address, net.broadcast_address}
    if c.network.gateway not in net:
        r.error("network.gateway", f"{c.network.gateway} is outside network.cidr {net}")
    for i, n in enumerate(c.nodes):
        if n.address not in net:
            r.error(f"nodes[{i}].address", f"{n.address} is outside network.cidr {net}")
        elif n.address in reserved:
            r.error(f"nodes[{i}].address", f"{n.address} is the network or broadcast address")
        elif n.address == c.network.gateway:
            r.error(f"nodes[{i}].address", f"{n.address} is the gateway's address")
    _virtual_ip(c, r)
    for i, n in enumerate(c.nodes):
        fqdn = f"{n.name}.{c.network.domain}"
        if len(fqdn) > MAX_FQDN:
            r.error(f"nodes[{i}].name", f"the host name {fqdn[:40]}... is {len(fqdn)} characters; "
                    f"RFC 1123 allows {MAX_FQDN}: shorten network.domain")


def _virtual_ip(c: Cluster, r: Report) -> None:
    vip, net = c.load_balancer.virtual_ip, c.network.cidr
    if vip is None:
        return
    path = "load_balancer.virtual_ip"
    if vip not in net:
        if c.load_balancer.kind == "haproxy":  # a BIG-IP's VIP may be elsewhere: f5.check
            r.error(path, f"{vip} is outside network.cidr {net}")
    elif vip == net.network_address and net.prefixlen < 31:
        r.error(path, f"{vip} is the network address of {net}")
    elif vip == net.broadcast_address and net.prefixlen < 31:
        r.error(path, f"{vip} is the broadcast address of {net}")
    if vip == c.network.gateway:
        r.error(path, f"{vip} is the gateway's address")
    for i, n in enumerate(c.nodes):
        if n.address == vip:
            r.error(path, f"{vip} is the address of node {n.name} (nodes[{i}])")


def _roles(c: Cluster, r: Report) -> None:
    known = roles.assignable_roles()
    for i, n in enumerate(c.nodes):
        for j, name in enumerate(n.roles):
            if name not in known:
                r.error(f"nodes[{i}].roles[{j}]",
                        f"unknown role '{name}'; known roles: {', '.join(sorted(known))}")
        if len(set(n.roles)) != len(n.roles):
            r.error(f"nodes[{i}].roles", "a role is listed twice")
    db = roles.nodes_with(c.nodes, "postgres")
    if not db:
        r.error("nodes", "no node has a role that runs PostgreSQL (e.g. db)")
    if len(db) == 1:
        r.warn("nodes", "only one database node: there is nothing to fail over to")
    if c.patroni.synchronous_mode and len(db) < 2:
        r.error("patroni.synchronous_mode", "needs at least two database nodes")
    if c.load_balancer.kind == "haproxy" and not roles.nodes_with(c.nodes, "load_balancer"):
        r.warn("nodes", "no load balancer node: clients need an external load balancer")
    if c.admin.login == "none" and c.admin.ssh_key is not None:
        r.error("admin.login", "none, but admin.ssh_key is set: remove one of them")
    elif c.admin.ssh_key is None and c.admin.login == "ssh_key":
        r.warn("admin.ssh_key", "not set: nobody can log in over SSH to the installed nodes, "
               "and `images` refuses to build (set it, or admin.login: none on purpose)")


def _etcd(c: Cluster, r: Report) -> None:
    members = roles.nodes_with(c.nodes, "etcd_member")
    found = f"{len(members)}: {', '.join(n.name for n in members)}"
    if members and len(members) < 3:
        r.error("nodes", f"etcd needs at least 3 members to survive the loss of one (found "
                         f"{found})")
    elif len(members) % 2 == 0 and members:
        r.warn("nodes", f"an even number of etcd members ({found}) tolerates no more "
                        f"failures ({(len(members) - 1) // 2}) than {len(members) - 1} would: "
                        "add or remove one")


def _ports(c: Cluster, r: Report) -> None:
    known = roles.assignable_roles()
    for n in c.nodes:
        used: dict[int, str] = {}
        for name in n.roles:
            role = known.get(name)
            for port_name in role.ports if role else []:
                port, path = port_value(c, port_name)
                if port in used and used[port] != path:
                    r.error(path, f"port {port} on {n.name} is also used by {used[port]}")
                used.setdefault(port, path)


def port_value(c: Cluster, name: str) -> tuple[int, str]:
    """A role's port name (a field of `ports` or `load_balancer`) -> (number, YAML path)."""
    if name in type(c.ports).model_fields:
        return getattr(c.ports, name), f"ports.{name}"
    return getattr(c.load_balancer, name), f"load_balancer.{name}"


def _timing(c: Cluster, r: Report) -> None:
    p = c.patroni
    if p.ttl < 20:
        r.error("patroni.ttl", f"{p.ttl} is below Patroni's minimum of 20")
    if p.loop_wait < 1:
        r.error("patroni.loop_wait", f"{p.loop_wait} is below Patroni's minimum of 1")
    if p.retry_timeout < 3:
        r.error("patroni.retry_timeout", f"{p.retry_timeout} is below Patroni's minimum of 3")
    if p.loop_wait + 2 * p.retry_timeout > p.ttl:
        r.error("patroni.ttl", f"loop_wait + 2*retry_timeout = "
                f"{p.loop_wait + 2 * p.retry_timeout} exceeds ttl {p.ttl}: the leader could "
                "lose its lock while still retrying")
    if c.load_balancer.kind == "f5":
        return  # the BIG-IP's monitor timing: f5.check
    chk = c.load_balancer.check
    detect_ms = chk.inter_ms * chk.fall
    if detect_ms >= p.ttl * 1000:
        r.error("load_balancer.check", f"HAProxy needs {detect_ms / 1000:g} s (inter x fall) to "
                f"mark a primary down, not less than ttl {p.ttl} s: clients would stay on a "
                "demoted primary after failover; lower inter_ms or fall")
    elif detect_ms > p.ttl * 500:
        r.warn("load_balancer.check", f"HAProxy detection {detect_ms / 1000:g} s is more than "
               f"half of ttl {p.ttl} s")


def _load_balancer(c: Cluster, r: Report) -> None:
    if c.load_balancer.kind == "f5":
        f5.check(c, r)
        return
    if c.load_balancer.f5 != f5.F5(tenant=c.name):  # (show's output carries the defaults)
        r.warn("load_balancer.f5", "ignored: load_balancer.kind is haproxy")
    lbs = roles.nodes_with(c.nodes, "load_balancer")
    if c.load_balancer.virtual_ip is not None and len(lbs) < 2:
        r.warn("load_balancer.virtual_ip", "a virtual IP needs two load balancer nodes to "
               "move; keepalived is configured only with two or more")



def _tls(c: Cluster, r: Report) -> None:
    if not c.tls.enabled:
        r.warn("tls", "TLS is off: etcd, Patroni's REST API and PostgreSQL (replication "
               "included) talk in clear text and etcd accepts any client that the firewall "
               "lets through; use `tls: false` only for throwaway labs")
    elif c.tls.cert_days > c.tls.ca_days:
        r.warn("tls.cert_days", f"longer than the CA's validity ({c.tls.ca_days} days): node "
               "certificates end when the CA does")


def _parameters(c: Cluster, r: Report) -> None:
    """PostgreSQL parameters the product owns or that open a way in (model/gucpolicy.py)."""
    for name, message in gucpolicy.problems(dict(c.patroni.parameters)):
        r.error(f"patroni.parameters.{name}", message)


def _monitoring(c: Cluster, r: Report) -> None:
    m = c.monitoring
    if not m.enabled:
        return
    if m.alert_after_s < 2 * m.scrape_interval_s:
        r.error("monitoring.alert_after_s", f"{m.alert_after_s} s is less than two scrapes "
                f"({2 * m.scrape_interval_s} s): one lost scrape would page")
    if not m.sources:
        r.warn("monitoring.sources", "no Prometheus server is named: the firewall admits no "
               "one to the metrics endpoints (list your Prometheus addresses)")
