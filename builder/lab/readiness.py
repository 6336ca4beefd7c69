"""Failover readiness of the running lab: can the cluster fail over right now, and if not, why;
and Patroni's view of the cluster it is judged on (/cluster from every db node, freshest wins).

One definition serves a real node's first boot and the lab: the first-boot agent's
pgha_agent/readiness.py (stdlib only), loaded here from the package resources as it is. The lab
asks every database node's REST API and judges the freshest view (see status.cluster_view).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from builder.core import agentmod
from builder.core.errors import PghaError
from builder.lab.health import http, wait_until

if TYPE_CHECKING:
    from builder.lab.lab import Lab



def agent_readiness() -> ModuleType:
    """The agent's readiness module (it imports nothing from pgha_agent, so it loads alone)."""
    return agentmod.standalone("readiness")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str

    def line(self) -> str:
        return f"failover-ready: {'yes' if self.ready else 'no'} ({self.reason})"


def evaluate(view: dict[str, Any] | None, config: dict[str, Any] | None,
             members: list[str]) -> Readiness:
    """Readiness from a /cluster view and the dynamic configuration (None: no node answers)."""
    if view is None or config is None:
        return Readiness(False, "no Patroni REST API answers")
    ready, reason = agent_readiness().evaluate(view, config, members)
    return Readiness(bool(ready), str(reason))


def dynamic_config(urls: list[str], timeout: float = 1.5,
                   context: ssl.SSLContext | None = None) -> dict[str, Any] | None:
    """Patroni's dynamic configuration (GET /config) from the first node that answers."""
    for url in urls:
        code, body = http("GET", url, timeout=timeout, context=context)
        if code == 200 and isinstance(body, dict):
            return body
    return None


def cluster_views(lab: Lab, timeout: float = 1.5) -> list[dict[str, Any]]:
    """Patroni's /cluster from every db node that answers."""
    views = []
    for node in lab.db_nodes:
        code, body = http("GET", lab.rest_url(node, "/cluster"), timeout=timeout,
                          context=lab.rest_context())
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
    config = dynamic_config([lab.rest_url(n, "/config") for n in lab.db_nodes],
                            context=lab.rest_context())
    return evaluate(view, config, [n.name for n in lab.db_nodes])


def watchdog_line(mode: str) -> str:
    why = " (the lab's nodes share this machine's kernel: a reset would reboot it)"
    return f"watchdog: {mode}{why if mode == 'off' else ''}"


def wait_failover_ready(lab: Lab, timeout: float) -> float:
    """Wait until the cluster can fail over; on timeout the error names why it cannot."""
    last = [Readiness(False, "not checked yet")]

    def ready() -> bool:
        last[0] = failover_readiness(lab)
        return last[0].ready

    try:
        return wait_until("the cluster to be able to fail over", ready, timeout, 0.25)
    except PghaError as err:
        raise PghaError(f"{err.message}: {last[0].reason}", hint=err.hint) from None
