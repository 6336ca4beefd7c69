"""Platform layouts: where each platform keeps binaries, data, configs, and which users run what.

`rhel8` is the product's target (PGDG packages on RHEL 8). `debian12` describes Debian's own
packages, so the local lab runs the same roles and seeds on this machine's PostgreSQL, etcd and
HAProxy: a setting of the model, not special cases in code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Layout fields that are places on the node (data, sockets, configs): `rooted` prefixes these.
# Binaries and system folders (bin dirs, unitdir, python) stay where the platform has them.
ROOTED_FIELDS = (
    "pg_data_dir", "pg_home", "pg_socket_dir", "pgpass", "patroni_config", "etcd_config",
    "etcd_data_dir", "haproxy_config", "haproxy_state_dir", "keepalived_config",
    "tls_dir", "run_dir", "keepalived_scripts", "pgbackrest_config", "pgbackrest_repo",
    "pgbackrest_log", "pgbackrest_spool", "pgbackrest_lock", "pgha_libexec",
)


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
    pgpass: str = "/var/lib/pgsql/.pgpass_patroni"
    etcd_bin: str = "/usr/bin/etcd"
    haproxy_bin: str = "/usr/sbin/haproxy"
    haproxy_state_dir: str = "/var/lib/haproxy"
    keepalived_bin: str = "/usr/sbin/keepalived"
    tls_dir: str = "/etc/pgha/tls"  # the CA certificate and the node's keys and certificates
    nic: str = "eth0"  # the node's network interface (network-config, keepalived)
    run_dir: str = "/run"  # pid files of daemons started outside systemd (keepalived)
    # keepalived's check scripts: the targeted SELinux policy labels this folder
    # keepalived_unconfined_script_exec_t, so a script run from it may reach HAProxy. Rooted
    # because the lab installs the role RPMs' payload under each node's folder.
    keepalived_scripts: str = "/usr/libexec/keepalived"
    # pgha's own programs (the first-boot agent, pgha-exporter): rooted, like the scripts above
    pgha_libexec: str = "/usr/libexec/pgha"
    # How keepalived runs pgha's check script: "" = by its own shebang (platform-python), as
    # RHEL 8 needs: SELinux moves keepalived into the script's domain only on exec of the
    # script file itself. Debian has no platform-python: the interpreter is named.
    script_interpreter: str = ""
    # pgBackRest (PGDG common on RHEL 8, Debian's own package in the lab): the same paths.
    pgbackrest_bin: str = "/usr/bin/pgbackrest"
    pgbackrest_config: str = "/etc/pgbackrest/pgbackrest.conf"
    pgbackrest_repo: str = "/var/lib/pgbackrest"
    pgbackrest_log: str = "/var/log/pgbackrest"
    pgbackrest_spool: str = "/var/spool/pgbackrest"
    pgbackrest_lock: str = "/tmp/pgbackrest"

    def rooted(self, prefix: str) -> Layout:
        """This layout with every node-local place (ROOTED_FIELDS) under `prefix`, for a node
        whose files live in a folder (the local lab); binaries are unchanged."""
        if not prefix:
            return self
        base = prefix.rstrip("/")
        return replace(self, **{f: base + getattr(self, f) for f in ROOTED_FIELDS})


# The local lab's overrides of its platform's layout (builder/lab runs platform debian12):
# Patroni from the venv that scripts/setup makes, since pip's patroni under /root (mode 0700
# here) cannot be run by the postgres user.
LAB_VENV = "/opt/pgha-lab/venv"
LAB_OVERRIDES: dict[str, dict[str, str]] = {"debian12": {"patroni_bin": f"{LAB_VENV}/bin/patroni"}}


def layout(platform: str, pg: int) -> Layout:
    if platform == "rhel8":
        return Layout(
            pg_bin_dir=f"/usr/pgsql-{pg}/bin",
            pg_data_dir=f"/var/lib/pgsql/{pg}/data",
            pg_home="/var/lib/pgsql",
            pg_socket_dir="/run/postgresql",  # canonical: /var/run is a symlink (never followed)
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
        # Debian's own packages: only what differs from RHEL 8 is spelled out.
        return replace(
            layout("rhel8", pg),
            pg_bin_dir=f"/usr/lib/postgresql/{pg}/bin",
            pg_data_dir=f"/var/lib/postgresql/{pg}/main",
            pg_home="/var/lib/postgresql",
            etcd_config="/etc/default/etcd",
            python="/usr/bin/python3",
            script_interpreter="/usr/bin/python3",
            pgpass="/var/lib/postgresql/.pgpass_patroni",
            **LAB_OVERRIDES["debian12"],
        )
    raise ValueError(f"unknown platform {platform}")
