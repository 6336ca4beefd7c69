"""What a changed cluster file does to each node (`pgha-build plan`), and the membership rules
`check` applies against the last build (etcd quorum; the current primary never removed or
re-imaged without a switchover first).

Boundary: reads the last build's seeds (output/<cluster>/seeds/<host>/pgha/seed.json), renders
the new ones in memory (seeds.render_seed; no seed is written) and compares them. A node's fate:
  new seed   in the cluster file, no seed yet: boot a new VM from its role image and this seed;
  remove     in the last build, not in the file: shut its VM down (the others' new seeds remove
             its etcd member and stop admitting it);
  re-image   its identity changed (address, roles, etcd peer URL): a new VM with the new seed;
  restart    a running service without a reload signal reads a changed file;
  reload     files changed, every running service that reads them reloads (docs/agent.md,
             "A changed seed on a running node");
  unchanged  the same seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from builder.core.context import Context
from builder.core.paths import OutputPaths
from builder.model import roles
from builder.model.cluster import Cluster
from builder.model.secrets import Secrets
from builder.stages import seeds

# etcd reads these only when it starts on an empty data dir: a change is no reason to restart.
START_ONLY = ("ETCD_INITIAL_CLUSTER", "ETCD_INITIAL_CLUSTER_STATE", "ETCD_INITIAL_CLUSTER_TOKEN")


@dataclass(frozen=True)
class Fate:
    node: str
    fate: str
    detail: str


def previous_seeds(out: OutputPaths) -> dict[str, dict[str, Any]]:
    """The last build's seed of each node (empty when nothing was built)."""
    found = {}
    if out.seeds.is_dir():
        for path in sorted(out.seeds.glob("*/pgha/seed.json")):
            try:
                found[path.parent.parent.name] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
    return found


def etcd_members(seed_map: dict[str, dict[str, Any]]) -> dict[str, str]:
    """name -> address of every node whose seed makes it an etcd member."""
    return {name: str(s["node"]["address"]) for name, s in seed_map.items()
            if isinstance(s.get("etcd_join"), dict)}


