"""The lab network: one bridge in the root namespace, one network namespace per node.

Safety (lab traffic must never leave this machine), in this order:
1. a blackhole route for the lab CIDR in the root namespace, with a metric higher than the
   bridge's own route, so that it only catches traffic while the bridge is missing or down;
2. the bridge, up, with the cluster's gateway address, before anything sends;
3. one veth pair per node: the host end on the bridge, the other end (eth0) in the node's
   namespace with the node's address. Namespaces get no default route, so nothing inside them
   can reach any address outside the lab network. With the vm engine (`taps=True`) a node is a
   QEMU machine instead: its NIC is a tap device on the bridge (no namespace, no veth), and
   the address is the guest's own, set by its agent from the seed;
4. whoever sends from the root namespace calls `assert_local_route()` first: `ip route get`
   must show the bridge.
`down()` removes namespaces, veths, the bridge and the blackhole route; it is idempotent.
All commands go through builder.core.run's Runner.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass

from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.run import Runner, require
from builder.model.cluster import Cluster

BLACKHOLE_METRIC = 4242
IFNAMSIZ = 15


def _ifname(prefix: str, name: str) -> str:
    """A Linux interface name (at most 15 characters) that stays unique for long names."""
    full = f"{prefix}{name}"
    if len(full) <= IFNAMSIZ:
        return full
    return f"{prefix}{hashlib.sha256(name.encode()).hexdigest()[:IFNAMSIZ - len(prefix)]}"


@dataclass(frozen=True)
class NodeNet:
    name: str
    netns: str
    veth: str
    address: str
    tap: str = ""  # the vm engine's NIC on the bridge


@dataclass(frozen=True)
class LabNet:
    cluster: str
    cidr: str
    gateway: str
    prefix: int
    bridge: str
    nodes: tuple[NodeNet, ...]

    @classmethod
    def of(cls, cluster: Cluster) -> LabNet:
        nodes = tuple(
            NodeNet(name=n.name, netns=f"{cluster.name}-{n.name}",
                    veth=_ifname("vp", f"{cluster.name}-{n.name}"), address=str(n.address),
                    tap=_ifname("p", f"{cluster.name}-{n.name}"))
            for n in cluster.nodes
        )
        return cls(cluster=cluster.name, cidr=str(cluster.network.cidr),
                   gateway=str(cluster.network.gateway),
                   prefix=cluster.network.cidr.prefixlen,
                   bridge=_ifname("br-", cluster.name), nodes=nodes)

    def node(self, name: str) -> NodeNet:
        for n in self.nodes:
            if n.name == name:
                return n
        raise PghaError(f"no node named {name!r} in the lab",
                        hint="nodes: " + ", ".join(n.name for n in self.nodes))

    def contains(self, address: str) -> bool:
        return ipaddress.IPv4Address(address) in ipaddress.IPv4Network(self.cidr)


def former_node(cluster: str, name: str) -> NodeNet:
    """The network names of a node the cluster file no longer has (as LabNet.of named them)."""
    ns = f"{cluster}-{name}"
    return NodeNet(name=name, netns=ns, veth=_ifname("vp", ns), address="")


def ip(runner: Runner, *args: str, check: bool = True) -> str:
    proc = runner.run(["ip", *args], check=check)
    return proc.stdout.decode(errors="replace")


def _links(runner: Runner) -> set[str]:
    data = json.loads(ip(runner, "-j", "link", "show") or "[]")
    return {str(d["ifname"]) for d in data}


def namespaces(runner: Runner) -> set[str]:
    out = ip(runner, "netns", "list")
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _blackhole_present(runner: Runner, net: LabNet) -> bool:
    out = ip(runner, "route", "show", "type", "blackhole", net.cidr)
    return any(f"metric {BLACKHOLE_METRIC}" in line for line in out.splitlines())


def up(runner: Runner, net: LabNet, taps: bool = False) -> None:
    """Create the blackhole route, the bridge and every node's namespace, or with `taps` every
    node's tap device (idempotent)."""
    require("ip")
    if not _blackhole_present(runner, net):
        ip(runner, "route", "add", "blackhole", net.cidr, "metric", str(BLACKHOLE_METRIC))
    links = _links(runner)
    if net.bridge not in links:
        ip(runner, "link", "add", net.bridge, "type", "bridge")
    gw = f"{net.gateway}/{net.prefix}"
    if gw not in ip(runner, "-br", "addr", "show", "dev", net.bridge):
        ip(runner, "addr", "add", gw, "dev", net.bridge)
    ip(runner, "link", "set", net.bridge, "up")
    existing = namespaces(runner)
    for node in net.nodes:
        if taps:
            _tap_up(runner, net, node, node.tap in links)
        else:
            _node_up(runner, net, node, node.netns in existing, node.veth in links)
    log.debug("lab network %s up on %s (%s)", net.cidr, net.bridge, net.gateway)


