"""Values that are valid but silly or dangerous: bounds across fields, names that collide with
system accounts or other nodes, networks open to the world, ports of well-known services.

Pure: returns (level, path, message) triples that `rules.py` reports; no I/O here.
"""

from __future__ import annotations

from builder.model import roles
from builder.model.cluster import Cluster

MAX_ETCD_MEMBERS = 9  # etcd advises 3, 5 or 7: every write waits for a majority
# Accounts that exist on a RHEL 8 node or that our packages create: the admin user may not be
# one of them (it would take over, or be refused by, an account that runs a service).
SYSTEM_USERS = frozenset({
    "root", "bin", "daemon", "adm", "lp", "sync", "shutdown", "halt", "mail", "operator",
    "games", "ftp", "nobody", "systemd-network", "systemd-resolve", "systemd-coredump", "dbus",
    "polkitd", "sshd", "chrony", "tss", "unbound", "rpc", "rpcuser", "libstoragemgmt",
    "setroubleshoot", "cockpit-ws", "cockpit-wsinstance", "sssd", "clevis", "insights", "rngd",
    "postgres", "etcd", "haproxy", "keepalived_script",
})
# Ports of services a node or its network commonly runs: using one for ours is a mistake.
WELL_KNOWN_PORTS = {
    21: "FTP", 22: "SSH", 23: "telnet", 25: "SMTP", 53: "DNS", 67: "DHCP", 69: "TFTP",
    80: "HTTP", 111: "rpcbind", 123: "NTP", 143: "IMAP", 161: "SNMP", 389: "LDAP", 443: "HTTPS",
    514: "syslog", 636: "LDAPS", 2049: "NFS", 3306: "MySQL", 9090: "Cockpit",
}

Finding = tuple[str, str, str]  # (level "error" | "warning", path, message)


def check(c: Cluster) -> list[Finding]:
    return [*_admin(c), *_etcd(c), *_service_names(c), *_networks(c), *_ports(c), *_seeds(c)]


def _seeds(c: Cluster) -> list[Finding]:
    if c.image.seeds_over_http:
        return [("warning", "image.seeds_over_http", ("seeds (passwords, private keys) cross "
                 "the install network in clear text: lab only"))]
    return []


def _admin(c: Cluster) -> list[Finding]:
    user = c.admin.user
    if user in SYSTEM_USERS or user.startswith("systemd-"):
        return [("error", "admin.user", (f"'{user}' is a system account of the nodes; choose "
                 "a person's or a team's login (default pgha)"))]
    return []


def _etcd(c: Cluster) -> list[Finding]:
    members = roles.nodes_with(c.nodes, "etcd_member")
    if len(members) > MAX_ETCD_MEMBERS:
        return [("error", "nodes", (f"{len(members)} etcd members; at most {MAX_ETCD_MEMBERS} "
                 "(etcd advises 3, 5 or 7: every write waits for a majority); give the other "
                 "database nodes no etcd role"))]
    return []


def _service_names(c: Cluster) -> list[Finding]:
    own = {n.name for n in c.nodes} | {f"{n.name}.{c.network.domain}" for n in c.nodes}
    return [("error", f"tls.service_names[{i}]", (f"'{name}' is a node's name: the load "
             "balancer's certificate would let it impersonate that node; use a service name"))
            for i, name in enumerate(c.tls.service_names) if name.lower() in own]


def _networks(c: Cluster) -> list[Finding]:
    out: list[Finding] = []
    for i, net in enumerate(c.network.client_networks or []):
        if net.prefixlen < 8:
            out.append(("warning", f"network.client_networks[{i}]", (f"{net} admits "
                        f"{net.num_addresses:,} addresses (the whole Internet for /0) to "
                        "PostgreSQL and the load balancer: list the clients' networks")))
    return out


def _ports(c: Cluster) -> list[Finding]:
    out: list[Finding] = []
    fields = [(f"ports.{k}", v) for k, v in c.ports.model_dump().items()]
    fields += [(f"load_balancer.{k}", getattr(c.load_balancer, k))
               for k in ("primary_port", "replica_port", "stats_port")]
    for path, port in fields:
        if port in WELL_KNOWN_PORTS:
            out.append(("warning", path, (f"{port} is {WELL_KNOWN_PORTS[port]}'s port: that "
                        "service cannot run beside it and firewalls treat it as such")))
        elif port < 1024:
            out.append(("warning", path, f"{port} is a privileged port (below 1024)"))
    return out
