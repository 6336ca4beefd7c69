"""`lab status`: Patroni members (role, state, timeline, lag), HAProxy's backends, and the
load balancers: whose HAProxy serves, and which one holds the virtual IP.

Reads Patroni's REST API (/cluster) on every db node (the freshest view wins) and HAProxy's stats page
as CSV, both on lab addresses after the route check.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from builder.lab import artifacts, backup, vip
from builder.lab.health import http
from builder.lab.lab import HOST, Lab
from builder.lab.net import namespaces

# Patroni's view of the cluster lives in readiness (lab.up needs it without importing status);
# the names stay importable from here.
from builder.lab.readiness import (  # noqa: F401
    Readiness,
    cluster_view,
    cluster_views,
    failover_readiness,
    leader,
    views_agree,
    watchdog_line,
)
from builder.stages import manifest


def backends(lab: Lab) -> list[dict[str, str]]:
    """HAProxy's view as clients get it (through the VIP, if any): one row per (listener,
    server) with its UP/DOWN status."""
    return backends_at(lab, lab.entry)


def backends_at(lab: Lab, address: str) -> list[dict[str, str]]:
    """The backends as the HAProxy at `address` (a load balancer, or the VIP) sees them."""
    stats = lab.secrets().haproxy_stats
    scheme = "https" if lab.cluster.tls.enabled else "http"
    url = f"{scheme}://{address}:{lab.ports()['stats']}/;csv"
    from builder.lab.net import assert_local_route

    assert_local_route(lab.runner, lab.net, address)
    code, body = http("GET", url, auth=(stats.username, stats.password), timeout=1.5,
                      context=lab.rest_context())
    if code != 200 or not isinstance(body, str):
        return []
    rows = csv.DictReader(io.StringIO(body.lstrip("# ")))
    return [{"listener": r["pxname"], "server": r["svname"], "status": r["status"]}
            for r in rows if r["pxname"] in ("primary", "replicas")
            and r["svname"] not in ("FRONTEND", "BACKEND")]


def load_balancers(lab: Lab) -> list[dict[str, Any]]:
    """Each load balancer: whether its HAProxy answers (stats on its own address) and whether
    it holds the virtual IP."""
    holding = set(vip.holders(lab))
    return [{"name": n.name, "address": n.address, "haproxy": bool(backends_at(lab, n.address)),
             "vip": n.name in holding} for n in lab.lb_nodes]


def lbs_ready(lab: Lab) -> bool:
    """Every load balancer serves, and (with a VIP) exactly one holds it: either can take over."""
    rows = load_balancers(lab)
    held = [r for r in rows if r["vip"]]
    return all(r["haproxy"] for r in rows) and (lab.vip is None or len(held) == 1)


def collect(lab: Lab) -> dict[str, Any]:
    present = namespaces(lab.runner)
    running = lab.running() and all(n.netns in present for n in lab.net.nodes)
    view = cluster_view(lab) if running else None
    ports = lab.ports()
    ready = failover_readiness(lab, view) if running else Readiness(False, "not running")
    return {
        "cluster": lab.cluster.name,
        "running": running,
        "artifacts": _artifacts(lab) if running else None,
        "failover_ready": {"ready": ready.ready, "reason": ready.reason},
        "synchronous_mode": lab.cluster.patroni.synchronous_mode,
        "watchdog": lab.cluster.patroni.watchdog,
        "members": [_member(m) for m in (view or {}).get("members", [])],
        "backends": backends(lab) if running else [],
        "load_balancers": load_balancers(lab) if running else [],
        "virtual_ip": lab.vip,
        "vip_holder": vip.holder(lab) if running else None,
        "backup": backup.status(lab) if running else None,
        "endpoints": {"read_write": f"{HOST}:{ports['rw']}", "read_only": f"{HOST}:{ports['ro']}",
                      "stats": f"{'https' if lab.cluster.tls.enabled else 'http'}://{HOST}:"
                               f"{ports['stats']}/",
                      "entry": f"{lab.entry}:{ports['rw']}/{ports['ro']}"},
    }


def _artifacts(lab: Lab) -> dict[str, Any] | None:
    """What runs: the manifest the lab took its artifacts from, its sha256 then, and whether
    that manifest is still the same (a build since changes it)."""
    taken = artifacts.recorded(lab.state_file)
    if taken is None:
        return None
    return {"manifest": taken.manifest_path, "manifest_sha256": taken.manifest,
            "current": manifest.digest(Path(taken.manifest_path)) == taken.manifest}


def _member(m: dict[str, Any]) -> dict[str, Any]:
    return {"name": m.get("name"), "host": m.get("host"), "role": m.get("role"),
            "state": m.get("state"), "timeline": m.get("timeline"),
            "lag": m.get("lag", m.get("receive_lag")),
            "pending_restart": bool(m.get("pending_restart")),
            "pending_restart_reason": dict(m.get("pending_restart_reason") or {})}


def table(data: dict[str, Any]) -> str:
    if not data["running"]:
        return f"lab '{data['cluster']}' is not running (pgha-build lab up)"
    lines = [(f"{'member':<8} {'host':<14} {'role':<14} {'state':<12} {'TL':>3} {'lag':>8}  "
              "pending restart")]
    for m in data["members"]:
        lag = "" if m["lag"] is None else str(m["lag"])
        lines.append(f"{m['name']:<8} {m['host'] or '':<14} {m['role'] or '':<14} "
                     f"{m['state'] or '':<12} {m['timeline'] or '':>3} {lag:>8}  "
                     f"{_pending(m)}".rstrip())
    if not data["members"]:
        lines.append("(no Patroni member answers)")
    ready = data["failover_ready"]
    lines += ["", Readiness(ready["ready"], ready["reason"]).line(),
              f"synchronous_mode: {json.dumps(data['synchronous_mode'])}",
              watchdog_line(data["watchdog"]), ""]
    lines.append(f"{'haproxy':<10} {'server':<8} status")
    for b in data["backends"]:
        lines.append(f"{b['listener']:<10} {b['server']:<8} {b['status']}")
    lines += ["", *_lb_lines(data)]
    lines += ["", *backup.lines(data.get("backup"))]
    arts = data.get("artifacts")
    if arts:
        note = "" if arts["current"] else " (changed since: `lab up` after `lab down` runs it)"
        lines += ["", f"artifacts: {arts['manifest']} sha256 {arts['manifest_sha256']}{note}"]
    e = data["endpoints"]
    lines += ["", (f"read-write {e['read_write']}   read-only {e['read_only']}   "
                   f"stats {e['stats']}   (host path to {e['entry']})")]
    return "\n".join(lines)


def _pending(m: dict[str, Any]) -> str:
    """"*" and what waits for the restart (max_connections 100->200), as patronictl shows it."""
    if not m.get("pending_restart"):
        return ""
    reasons = m.get("pending_restart_reason") or {}
    what = ", ".join(f"{k} {v.get('old_value')}->{v.get('new_value')}" if isinstance(v, dict)
                     else str(k) for k, v in sorted(reasons.items()))
    return f"* {what}".rstrip()


def _lb_lines(data: dict[str, Any]) -> list[str]:
    lines = [f"{'balancer':<10} {'address':<14} {'haproxy':<8} virtual IP"]
    for lb in data["load_balancers"]:
        lines.append(f"{lb['name']:<10} {lb['address']:<14} "
                     f"{'serves' if lb['haproxy'] else 'DOWN':<8} "
                     f"{'HOLDS ' + str(data['virtual_ip']) if lb['vip'] else ''}")
    if data["virtual_ip"] and not data["vip_holder"]:
        held = [lb["name"] for lb in data["load_balancers"] if lb["vip"]]
        lines.append(f"virtual IP {data['virtual_ip']}: held by "
                     f"{', '.join(held) if held else 'nobody'} (expected exactly one)")
    return lines
