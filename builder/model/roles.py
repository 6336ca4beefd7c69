"""Role definitions as data: roles/<name>/role.yaml, read and checked into typed Role objects.

A role says what a node of that kind runs (packages, services in start order, firewalld
services, capabilities such as `etcd_member`), which static files its RPM ships, which
directories it owns, and which per-node files its seed carries. Code branches on these fields,
never on a role's name. The `common` role is shared by every package and is not assignable to
nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Annotated, Literal, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from builder.core import fastyaml
from builder.core.errors import ConfigError
from builder.core.paths import ROLES_DIR

COMMON = "common"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Owned(_Strict):
    """A file from `src` (under the role folder) installed at `dest` with owner and mode."""

    src: str
    dest: str
    mode: str = Field(default="0644", pattern=r"^0[0-7]{3}$")
    owner: str = "root"
    group: str = "root"


class PayloadFile(_Owned):
    """A file shipped in the role's RPM; `src` is a jinja template under the role folder."""

    config: bool = False
    render: bool = Field(default=True, description="jinja template (else copied as is)")


class Directory(_Strict):
    path: str
    mode: str = Field(default="0755", pattern=r"^0[0-7]{3}$")
    owner: str = "root"
    group: str = "root"


class SeedFile(_Owned):
    """A per-node file rendered into the seed (may hold secrets); never in an RPM."""

    when: str | None = Field(default=None, description="a jinja expression that must be true")
    check: Literal["patroni", "haproxy", "etcd_env"] | None = Field(
        default=None, description="how `check --deep` validates it with the real tool"
    )


