"""The rolling upgrade of a running cluster to build N+1 (new role RPMs, new Patroni or
PostgreSQL minor pins), as ordered steps an operator can read first: the db replicas one at a
time, one switchover, the old primary, then the load balancers one at a time. Each step names
its commands and the check that must pass before the next. `pgha-build upgrade-plan` prints
it for a real cluster; `pgha-build lab upgrade` executes the same steps in the lab
(builder.lab.upgrade)."""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.model import roles
from builder.model.cluster import Cluster
from builder.model.platform import layout
from builder.stages import render


@dataclass(frozen=True)
class Step:
    kind: str  # "upgrade" (a node) or "switchover"
    node: str
    commands: list[str] = field(default_factory=list)
    check: str = ""


def packages(cluster: Cluster, node: str) -> list[str]:
    """What `dnf upgrade` names on the node: pgha-common, its role packages and what they
    require (PostgreSQL, Patroni, etcd, HAProxy...), so new pins and minor versions come too."""
    context = render.base_context(cluster)
    names = ["pgha-common"]
    for role in (roles.get(r) for r in cluster.node(node).roles):
        names.append(role.package)
        names += [render.render_string(r, context).split()[0] for r in role.requires]
    return list(dict.fromkeys(names))


def plan(cluster: Cluster, leader: str) -> list[Step]:
    """Replicas (name order), a switchover from `leader`, `leader`, then load balancers."""
    db = [n.name for n in roles.nodes_with(cluster.nodes, "postgres")]
    lbs = [n.name for n in roles.nodes_with(cluster.nodes, "load_balancer")]
    if leader not in db:
        raise ValueError(f"{leader} is not a database node of {cluster.name}")
    lay = layout(cluster.platform, cluster.postgres_version)
    ctl = f"patronictl -c {lay.patroni_config}"
    ready = (f"`{ctl} list`: every member there, replicas streaming with lag 0 (within "
             "maximum_lag_on_failover), no pending restart")
    steps = [_db(cluster, n, ctl, ready) for n in db if n != leader]
    steps.append(Step("switchover", leader, [
        f"{ctl} switchover {cluster.name} --leader {leader} --force   # on any db node"],
        f"`{ctl} list`: the leader is an upgraded node; {leader} streams again"))
    steps.append(_db(cluster, leader, ctl, ready))
    steps += [Step("upgrade", n, [_dnf(cluster, n),
                                  "rpm -q pgha-common " + " ".join(roles.get(r).package for r in
                                                                   cluster.node(n).roles)],
                   "HAProxy serves (the stats page lists one primary UP and the replicas UP); "
                   "with a virtual IP, upgrade the load balancer that does not hold it first")
              for n in lbs]
    return steps


def _dnf(cluster: Cluster, node: str) -> str:
    return "sudo dnf upgrade --refresh -y " + " ".join(packages(cluster, node))


def _db(cluster: Cluster, node: str, ctl: str, ready: str) -> Step:
    return Step("upgrade", node, [
        _dnf(cluster, node),
        "sudo systemctl restart patroni   # PostgreSQL under the new binaries, the new Patroni",
        "rpm -q " + " ".join(packages(cluster, node)[:2]) + "   # the new release"],
        ready + f"; {node} shows the new PostgreSQL version")


def text(cluster: Cluster, steps: list[Step], release: int) -> str:
    lines = [(f"rolling upgrade of {cluster.name} to release {release} (the new repository "
             "served, the previous release's kept for a rollback). Before each step the check "
             "of the step before must pass; stop at the first that does not (docs/changes.md)."),
             ""]
    for i, s in enumerate(steps, 1):
        head = (f"{i}. switch over from {s.node} (writes pause once)" if s.kind == "switchover"
                else f"{i}. upgrade {s.node}")
        lines += [head, *(f"     {c}" for c in s.commands), f"   check: {s.check}", ""]
    lines.append("Instead of dnf, a node may be re-imaged with the release's image and its same "
                 "seed; the checks are the same. Rollback of a node: `sudo dnf downgrade` the "
                 "same packages from the previous repository (or `dnf history undo last`), "
                 "then `sudo systemctl restart patroni`.")
    return "\n".join(lines)
