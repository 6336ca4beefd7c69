"""`pgha-build f5 --status URL`: what the BIG-IP thinks of each pool member, read-only.

The HAProxy stats page's equivalent: iControl REST `GET /mgmt/tm/ltm/pool/~T~A~pool/members/
stats` per pool (member availability, the reason, current server-side connections). Healthy
means what clients need: exactly one member available in the read-write pool (none: no primary
reachable; two: a split brain the monitors let through) and at least one in the read-only pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from builder.core.errors import PghaError
from builder.core.httpclient import Api, ApiError
from builder.stages.f5plan import Plan

STATS = "/mgmt/tm/ltm/pool/{}/members/stats"


@dataclass(frozen=True)
class MemberState:
    node: str
    address: str
    port: int
    availability: str  # available, offline, unknown
    reason: str
    connections: int


def pool_members(base: str, api: Api, p: Plan, pool: str) -> list[MemberState]:
    path = p.path(pool).replace("/", "~")
    try:
        resp = api.request("GET", base + STATS.format(path))
    except ApiError as exc:
        if exc.status == 404:
            raise PghaError(f"the BIG-IP has no pool {p.path(pool)}",
                            hint="apply the configuration first (pgha-build f5 --apply URL "
                                 "--yes, or tmsh.txt)") from None
        raise PghaError(exc.message, hint=exc.hint) from None
    try:
        entries = resp.json().get("entries") or {}
    except (ValueError, AttributeError):
        entries = {}
    out = [_member(e.get("nestedStats", {}).get("entries", {})) for e in entries.values()
           if isinstance(e, dict)]
    return sorted(out, key=lambda m: m.node)


def _member(stats: dict[str, Any]) -> MemberState:
    def text(key: str) -> str:
        return str((stats.get(key) or {}).get("description", ""))

    def number(key: str) -> int:
        value = (stats.get(key) or {}).get("value", 0)
        return value if isinstance(value, int) else 0

    return MemberState(node=text("nodeName").rsplit("/", 1)[-1] or text("addr"),
                       address=text("addr"), port=number("port"),
                       availability=text("status.availabilityState") or "unknown",
                       reason=text("status.statusReason"),
                       connections=number("serverside.curConns"))


def report(states: dict[str, list[MemberState]], p: Plan) -> tuple[list[str], list[str]]:
    """(lines to print, problems): the read-write pool needs exactly one available member."""
    lines, problems = [], []
    for pool in p.pools:
        members = states.get(pool.name, [])
        up = [m for m in members if m.availability == "available"]
        lines.append(f"{p.path(pool.name)} ({pool.purpose}): {len(up)} of {len(members)} "
                     "available")
        lines.extend(f"  {m.node:<12} {m.address}:{m.port:<6} {m.availability:<10} "
                     f"conns {m.connections:<5} {m.reason}" for m in members)
    rw = [m.node for m in states.get(p.pools[0].name, []) if m.availability == "available"]
    ro = [m.node for m in states.get(p.pools[1].name, []) if m.availability == "available"]
    if len(rw) != 1:
        problems.append(f"{p.pools[0].name} has {len(rw)} available member(s) "
                        f"{', '.join(rw)}: it needs exactly one (the primary)".replace(" :", ":"))
    if not ro:
        problems.append(f"{p.pools[1].name} has no available member: read-only clients fail")
    if not problems:
        lines.append(f"ok: read-write on {rw[0]}, read-only on {', '.join(ro)}")
    return lines, problems
