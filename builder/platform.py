"""Platform layouts: where each platform keeps binaries, data, configs, and which users run what.

`rhel8` is the product's target (PGDG packages on RHEL 8). `debian12` describes Debian's own
packages, so the local lab runs the same roles and seeds on this machine's PostgreSQL, etcd and
HAProxy: a setting of the model, not special cases in code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Layout:
    pg_bin_dir: str
    pg_data_dir: str
    pg_home: str
    pg_socket_dir: str
    postgres_user: str
    patroni_config: str
    patroni_bin: str
    etcd_user: str
    etcd_config: str
    etcd_data_dir: str
    haproxy_user: str
    haproxy_config: str
    keepalived_config: str
    unitdir: str
    firewalld_services_dir: str
    python: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def layout(platform: str, pg: int) -> Layout:
    if platform == "rhel8":
        return Layout(
            pg_bin_dir=f"/usr/pgsql-{pg}/bin",
            pg_data_dir=f"/var/lib/pgsql/{pg}/data",
            pg_home="/var/lib/pgsql",
            pg_socket_dir="/var/run/postgresql",
            postgres_user="postgres",
            patroni_config="/etc/patroni/patroni.yml",
            patroni_bin="/usr/bin/patroni",
            etcd_user="etcd",
            etcd_config="/etc/etcd/etcd.conf",
            etcd_data_dir="/var/lib/etcd/pgha.etcd",
            haproxy_user="haproxy",
            haproxy_config="/etc/haproxy/haproxy.cfg",
            keepalived_config="/etc/keepalived/keepalived.conf",
            unitdir="/usr/lib/systemd/system",
            firewalld_services_dir="/usr/lib/firewalld/services",
            python="/usr/libexec/platform-python",
        )
    if platform == "debian12":
        return Layout(
            pg_bin_dir=f"/usr/lib/postgresql/{pg}/bin",
            pg_data_dir=f"/var/lib/postgresql/{pg}/main",
            pg_home="/var/lib/postgresql",
            pg_socket_dir="/var/run/postgresql",
            postgres_user="postgres",
            patroni_config="/etc/patroni/patroni.yml",
            patroni_bin="/usr/local/bin/patroni",
            etcd_user="etcd",
            etcd_config="/etc/default/etcd",
            etcd_data_dir="/var/lib/etcd/pgha.etcd",
            haproxy_user="haproxy",
            haproxy_config="/etc/haproxy/haproxy.cfg",
            keepalived_config="/etc/keepalived/keepalived.conf",
            unitdir="/usr/lib/systemd/system",
            firewalld_services_dir="/usr/lib/firewalld/services",
            python="/usr/bin/python3",
        )
    raise ValueError(f"unknown platform {platform}")
