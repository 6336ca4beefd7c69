"""Link faults on lab interfaces only: a slow link (tc netem delay/jitter/reorder, or a tbf rate
limit where the kernel has no sch_netem), a lossy link (netem loss, or an nftables random
drop) and a split into two groups (blackhole routes inside the namespaces). Each returns the
function that removes it; removing is idempotent, so a heal that runs twice is harmless.

Shaping applies to both directions: the node's eth0 (inside its namespace, what it sends) and
the host end of its veth (on the lab bridge, what it receives).
"""

from __future__ import annotations

from collections.abc import Callable

from builder.core.run import Runner
from builder.lab.net import LabNet, NodeNet

NFT_TABLE = "pgha_soak"


def _tc(runner: Runner, node: NodeNet, inside: bool, *args: str, check: bool = True) -> int:
    dev = "eth0" if inside else node.veth
    prefix = ["ip", "netns", "exec", node.netns] if inside else []
    proc = runner.run([*prefix, "tc", "qdisc", *args[:1], "dev", dev, "root", *args[1:]],
                      check=check)
    return proc.returncode


_NETEM: dict[str, bool] = {}
PROBE_LINK = "pgha-np0"  # and its peer pgha-np1 (interface names: 15 characters at most)


def netem_available(runner: Runner, node: NodeNet) -> bool:
    """Whether the kernel has sch_netem: a netem qdisc tried once per process on a veth pair
    made for it in the node's namespace, then removed (the node's own eth0, which may carry
    a fault's qdisc already, is never touched; veth, not dummy: some kernels, this machine's,
    have no dummy driver). The kernel loads sch_netem on demand where it is a module."""
    if "netem" not in _NETEM:
        ns = ["ip", "netns", "exec", node.netns]
        runner.run([*ns, "ip", "link", "add", PROBE_LINK, "type", "veth", "peer", "name",
                    PROBE_LINK[:-1] + "1"])
        try:
            tried = runner.run([*ns, "tc", "qdisc", "add", "dev", PROBE_LINK, "root", "netem",
                                "delay", "1ms"], check=False)
        finally:
            runner.run([*ns, "ip", "link", "del", PROBE_LINK], check=False)
        _NETEM["netem"] = tried.returncode == 0
    return _NETEM["netem"]


def netem_known() -> bool | None:
    """What the probe found (None: no link fault asked yet)."""
    return _NETEM.get("netem")


def _clear_qdisc(runner: Runner, node: NodeNet) -> None:
    for inside in (True, False):
        _tc(runner, node, inside, "del", check=False)


def slow(runner: Runner, node: NodeNet, pick: int) -> tuple[str, Callable[[], None]]:
    """Delay with jitter and reordering (netem), else a rate limit with a deep queue (tbf)."""
    if netem_available(runner, node):
        delay = 40 + pick % 160
        spec = ["netem", "delay", f"{delay}ms", f"{delay // 2}ms", "reorder", "10%", "50%"]
    else:
        rate = 128 << (pick % 3)  # 128, 256 or 512 kbit/s
        spec = ["tbf", "rate", f"{rate}kbit", "burst", "16kbit", "latency", "500ms"]
    for inside in (True, False):
        _tc(runner, node, inside, "add", *spec)
    return " ".join(spec), lambda: _clear_qdisc(runner, node)


def lossy(runner: Runner, node: NodeNet, pick: int) -> tuple[str, Callable[[], None]]:
    """Drop 5-30% of packets both ways: netem loss, else nftables' numgen random."""
    percent = 5 + pick % 26
    if netem_available(runner, node):
        for inside in (True, False):
            _tc(runner, node, inside, "add", "netem", "loss", f"{percent}%")
        return f"netem loss {percent}%", lambda: _clear_qdisc(runner, node)
    rule = f"numgen random mod 100 < {percent} drop"
    script = (f"table inet {NFT_TABLE} {{\n"
              f"  chain in {{ type filter hook input priority 0; {rule}; }}\n"
              f"  chain out {{ type filter hook output priority 0; {rule}; }}\n}}\n")
    runner.run(["ip", "netns", "exec", node.netns, "nft", "-f", "-"], input=script.encode())

    def heal() -> None:
        runner.run(["ip", "netns", "exec", node.netns, "nft", "delete", "table", "inet",
                    NFT_TABLE], check=False)

    return f"nft random drop {percent}%", heal


def split(runner: Runner, net: LabNet, first: list[str],
          second: list[str]) -> Callable[[], None]:
    """No traffic between the groups: in each node's namespace, a blackhole route to every
    address of the other group (packets vanish, as on a cut link: no error comes back)."""
    pairs = [(net.node(a), net.node(b)) for a in first for b in second]
    pairs += [(b, a) for a, b in pairs]
    for src, dst in pairs:
        runner.run(["ip", "-n", src.netns, "route", "replace", "blackhole", f"{dst.address}/32"])

    def heal() -> None:
        for src, dst in pairs:
            runner.run(["ip", "-n", src.netns, "route", "del", "blackhole",
                        f"{dst.address}/32"], check=False)

    return heal
