"""The BIG-IP objects a cluster needs, derived once from the model (pure, no I/O).

What HAProxy's `listen primary` / `listen replicas` do becomes, per port: an HTTP monitor of
Patroni's REST API (GET /primary or GET /replica on the REST port, up on status 200), a pool of
every database node on the PostgreSQL port with that monitor and service-down action reset
(HAProxy's `on-marked-down shutdown-sessions`), and a standard TCP virtual server on the
virtual IP. Every value here is typed: names match the model's patterns, addresses are IPv4.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from builder.model import roles
from builder.model.cluster import Cluster
from builder.model.f5 import monitor_timing

# HAProxy's `maxconn 1000` per server (roles/haproxy/templates/haproxy.cfg.j2).
MEMBER_CONNECTION_LIMIT = 1000
# What Patroni answers with on a node in the asked-for state: "HTTP/1.0 200 OK".
RECEIVE = "200 OK"


@dataclass(frozen=True)
class Monitor:
    name: str
    uri: str
    port: int
    interval: int
    timeout: int
    kind: str = "http"  # "https" when Patroni's REST API speaks TLS
    receive: str = RECEIVE

    @property
    def send(self) -> str:
        """The HTTP request, with real CR LF characters (as JSON carries them)."""
        return f"GET {self.uri} HTTP/1.0\r\n\r\n"


@dataclass(frozen=True)
class Member:
    name: str
    address: ipaddress.IPv4Address
    port: int


@dataclass(frozen=True)
class Pool:
    name: str
    monitor: str
    members: tuple[Member, ...]
    purpose: str
    connection_limit: int = MEMBER_CONNECTION_LIMIT
    load_balancing_mode: str = "round-robin"
    service_down_action: str = "reset"
    slow_ramp_time: int = 0


@dataclass(frozen=True)
class Virtual:
    name: str
    address: ipaddress.IPv4Address
    port: int
    pool: str
    purpose: str


@dataclass(frozen=True)
class Plan:
    cluster: str
    tenant: str
    application: str
    monitors: tuple[Monitor, ...]
    pools: tuple[Pool, ...]
    virtuals: tuple[Virtual, ...]
    tcp_profile: str
    idle_timeout: int
    snat: str  # "automap" or "none"

    @property
    def folder(self) -> str:
        return f"/{self.tenant}/{self.application}"

    def path(self, name: str) -> str:
        """Full BIG-IP path of an object of the application folder."""
        return f"{self.folder}/{name}"

    @property
    def members(self) -> tuple[Member, ...]:
        """Every database node once (each pool has the same members)."""
        return self.pools[0].members


def plan(c: Cluster) -> Plan:
    lb = c.load_balancer
    if lb.virtual_ip is None or lb.f5.tenant is None:  # the model rules make this impossible
        raise ValueError("kind f5 needs load_balancer.virtual_ip")
    known = roles.assignable_roles()
    db = [n for n in c.nodes if any(known[r].postgres for r in n.roles if r in known)]
    members = tuple(Member(n.name, n.address, c.ports.postgres) for n in db)
    interval, timeout = monitor_timing(c)
    kind = "https" if c.tls.enabled else "http"
    rest = c.ports.patroni_rest
    mon_p = Monitor("mon_patroni_primary", "/primary", rest, interval, timeout, kind)
    mon_r = Monitor("mon_patroni_replica", "/replica", rest, interval, timeout, kind)
    pools = (Pool("pool_primary", mon_p.name, members, "read-write: the primary only"),
             Pool("pool_replicas", mon_r.name, members, "read-only: every running replica"))
    virtuals = (Virtual("vs_primary", lb.virtual_ip, lb.primary_port, "pool_primary",
                        "read-write clients"),
                Virtual("vs_replicas", lb.virtual_ip, lb.replica_port, "pool_replicas",
                        "read-only clients"))
    return Plan(cluster=c.name, tenant=lb.f5.tenant, application=lb.f5.application,
                monitors=(mon_p, mon_r), pools=pools, virtuals=virtuals,
                tcp_profile="tcp_postgres", idle_timeout=lb.f5.idle_timeout, snat=lb.f5.snat)
