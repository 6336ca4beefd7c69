"""`lab status`: Patroni members (role, state, timeline, lag) and HAProxy's backends.

Reads Patroni's REST API (/cluster) on every db node (the freshest view wins) and HAProxy's stats page
as CSV, both on lab addresses after the route check.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from builder.lab import readiness
from builder.lab.health import http
from builder.lab.lab import HOST, Lab
from builder.lab.net import namespaces
from builder.lab.readiness import Readiness


def cluster_views(lab: Lab, timeout: float = 1.5) -> list[dict[str, Any]]:
    """Patroni's /cluster from every db node that answers."""
    views = []
    for node in lab.db_nodes:
        code, body = http("GET", lab.rest_url(node, "/cluster"), timeout=timeout)
        if code == 200 and isinstance(body, dict):
            views.append(body)
    return views


def _leader_of(view: dict[str, Any]) -> tuple[int, str]:
    for m in view.get("members", []):
        if m.get("role") == "leader":
            return int(m.get("timeline") or 0), str(m["name"])
    return -1, ""


def cluster_view(lab: Lab, timeout: float = 1.5) -> dict[str, Any] | None:
    """The freshest /cluster view (None if no node answers). A node that was cut off (a healed
    partition) may still serve its stale cache, naming itself leader on an old timeline: the
    view whose leader has the highest timeline wins."""
    views = cluster_views(lab, timeout)
    return max(views, key=_leader_of) if views else None


def views_agree(lab: Lab) -> bool:
    """Every answering node names the same leader on the same timeline."""
    views = cluster_views(lab)
    return bool(views) and len({_leader_of(v) for v in views}) == 1


def leader(lab: Lab) -> str | None:
    view = cluster_view(lab)
    for m in (view or {}).get("members", []):
        if m.get("role") == "leader":
            return str(m["name"])
    return None


def failover_readiness(lab: Lab, view: dict[str, Any] | None = None) -> Readiness:
    """Whether the cluster can fail over now (every db node a member, replicas streaming, a
    synchronous standby in synchronous mode), judged on the freshest view."""
    view = view if view is not None else cluster_view(lab)
    config = readiness.dynamic_config([lab.rest_url(n, "/config") for n in lab.db_nodes])
    return readiness.evaluate(view, config, [n.name for n in lab.db_nodes])


def watchdog_line(mode: str) -> str:
    why = " (the lab's nodes share this machine's kernel: a reset would reboot it)"
    return f"watchdog: {mode}{why if mode == 'off' else ''}"


def backends(lab: Lab) -> list[dict[str, str]]:
    """HAProxy's view: one row per (listener, server) with its UP/DOWN status."""
    lb = lab.lb
    stats = lab.secrets().haproxy_stats
    url = f"http://{lb.address}:{lab.ports()['stats']}/;csv"
    from builder.lab.net import assert_local_route

    assert_local_route(lab.runner, lab.net, lb.address)
    code, body = http("GET", url, auth=(stats.username, stats.password), timeout=1.5)
    if code != 200 or not isinstance(body, str):
        return []
    rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
    return [{"listener": r["pxname"], "server": r["svname"], "status": r["status"]}
            for r in rows if r["pxname"] in ("primary", "replicas")
            and r["svname"] not in ("FRONTEND", "BACKEND")]


def collect(lab: Lab) -> dict[str, Any]:
    present = namespaces(lab.runner)
    running = lab.running() and all(n.netns in present for n in lab.net.nodes)
    view = cluster_view(lab) if running else None
    ports = lab.ports()
    ready = failover_readiness(lab, view) if running else Readiness(False, "not running")
    return {
        "cluster": lab.cluster.name,
        "running": running,
        "failover_ready": {"ready": ready.ready, "reason": ready.reason},
        "synchronous_mode": lab.cluster.patroni.synchronous_mode,
        "watchdog": lab.cluster.patroni.watchdog,
        "members": [_member(m) for m in (view or {}).get("members", [])],
        "backends": backends(lab) if running else [],
        "endpoints": {"read_write": f"{HOST}:{ports['rw']}", "read_only": f"{HOST}:{ports['ro']}",
                      "stats": f"http://{HOST}:{ports['stats']}/"},
    }


def _member(m: dict[str, Any]) -> dict[str, Any]:
    return {"name": m.get("name"), "host": m.get("host"), "role": m.get("role"),
            "state": m.get("state"), "timeline": m.get("timeline"),
            "lag": m.get("lag", m.get("receive_lag"))}


def table(data: dict[str, Any]) -> str:
    if not data["running"]:
        return f"lab '{data['cluster']}' is not running (pgha-build lab up)"
    lines = [f"{'member':<8} {'host':<14} {'role':<14} {'state':<12} {'TL':>3} {'lag':>8}"]
    for m in data["members"]:
        lag = "" if m["lag"] is None else str(m["lag"])
        lines.append(f"{m['name']:<8} {m['host'] or '':<14} {m['role'] or '':<14} "
                     f"{m['state'] or '':<12} {m['timeline'] or '':>3} {lag:>8}")
    if not data["members"]:
        lines.append("(no Patroni member answers)")
    ready = data["failover_ready"]
    lines += ["", Readiness(ready["ready"], ready["reason"]).line(),
              f"synchronous_mode: {json.dumps(data['synchronous_mode'])}",
              watchdog_line(data["watchdog"]), ""]
    lines.append(f"{'haproxy':<10} {'server':<8} status")
    for b in data["backends"]:
        lines.append(f"{b['listener']:<10} {b['server']:<8} {b['status']}")
    e = data["endpoints"]
    lines += ["", (f"read-write {e['read_write']}   read-only {e['read_only']}   "
                   f"stats {e['stats']}")]
    return "\n".join(lines)