def _node_up(runner: Runner, net: LabNet, node: NodeNet, have_ns: bool, have_veth: bool) -> None:
    if not have_ns:
        ip(runner, "netns", "add", node.netns)
    if not have_veth:
        ip(runner, "link", "add", node.veth, "type", "veth", "peer", "name", "eth0",
           "netns", node.netns)
    ip(runner, "link", "set", node.veth, "master", net.bridge)
    ip(runner, "link", "set", node.veth, "up")
    addr = f"{node.address}/{net.prefix}"
    if addr not in ip(runner, "-n", node.netns, "-br", "addr", "show", "dev", "eth0"):
        ip(runner, "-n", node.netns, "addr", "add", addr, "dev", "eth0")
    ip(runner, "-n", node.netns, "link", "set", "lo", "up")
    ip(runner, "-n", node.netns, "link", "set", "eth0", "up")


def _tap_up(runner: Runner, net: LabNet, node: NodeNet, have_tap: bool) -> None:
    """A persistent tap on the bridge; QEMU opens it by name (script=no)."""
    if not have_tap:
        ip(runner, "tuntap", "add", "dev", node.tap, "mode", "tap")
    ip(runner, "link", "set", node.tap, "master", net.bridge)
    ip(runner, "link", "set", node.tap, "up")


def assert_local_route(runner: Runner, net: LabNet, address: str) -> None:
    """Refuse to send to `address` from the root namespace unless it routes via the bridge."""
    if not net.contains(address):
        raise PghaError(f"refusing to send to {address}: not in the lab network {net.cidr}")
    data = json.loads(ip(runner, "-j", "route", "get", address) or "[]")
    dev = data[0].get("dev") if data else None
    if dev != net.bridge or data[0].get("type", "unicast") != "unicast":
        raise PghaError(f"refusing to send to {address}: it routes via {dev!r}, not the lab "
                        f"bridge {net.bridge}", hint="run `pgha-build lab up` first")


def pids_in(runner: Runner, netns: str) -> list[int]:
    """Every process whose network namespace is `netns`."""
    out = ip(runner, "netns", "pids", netns, check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def set_link(runner: Runner, node: NodeNet, state: str) -> None:
    """Take a node's link down (a partition) or up (heal): its veth, or a VM's tap."""
    ip(runner, "link", "set", node.veth if node.veth in _links(runner) else node.tap, state)


def down(runner: Runner, net: LabNet) -> None:
    """Remove every namespace, veth, the bridge and the blackhole route (idempotent)."""
    existing = namespaces(runner)
    links = _links(runner)
    for node in net.nodes:
        if node.netns in existing:
            ip(runner, "netns", "del", node.netns)
        for link in (node.veth, node.tap):
            if link and link in links:
                ip(runner, "link", "del", link, check=False)
    if net.bridge in links:
        ip(runner, "link", "del", net.bridge)
    if _blackhole_present(runner, net):
        ip(runner, "route", "del", "blackhole", net.cidr, "metric", str(BLACKHOLE_METRIC))


def leftovers(runner: Runner, net: LabNet) -> list[str]:
    """What of the lab network still exists (empty after a clean `down`)."""
    found = [f"netns {n.netns}" for n in net.nodes if n.netns in namespaces(runner)]
    links = _links(runner)
    found += [f"link {name}" for name in [net.bridge, *(n.veth for n in net.nodes),
                                          *(n.tap for n in net.nodes)] if name in links]
    if _blackhole_present(runner, net):
        found.append(f"route blackhole {net.cidr}")
    routes = ip(runner, "route", "show", "match", net.cidr)
    found += [f"route {line.strip()}" for line in routes.splitlines()
              if line.strip() and not line.startswith(("default", "blackhole"))]
    return found