def quorum_problems(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Why going from the etcd members `old` to `new` (name -> address) would lose quorum:
    the old members that stay must be a majority of the old cluster, or the cluster cannot
    remove the others (a member whose peer URL changed counts as removed)."""
    if not old:
        return []
    gone = sorted(n for n, addr in old.items() if new.get(n) != addr)
    kept = len(old) - len(gone)
    need = len(old) // 2 + 1
    if kept >= need:
        return []
    return [(f"removing or moving {', '.join(gone)} leaves {kept} of the {len(old)} etcd "
             f"members of the last build: etcd needs {need} to keep quorum; change at most "
             f"{len(old) - need} at a time (build, apply, then the next)")]


def _env(text: str) -> dict[str, str] | None:
    """KEY=VALUE pairs of an environment file, or None when the text is not one: every line
    that is not blank or a comment must be NAME=VALUE (haproxy.cfg's `uri /replica?lag=65536`
    has an "=" too, and its server lines must still count)."""
    pairs: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip().isidentifier():
            return None
        pairs[key.strip()] = value
    return pairs


def _matters(old: str, new: str) -> bool:
    """Whether a file changed in a way its (running) reader notices."""
    a, b = _env(old), _env(new)
    if not a or not b:
        return old != new
    return {k: v for k, v in a.items() if k not in START_ONLY} != {
        k: v for k, v in b.items() if k not in START_ONLY}


def _changed_files(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before = {f["path"]: f["content"] for f in old.get("files", [])}
    return [f["path"] for f in new.get("files", [])
            if before.get(f["path"]) != f["content"]
            and (f["path"] not in before or _matters(before[f["path"]], f["content"]))]


def _readers(seed: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [s for s in seed.get("services", [])
            if path in s.get("argv", []) or path == s.get("env_file")]


def changed_fate(old: dict[str, Any], new: dict[str, Any]) -> tuple[str, str]:
    """(fate, detail) of a node that is in the last build and in the cluster file."""
    ident = ("address", "prefix")
    if (any(old["node"].get(k) != new["node"].get(k) for k in ident)
            or old.get("roles") != new.get("roles")
            or (old.get("etcd_join") or {}).get("peer_url")
            != (new.get("etcd_join") or {}).get("peer_url")):
        return "re-image", "address or roles changed: boot a new VM with the new seed"
    if old.get("instance_id") == new.get("instance_id"):
        return "unchanged", ""
    files = _changed_files(old, new)
    if not files:
        rest = "firewall rules" if old.get("firewall_rules") != new.get("firewall_rules") \
            else "seed fields"
        return "reload", f"{rest} changed, no file (the agent applies them)"
    stiff = sorted({s["name"] for p in files for s in _readers(new, p) if not s.get("reload")})
    if stiff:
        return "restart", (f"{', '.join(files)} changed; {', '.join(stiff)} has no reload: "
                           f"apply the seed, then `systemctl restart {' '.join(stiff)}`")
    reloads = sorted({s["name"] for s in new.get("services", []) if s.get("reload")})
    return "reload", f"{', '.join(files)} changed; reloads {', '.join(reloads) or 'nothing'}"


def plan(ctx: Context, secrets: Secrets) -> list[Fate]:
    """Each node's fate, the cluster file against the last build's seeds."""
    before = previous_seeds(ctx.out)
    fates = []
    for node in ctx.cluster.nodes:
        new = seeds.render_seed(ctx, node, secrets)
        if node.name not in before:
            fates.append(Fate(node.name, "new seed", "boot a new VM from its role image and "
                                                     "this seed; it joins by itself"))
            continue
        fates.append(Fate(node.name, *changed_fate(before[node.name], new)))
    names = {n.name for n in ctx.cluster.nodes}
    for name in sorted(set(before) - names):
        member = " (its etcd member goes once it is off)" if name in etcd_members(before) else ""
        fates.append(Fate(name, "remove", "shut its VM down after the other nodes have their "
                                          f"new seeds{member}; switch over first if it is the "
                                          "primary"))
    return fates


def membership_problems(cluster: Cluster, out: OutputPaths) -> list[str]:
    """`check`: the cluster file's etcd members against the last build's (quorum)."""
    new = {n.name: str(n.address) for n in roles.nodes_with(cluster.nodes, "etcd_member")}
    return quorum_problems(etcd_members(previous_seeds(out)), new)


def _is_db(role_names: list[str]) -> bool:
    known = roles.all_roles()
    return any(known[r].postgres for r in role_names if r in known)


def db_seeds(out: OutputPaths) -> dict[str, dict[str, Any]]:
    """The last build's seeds of the database nodes."""
    return {name: seed for name, seed in previous_seeds(out).items()
            if _is_db(list(seed.get("roles") or []))}


def leaving_db(cluster: Cluster, out: OutputPaths) -> list[str]:
    """The last build's database nodes whose PostgreSQL this cluster file ends: removed, or
    re-imaged (another address or other roles)."""
    new = {n.name: n for n in cluster.nodes}
    gone = []
    for name, seed in db_seeds(out).items():
        node = new.get(name)
        if (node is None or str(node.address) != seed["node"].get("address")
                or sorted(node.roles) != sorted(seed.get("roles") or [])):
            gone.append(name)
    return gone


def leader_problems(cluster: Cluster, out: OutputPaths, leader: str | None,
                    source: str) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the change for the current primary `leader` (None: unknown;
    `source` says who told): removing or re-imaging it is refused, switch over first."""
    gone = leaving_db(cluster, out)
    if not gone:
        return [], []
    if leader is None:
        return [], [(f"this change removes or re-images the database node(s) "
                     f"{', '.join(gone)}, and the current primary is not known here: pass "
                     "--leader NODE (as `patronictl list` shows it) to have it checked, and "
                     "switch over first if it is one of them")]
    if leader in gone:
        return [(f"{leader} is the current primary ({source}) and this change removes or "
                 "re-images it: switch over to a node that stays first (`patronictl "
                 "switchover --candidate NODE`, in the lab `pgha-build lab switchover --to "
                 "NODE`), then check again with the new primary")], []
    return [], []
