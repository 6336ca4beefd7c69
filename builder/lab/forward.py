"""The host's way into the lab: 127.0.0.1:<port> forwarded by the kernel to the lab's entry
(the virtual IP, or the one load balancer), with nftables.

One table per lab, `ip pgha_lab_<cluster>`, with two NAT chains: `output` rewrites the
destination of new connections from this host to 127.0.0.1:<port> (the read-write, read-only
and stats ports) to <entry>:<port>; `postrouting` gives them the bridge's gateway address as
source, since 127.0.0.1 cannot leave the loopback device. The bridge gets `route_localnet=1`
(its own sysctl, gone with the bridge), which lets the kernel route those packets and their
replies. Conntrack keeps each connection's translation, so established clients follow the VIP
like any other client (a move resets them; they reconnect to the new holder).

Costs no process and no copy: pgbench -S through 127.0.0.1 runs at the speed of a client in a
namespace (bench/lab_bench.py measures both). Safety as in net.py: the caller checks that the
entry routes via the bridge first; a blackhole route catches the packets while the bridge is
down; the rules match only 127.0.0.1 and this lab's ports; `down()` deletes the table.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from builder.core.errors import PghaError
from builder.core.run import Runner
from builder.lab.net import LabNet

PREFIX = "pgha_lab_"
LOOPBACK = "127.0.0.1"


def table(net: LabNet) -> str:
    return PREFIX + re.sub(r"[^A-Za-z0-9]", "_", net.cluster)


def ruleset(net: LabNet, entry: str, ports: list[int]) -> str:
    """The nftables table that forwards 127.0.0.1:<ports> to <entry>:<same port>."""
    plist = ", ".join(str(p) for p in sorted(set(ports)))
    return (
        f"table ip {table(net)} {{\n"
        "  chain output {\n"
        "    type nat hook output priority -100; policy accept;\n"
        f"    ip daddr {LOOPBACK} tcp dport {{ {plist} }} dnat to {entry}\n"
        "  }\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority 100; policy accept;\n"
        f'    ip saddr 127.0.0.0/8 ip daddr {entry} oifname "{net.bridge}" snat to {net.gateway}\n'
        "  }\n"
        "}\n"
    )


def available() -> bool:
    return shutil.which("nft") is not None


def _tables(runner: Runner) -> list[str]:
    proc = runner.run(["nft", "list", "tables", "ip"], check=False)
    return [line.split()[-1] for line in proc.stdout.decode().splitlines()
            if line.startswith("table ip ")]


def present(runner: Runner, net: LabNet) -> bool:
    return available() and table(net) in _tables(runner)


def _conflicts(runner: Runner, net: LabNet, ports: list[int]) -> list[str]:
    """Another lab's table or a listening program already owns one of these 127.0.0.1 ports."""
    found = []
    for other in (t for t in _tables(runner) if t.startswith(PREFIX) and t != table(net)):
        text = runner.run(["nft", "list", "table", "ip", other]).stdout.decode()
        found += [f"port {p} is forwarded by the nftables table {other} (another lab)"
                  for p in ports if re.search(rf"dport \{{[^}}]*\b{p}\b", text)]
    taken = listening_ports()
    found += [f"{LOOPBACK}:{port} is in use by a program on this host (a listener)"
              for port in ports if port in taken]
    return found


# Local addresses whose listener would get connections to 127.0.0.1 (as /proc/net/tcp{,6}
# writes them): 127.0.0.1, 0.0.0.0, ::, ::ffff:127.0.0.1.
_LOOPBACK_OR_ANY = {"0100007F", "00000000", "0" * 32, "0000000000000000FFFF00000100007F"}


def listening_ports() -> set[int]:
    """TCP ports with a listener on 127.0.0.1 or any address, in this network namespace.
    Read from /proc/net/tcp{,6} (state 0A): a client's connection that happens to use one of
    these numbers as its ephemeral local port is no conflict (a bind() probe would fail on
    it, which made `lab up` fail at random when the lab's ports lie in the ephemeral range)."""
    ports = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            addr, _, port = fields[1].partition(":")
            if fields[3] == "0A" and addr in _LOOPBACK_OR_ANY:
                ports.add(int(port, 16))
    return ports


def up(runner: Runner, net: LabNet, entry: str, ports: list[int]) -> None:
    """Install the forward (kept as is if this lab's table exists: clients stay connected)."""
    if present(runner, net):
        return
    problems = _conflicts(runner, net, ports)
    if problems:
        raise PghaError(f"lab: cannot forward 127.0.0.1 to {entry}: " + "; ".join(problems),
                        hint="take the other lab down, stop that program, or give this "
                             "cluster other load_balancer ports")
    Path(f"/proc/sys/net/ipv4/conf/{net.bridge}/route_localnet").write_text("1\n")
    runner.run(["nft", "-f", "-"], input=ruleset(net, entry, ports).encode())


def down(runner: Runner, net: LabNet) -> None:
    if present(runner, net):
        runner.run(["nft", "delete", "table", "ip", table(net)])


def leftovers(runner: Runner, net: LabNet) -> list[str]:
    return [f"nftables table ip {table(net)}"] if present(runner, net) else []
