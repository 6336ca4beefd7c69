"""The typed cluster: every field, its default and its single-field rules.

Why pydantic v2 rather than dataclasses plus a hand-written schema: one declaration gives the
typed model, per-field validation that reports *every* error with its location at once, the
defaults, and the JSON Schema that `pgha-build schema` publishes for editors. Rules that span
fields (unique addresses, etcd quorum, Patroni timing, ports) live in `rules.py`, so they can
be reported together with paths and tested one by one.

This module holds no I/O. `loading.py` turns YAML into this model; `show` prints it resolved.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from builder.model.backup import Backup
from builder.model.f5 import F5
from builder.model.imageformats import Format
from builder.model.monitoring import Monitoring
from builder.model.pydeps import PythonDep
from builder.model.repos import DEFAULTS, Repo, Repos, ResolvedRepo, pgdg_url, resolve
from builder.model.signing import Signing
from builder.model.types import (
    DomainName,
    GucName,
    GucValue,
    Int,
    IPv4,
    IPv4Net,
    LibvirtNetwork,
    Location,
    NodeName,
    RoleName,
    RpmName,
    RpmPin,
    SshPublicKey,
    UnixName,
)

# Version of the resolved model as carried in seeds; bump on incompatible change.
SCHEMA_VERSION = 1

MAC_RE = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"

# Named timing profiles: Patroni timings plus the HAProxy checks that go with them.
PROFILES: dict[str, dict[str, dict[str, int]]] = {
    "default": {
        "patroni": {"ttl": 30, "loop_wait": 5, "retry_timeout": 10},
        "check": {"inter_ms": 3000, "fall": 3, "rise": 2, "fastinter_ms": 1000,
                  "downinter_ms": 500},
    },
    "fast": {
        "patroni": {"ttl": 20, "loop_wait": 1, "retry_timeout": 3},
        "check": {"inter_ms": 1000, "fall": 2, "rise": 1, "fastinter_ms": 250,
                  "downinter_ms": 250},
    },
}
# The fields a profile decides (unless the file gives them), by section.
PROFILE_FIELDS = {section: tuple(values) for section, values in PROFILES["default"].items()}
_CHECK, _PATRONI = PROFILES["default"]["check"], PROFILES["default"]["patroni"]


def _mac(value: Any) -> Any:
    if value is None:
        return None
    text = str(value).lower().replace("-", ":")
    if not re.fullmatch(MAC_RE, text):  # fullmatch: "$" alone accepts a trailing newline
        raise ValueError(f"{value} is not a MAC address (expected aa:bb:cc:dd:ee:ff)")
    return text


Mac = Annotated[str | None, BeforeValidator(_mac)]
Port = Annotated[Int, Field(ge=1, le=65535)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(Strict):
    name: NodeName = Field(description="Short host name, e.g. db1")
    roles: list[RoleName] = Field(min_length=1, max_length=8,
                                  description="Role names from roles/ (db, haproxy)")
    address: IPv4 = Field(description="Static IPv4 address inside network.cidr")
    mac: Mac = Field(default=None, description="MAC address, for PXE installs")


class Network(Strict):
    cidr: IPv4Net = Field(default="10.77.0.0/24", validate_default=True)
    gateway: IPv4 = Field(default="10.77.0.1", validate_default=True)
    dns: list[IPv4] = Field(default_factory=lambda: [ipaddress.IPv4Address("10.77.0.1")],
                            max_length=8)
    domain: DomainName = Field(default="pgha.lab", description="RFC 1123 DNS domain")
    client_networks: list[IPv4Net] | None = Field(
        default=None, max_length=64,
        description="networks whose clients may reach PostgreSQL (5432) and the load balancer "
                    "ports (5000/6000/7000); the firewall admits no one else. Default: [cidr]",
    )


class Ports(Strict):
    postgres: Port = 5432
    patroni_rest: Port = 8008
    etcd_client: Port = 2379
    etcd_peer: Port = 2380
    exporter: Port = Field(default=9650, description="pgha-exporter metrics (HTTPS) on every node")
    pgbackrest: Port = Field(default=8432, description="pgBackRest TLS server (backups)")


class HealthCheck(Strict):
    """HAProxy's health check of Patroni's REST API."""

    inter_ms: Int = Field(default=_CHECK["inter_ms"], ge=100, le=60000)
    fall: Int = Field(default=_CHECK["fall"], ge=1, le=20)
    rise: Int = Field(
        default=_CHECK["rise"], ge=1, le=20,
        description="passing checks before a replica takes reads again (the primary port "
                    "needs one: /primary answers 200 only on the leader)",
    )
    fastinter_ms: Int = Field(
        default=_CHECK["fastinter_ms"], ge=100, le=60000,
        description="check interval while a server changes state (after a first failure "
                    "or success): speeds up marking the old primary down and the new one up",
    )
    downinter_ms: Int = Field(
        default=_CHECK["downinter_ms"], ge=100, le=60000,
        description="check interval of a server that is down (a replica, for the primary "
                    "port): how soon a promoted replica is seen",
    )


class LoadBalancer(Strict):
    kind: Literal["haproxy", "f5"] = Field(
        default="haproxy", description="haproxy: nodes with the haproxy role; f5: an F5 BIG-IP "
        "(`pgha-build f5`), no haproxy node")
    primary_port: Port = Field(default=5000, description="read-write, routed to the primary")
    replica_port: Port = Field(default=6000, description="read-only, routed to the replicas")
    stats_port: Port = Field(default=7000, description="HAProxy stats page")
    virtual_ip: IPv4 | None = Field(
        default=None, description="keepalived VIP (2+ LB nodes), or the BIG-IP virtual address")
    check: HealthCheck = Field(default_factory=HealthCheck)
    replica_max_lag: Int = Field(
        default=65536, ge=0, le=1 << 40,
        description="bytes a replica may be behind the leader's last WAL position in the DCS "
                    "and still take reads (Patroni's /replica?lag=): bounds how stale the "
                    "read-only port gets (docs/soak.md)",
    )
    f5: F5 = Field(default_factory=F5, description="BIG-IP names and settings (kind f5)")


class Patroni(Strict):
    ttl: Int = Field(default=_PATRONI["ttl"], le=3600,
                     description="leader key TTL, seconds (>= 20)")
    loop_wait: Int = Field(default=_PATRONI["loop_wait"], le=600,
                           description="seconds between HA loops (>= 1)")
    retry_timeout: Int = Field(default=_PATRONI["retry_timeout"], le=600,
                               description="DCS and PostgreSQL retry, seconds (>= 3)")
    maximum_lag_on_failover: Int = Field(default=1048576, ge=0, le=1 << 40, description="bytes")
    synchronous_mode: bool | Literal["quorum"] = Field(
        default="quorum",
        description="quorum (default): a commit waits for any one replica, any replica can be "
        "promoted (Patroni >= 4); true: one named synchronous standby; false: asynchronous "
        "(docs/replication.md)",
    )
    synchronous_mode_strict: bool = Field(
        default=False, description="no commit at all while no synchronous standby is available"
    )
    failsafe_mode: bool = Field(
        default=False,
        description="keep the primary while the DCS is down if every member answers it",
    )
    watchdog: Literal["off", "automatic", "required"] = Field(
        default="automatic",
        description="Patroni's watchdog: a primary whose Patroni hangs is reset (softdog)",
    )
    parameters: dict[GucName, GucValue] = Field(
        default_factory=dict, max_length=500, description="PostgreSQL parameters for bootstrap.dcs"
    )


def _tls(value: Any) -> Any:
    """`tls: false` (or true) is short for `tls: {enabled: false}`."""
    return {"enabled": value} if isinstance(value, bool) else value


class Tls(Strict):
    """TLS on every link (etcd client and peer, Patroni REST, PostgreSQL) from a per-cluster CA,
    and the names clients use. `tls: false` turns it off (throwaway labs only; `check` warns)."""

    enabled: bool = True
    cert_days: Int = Field(default=365, ge=1, le=3650,
                           description="validity of node certificates, days")
    ca_days: Int = Field(default=3650, ge=30, le=36500, description="validity of the CA, days")
    service_names: list[DomainName] = Field(
        default_factory=list, max_length=32,
        description="DNS names clients use for the load balancer or virtual IP "
                    "(sslmode=verify-full checks them); <cluster>.<domain> is always included",
    )
    restapi_verify_client: Literal["none", "optional", "required"] = Field(
        default="optional",
        description="Patroni REST client certificates: optional = required for changes "
                    "(POST, PATCH, ...), required = for every request (HAProxy presents one)",
    )


class Admin(Strict):
    user: UnixName = "pgha"
    ssh_key: SshPublicKey | None = Field(default=None, description="OpenSSH public key line")
    login: Literal["ssh_key", "none"] = Field(
        default="ssh_key", description="how the admin gets into an installed node: ssh_key "
        "(admin.ssh_key; `images` refuses to build without it) or none (no login at all, on "
        "purpose: nodes are managed only through seeds and re-imaging)")


class Image(Strict):
    """How role images are built (`pgha-build images`) and where PXE installs come from."""

    install_source: Location | None = Field(
        default=None, description="RHEL 8 install tree (dir or URL) or DVD ISO; or --install-source"
    )
    cloud_image: Location | None = Field(
        default=None, description="RHEL 8 KVM Guest Image (qcow2) for --backend cloud-image"
    )
    disk_gb: Int = Field(default=20, ge=10, le=2048, description="virtual disk size, GiB")
    memory_mib: Int = Field(default=2048, ge=1536, le=262144, description="installer VM memory")
    vcpus: Int = Field(default=2, ge=1, le=64)
    timeout_min: Int = Field(default=60, ge=5, le=1440, description="install time limit, minutes")
    network: LibvirtNetwork = Field(
        default="default", description="libvirt network of the installer VM, or 'user' (NAT)"
    )
    http_port: Port = Field(default=8090, description="port of the built-in HTTP server")
    seed_port: Port = Field(default=8443, description="HTTPS port of `pgha-build serve` for "
                            "seeds (certificate from the cluster CA, per-host token)")
    seeds_over_http: bool = Field(
        default=False, description="lab only: serve seeds over plain HTTP on the repos.pgha "
        "port (still only to their host, with its token); `check` warns")
    formats: list[Format] = Field(
        default=["qcow2"], min_length=1, description="default image formats"
    )


class Cluster(Strict):
    """A whole cluster. Everything has a default: `Cluster()` is the reference lab."""

    name: NodeName = Field(default="pgha", description="cluster name: Patroni scope, "
                           "output folder, package names")
    platform: Literal["rhel8", "debian12"] = Field(
        default="rhel8", description="rhel8 for real machines; debian12 for the local lab"
    )
    postgres_version: Int = Field(default=16, ge=13, le=17)
    profile: Literal["default", "fast"] = Field(
        default="default", description="timing profile: fills unset Patroni and check timings"
    )
    network: Network = Field(default_factory=Network)
    nodes: list[Node] = Field(
        default_factory=lambda: [
            Node(name="db1", roles=["db"], address="10.77.0.11"),  # type: ignore[arg-type]
            Node(name="db2", roles=["db"], address="10.77.0.12"),  # type: ignore[arg-type]
            Node(name="db3", roles=["db"], address="10.77.0.13"),  # type: ignore[arg-type]
            Node(name="lb1", roles=["haproxy", "backup"],
                 address="10.77.0.10"),  # type: ignore[arg-type]
        ],
        min_length=1, max_length=100,
    )
    ports: Ports = Field(default_factory=Ports)
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    patroni: Patroni = Field(default_factory=Patroni)
    repos: Repos = Field(default_factory=Repos)
    admin: Admin = Field(default_factory=Admin)
    python_deps: list[PythonDep] = Field(
        default_factory=list, max_length=20,
        description="pure-Python packages no repository provides, built from their sdist "
                    "into the pgha repository (e.g. python3.12-dns for patroni-etcd)")
    signing: Signing = Field(default_factory=Signing,
                             description="the key that signs the pgha RPMs and repository")
    release: Int = Field(
        default=1, ge=1, le=99999,
        description="Release of the role RPMs (pgha-role-<role>-<version>-<release>): raise it "
                    "for each build you roll out to running nodes, so dnf sees it as an upgrade "
                    "(docs/changes.md)")
    pins: dict[RpmName, RpmPin] = Field(
        default_factory=dict, max_length=200, description="package -> exact version for Requires"
    )
    image: Image = Field(default_factory=Image)
    tls: Annotated[Tls, BeforeValidator(_tls)] = Field(default_factory=Tls)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    backup: Backup = Field(default_factory=Backup,
                           description="pgBackRest backups and WAL archive (docs/backup.md)")

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        """Fill Patroni and health-check timings the file leaves unset from the profile."""
        if not isinstance(data, dict):
            return data
        profile = PROFILES.get(str(data.get("profile", "default")))
        if profile is None:
            return data
        data = dict(data)
        patroni = data.get("patroni")
        lb = data.get("load_balancer")
        if (patroni is None or isinstance(patroni, dict)) and (lb is None or isinstance(lb, dict)):
            data["patroni"] = {**profile["patroni"], **(patroni or {})}
            lb = dict(lb or {})
            check = lb.get("check")
            if check is None or isinstance(check, dict):
                lb["check"] = {**profile["check"], **(check or {})}
            data["load_balancer"] = lb
        return data

    @model_validator(mode="after")
    def _resolve_pgdg(self) -> Cluster:
        if self.network.client_networks is None:
            object.__setattr__(self.network, "client_networks", [self.network.cidr])
        if self.repos.pgdg is None:
            pgdg = Repo(url=pgdg_url(self.postgres_version), **DEFAULTS["pgdg"])
            object.__setattr__(self.repos, "pgdg", pgdg)
        if self.load_balancer.f5.tenant is None:
            object.__setattr__(self.load_balancer.f5, "tenant", self.name)
        return self

    def repo_list(self) -> list[ResolvedRepo]:
        """BaseOS, AppStream, PGDG <major>, PGDG common, PGDG extras, as every renderer uses."""
        return resolve(self.repos, self.postgres_version)

    def service_names(self) -> list[str]:
        """The DNS names clients use for the load balancer (or VIP), the first the default."""
        first = f"{self.name}.{self.network.domain}"
        return [first, *(n for n in self.tls.service_names if n != first)]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def resolved_dict(cluster: Cluster) -> dict[str, Any]:
    """The resolved model as plain data (JSON types), with the schema version first."""
    return {"schema_version": SCHEMA_VERSION, **cluster.model_dump(mode="json")}
