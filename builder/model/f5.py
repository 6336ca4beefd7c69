"""An F5 BIG-IP in place of HAProxy: its settings (`load_balancer.f5`), its monitor timing and
its cross-field rules.

With `load_balancer.kind: f5` no node runs the haproxy role: the BIG-IP's virtual servers on
`load_balancer.virtual_ip` route the read-write port to the primary and the read-only port to
the replicas, asking Patroni's REST API exactly as HAProxy does. This module holds no I/O; the
declaration and tmsh commands are rendered by builder/f5/.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

from builder.model.types import Int, IPv4, IPv4Net

if TYPE_CHECKING:
    from builder.model.cluster import Cluster
    from builder.model.rules import Report

# Names AS3 already uses at the level where the tenant / the application is a property.
ADC_PROPERTIES = {"class", "schemaVersion", "id", "label", "remark", "updateMode", "target",
                  "constants", "controls", "scratch", "Common"}
TENANT_PROPERTIES = {"class", "label", "remark", "verifiers", "enable", "defaultRouteDomain",
                     "Shared", "constants", "controls", "optimisticLockKey"}
TENANT_RE = r"^[A-Za-z][0-9A-Za-z_-]{0,63}$"
APPLICATION_RE = r"^[A-Za-z]([0-9A-Za-z_.-]{0,62}[0-9A-Za-z_])?$"


def _not_reserved(reserved: set[str], what: str) -> AfterValidator:
    def check(value: str | None) -> str | None:
        if value is not None and (value in reserved or value.lower() == "common"):
            raise ValueError(f"'{value}' is reserved by AS3 / BIG-IP and cannot be the {what} "
                             "name; pick another")
        return value
    return AfterValidator(check)


TenantName = Annotated[str | None, Field(pattern=TENANT_RE),
                       _not_reserved(ADC_PROPERTIES, "tenant (partition)")]
ApplicationName = Annotated[str, Field(pattern=APPLICATION_RE),
                            _not_reserved(TENANT_PROPERTIES, "application")]


class F5(BaseModel):
    """The BIG-IP side of `load_balancer.kind: f5` (ignored with kind haproxy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: TenantName = Field(
        default=None, validation_alias=AliasChoices("tenant", "partition"),
        description="AS3 Tenant, which is the BIG-IP partition the objects live in (also "
                    "accepted as `partition`); default: the cluster name")
    application: ApplicationName = Field(
        default="postgres", description="AS3 Application: the folder /<tenant>/<application>/")
    monitor_interval: Int | None = Field(
        default=None, ge=1, le=300,
        description="seconds between monitor probes; default: load_balancer.check.inter_ms "
                    "rounded up to whole seconds. The monitor timeout is 3 x interval + 1")
    self_ips: list[IPv4] = Field(
        default_factory=list, max_length=16,
        description="the BIG-IP addresses the db nodes see (its self IPs on their network, or "
                    "SNAT addresses): their firewall and pg_hba admit these for the monitors "
                    "(Patroni REST) and the connections (PostgreSQL)")
    vip_networks: list[IPv4Net] = Field(
        default_factory=list, max_length=64,
        description="networks (CIDR) routed to the BIG-IP where virtual_ip may live, besides "
                    "network.cidr")
    allow_unrouted_vip: bool = Field(
        default=False, description="accept a virtual_ip outside network.cidr and vip_networks "
                                   "(the BIG-IP routes it some other way)")
    snat: Literal["automap", "none"] = Field(
        default="automap", description="source address translation: automap (the BIG-IP's "
        "self IP; needed unless the BIG-IP is the db nodes' default gateway) or none")
    idle_timeout: Int = Field(
        default=1800, ge=60, le=86400,
        description="seconds an idle client connection is kept (HAProxy: timeout client/server)")


def monitor_timing(c: Cluster) -> tuple[int, int]:
    """(interval, timeout) of the BIG-IP monitors, in seconds: BIG-IP's usual timeout of
    3 x interval + 1, the interval from the model or from HAProxy's check interval."""
    f5 = c.load_balancer.f5
    interval = f5.monitor_interval or max(1, math.ceil(c.load_balancer.check.inter_ms / 1000))
    return interval, 3 * interval + 1


def check(c: Cluster, r: Report) -> None:
    """The rules for kind f5: no HAProxy node, a routed virtual IP, detection below ttl."""
    from builder.model import roles

    lb = c.load_balancer
    known = roles.assignable_roles()
    for i, n in enumerate(c.nodes):
        for j, name in enumerate(n.roles):
            if name in known and known[name].load_balancer:
                r.error(f"nodes[{i}].roles[{j}]", f"{n.name} has the load balancer role "
                        f"'{name}', but load_balancer.kind is f5 (the BIG-IP replaces it): "
                        "remove the role, or set load_balancer.kind: haproxy")
    if lb.primary_port == lb.replica_port:
        r.error("load_balancer.replica_port", f"{lb.replica_port} is also the primary_port: "
                "the BIG-IP needs two virtual servers on the virtual IP")
    _vip(c, r)
    _sources(c, r)
    interval, timeout = monitor_timing(c)
    ttl = c.patroni.ttl
    where = "load_balancer.f5.monitor_interval" if lb.f5.monitor_interval else \
        "load_balancer.check.inter_ms"
    if timeout >= ttl:
        r.error(where, f"the BIG-IP monitor needs {timeout} s (timeout = 3 x interval {interval}"
                f" s + 1) to mark a primary down, not less than ttl {ttl} s: clients would stay "
                "on a demoted primary after failover; lower the interval")
    elif timeout * 2 > ttl:
        r.warn(where, f"BIG-IP detection {timeout} s is more than half of ttl {ttl} s")


def _sources(c: Cluster, r: Report) -> None:
    """The db nodes must admit the BIG-IP: its addresses, and a monitor it can speak."""
    f5 = c.load_balancer.f5
    if not f5.self_ips:
        r.error("load_balancer.f5.self_ips", "kind f5 needs the BIG-IP addresses the db nodes "
                "see (self IPs on their network, or SNAT addresses): without them the db "
                "nodes' firewall drops its health checks on the Patroni REST port")
    for k, ip in enumerate(f5.self_ips):
        if any(n.address == ip for n in c.nodes) or ip == c.load_balancer.virtual_ip:
            r.error(f"load_balancer.f5.self_ips[{k}]", f"{ip} is a node's or the virtual IP")
    if c.tls.enabled and c.tls.restapi_verify_client == "required":
        r.error("tls.restapi_verify_client", "required: every request to Patroni's REST API "
                "needs a client certificate, which the BIG-IP's monitors do not present; set "
                "it to optional (client certificates for changes only)")


def _vip(c: Cluster, r: Report) -> None:
    lb = c.load_balancer
    vip = lb.virtual_ip
    if vip is None:
        r.error("load_balancer.virtual_ip", "kind f5 needs the BIG-IP virtual address that "
                "clients connect to (ports primary_port and replica_port)")
        return
    nets = [c.network.cidr, *lb.f5.vip_networks]
    inside = [n for n in nets if vip in n]
    if not inside and not lb.f5.allow_unrouted_vip:
        r.error("load_balancer.virtual_ip", f"{vip} is outside network.cidr and every "
                "load_balancer.f5.vip_networks entry, so nothing routes it to the BIG-IP: add "
                "its network to vip_networks, or set allow_unrouted_vip: true")
    for net in inside:  # network.cidr's own reserved addresses: rules._virtual_ip
        if net != c.network.cidr and net.prefixlen < 31 and vip in (net.network_address, net.broadcast_address):
            r.error("load_balancer.virtual_ip", f"{vip} is the network or broadcast address "
                    f"of {net}")