class Certificate(_Strict):
    """A certificate of the node's services, issued by the cluster CA when TLS is on.

    The seed carries `<tls_dir>/<name>.crt` (0644) and `<name>.key` (key_mode), or one
    `<name>.pem` with both (`combined`, as HAProxy's `crt` wants), owned by the service that
    reads them. SANs: the node's name, FQDN and address, plus the names below when set.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    owner: str = "root"
    group: str = "root"
    key_mode: str = Field(default="0600", pattern=r"^0[0-7]{2}0$")
    combined: bool = False
    server: bool = True
    client: bool = True
    client_names: bool = Field(
        default=False, description="also the names clients use: service names, VIP, LBs")
    loopback: bool = Field(default=False, description="also 127.0.0.1 and localhost")
    address_as_dns: bool = Field(
        default=False, description="also the node's address as a DNS name: pgBackRest before "
        "2.46 (Debian 12's 2.45) matches a host only against DNS names")


class ServiceExec(_Strict):
    """How a service runs outside systemd (seed.json `services`); strings are templates."""

    user: str
    argv: list[str]
    env_file: str | None = None
    reload: Literal["HUP", "USR2"] | None = Field(
        default=None, description="signal that makes the running service re-read its "
                                  "configuration and certificates (systemd: `systemctl reload`)")
    when: str | None = Field(default=None, description="a jinja expression that must be true")


class HealthProbe(_Strict):
    """A health check of a service on the node's address (seed.json `health`). `failover`: the
    Patroni cluster seen from this node's REST API can fail over (every database node a member,
    replicas streaming, a synchronous standby registered in synchronous mode)."""

    service: str
    kind: Literal["tcp", "http", "failover"]
    port: str = Field(description="a Ports/load_balancer field name")
    path: str = "/"
    expect: list[int] = Field(default_factory=lambda: [200])
    tls: bool = Field(default=False, description="HTTPS when the cluster's TLS is on")
    client_cert: str | None = Field(
        default=None, description="certificate (of this role) presented when the service "
                                   "requires client certificates")


class EtcdJoin(_Strict):
    """How a DCS member joins the etcd cluster at first boot (seed.json `etcd_join`): the agent
    asks the other members whether the cluster exists and joins it as a learner if it does."""

    service: str = Field(description="the etcd service of this role")
    env_file: str = Field(description="the seed file etcd reads its settings from")
    data_dir: str
    client_cert: str | None = Field(
        default=None, description="certificate (of this role) presented to the other members")


class FirewallService(_Strict):
    name: str
    description: str
    ports: list[str] = Field(default_factory=list, description="Ports/load_balancer fields")
    protocols: list[str] = Field(default_factory=list, description="e.g. vrrp")
    sources: list[Literal["etcd_member", "postgres", "load_balancer", "backup_repo", "clients",
                          "monitoring"]] = Field(
        default_factory=list,
        description="who may connect: nodes with these role capabilities, the cluster's "
                    "client networks and/or its Prometheus servers (`monitoring.sources`) "
                    "(firewalld rich rules); empty = anyone")


class Role(_Strict):
    name: str
    summary: str
    description: str
    assignable: bool = True
    etcd_member: bool = False
    postgres: bool = False
    load_balancer: bool = False
    backup_repo: bool = Field(default=False, description="keeps the pgBackRest repository")
    requires: list[str] = Field(default_factory=list)
    requires_pre: list[str] = Field(
        default_factory=list, description="installed first: they create the owning users"
    )
    services: list[str] = Field(default_factory=list, description="start order")
    disable_services: list[str] = Field(default_factory=list)
    enable_units: list[str] = Field(default_factory=list, description="enabled by %post")
    firewall: list[FirewallService] = Field(default_factory=list)
    files: list[PayloadFile] = Field(default_factory=list)
    directories: list[Directory] = Field(default_factory=list)
    seed_files: list[SeedFile] = Field(default_factory=list)
    certificates: list[Certificate] = Field(default_factory=list)
    service_exec: dict[str, ServiceExec] = Field(
        default_factory=dict, description="service name -> how to run it (every service)"
    )
    health: list[HealthProbe] = Field(default_factory=list)
    etcd_join: EtcdJoin | None = None
    protected_dirs: list[str] = Field(default_factory=list, description="never touched")
    seed_directories: list[Directory] = Field(
        default_factory=list, description="per-node folders the agent creates if missing"
    )
    ports: list[str] = Field(default_factory=list, description="ports this role listens on")
    data_volume: str | None = Field(
        default=None, description="mount point of the data logical volume (kickstart)"
    )
    selinux_booleans: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]] = Field(
        default_factory=list,
        description="stored on in %post (semanage -N), checked by pgha-firstboot at first boot")
    sysctl_files: list[str] = Field(default_factory=list, description="applied in %post")

    @model_validator(mode="after")
    def _every_service_runs(self) -> Role:
        missing = [s for s in self.services if s not in self.service_exec]
        if missing and self.service_exec:
            raise ValueError(f"services without service_exec: {', '.join(missing)}")
        return self

    @property
    def folder(self) -> Path:
        return ROLES_DIR / self.name

    @property
    def package(self) -> str:
        return "pgha-common" if self.name == COMMON else f"pgha-role-{self.name}"


def _load(path: Path) -> Role:
    try:
        data = fastyaml.load(path.read_text())
        return Role.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(
            f"role definition {path} is invalid: {str(exc).splitlines()[0]}",
            hint="fix the role.yaml (see roles/db/role.yaml for the fields)",
        ) from exc


@cache
def all_roles() -> dict[str, Role]:
    roles = {}
    for path in sorted(ROLES_DIR.glob("*/role.yaml")):
        role = _load(path)
        if role.name != path.parent.name:
            raise ConfigError(f"{path}: name '{role.name}' differs from its folder")
        roles[role.name] = role
    return roles


def assignable_roles() -> dict[str, Role]:
    return {n: r for n, r in all_roles().items() if r.assignable}


def get(name: str) -> Role:
    try:
        return all_roles()[name]
    except KeyError:
        known = ", ".join(sorted(assignable_roles()))
        raise ConfigError(f"unknown role '{name}'", hint=f"known roles: {known}") from None


Capability = Literal["etcd_member", "postgres", "load_balancer", "backup_repo"]


class _HasRoles(Protocol):
    @property
    def roles(self) -> list[str]: ...


N = TypeVar("N", bound=_HasRoles)


def image_roles(nodes: Iterable[_HasRoles]) -> dict[str, list[str]]:
    """The roles each role image carries, keyed by the image's name. A node boots the image of
    its first role, so that image carries every role of every node that boots it, in order of
    first appearance: the reference cluster's lb1 (haproxy, backup) boots the haproxy image,
    which therefore carries the backup role too. A role that is never first has no image."""
    images: dict[str, list[str]] = {}
    for node in nodes:
        if not node.roles:
            continue
        carried = images.setdefault(node.roles[0], [])
        carried += [r for r in node.roles if r not in carried]
    return images


def carried(nodes: Iterable[_HasRoles], name: str) -> list[Role]:
    """The roles the image of role `name` installs: its own, then the other roles of the nodes
    that boot it (image_roles); only its own for a role that no node has first."""
    return [get(n) for n in image_roles(nodes).get(name, [name])]


def nodes_with(nodes: Iterable[N], capability: Capability) -> list[N]:
    """The nodes with a role that has this capability flag (role data, never role names);
    unknown role names are skipped (the rules report them)."""
    known = all_roles()
    return [n for n in nodes if any(r in known and getattr(known[r], capability) for r in n.roles)]
