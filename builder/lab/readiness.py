"""Failover readiness of the running lab: can the cluster fail over right now, and if not, why.

One definition serves a real node's first boot and the lab: the first-boot agent's
pgha_agent/readiness.py (stdlib only), loaded here from the package resources as it is. The lab
asks every database node's REST API and judges the freshest view (see status.cluster_view).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Any

from builder.core.paths import AGENT_DIR
from builder.lab.health import http

READINESS_PY = AGENT_DIR / "pgha_agent" / "readiness.py"


@cache
def agent_readiness() -> ModuleType:
    """The agent's readiness module (it imports nothing from pgha_agent, so it loads alone)."""
    spec = importlib.util.spec_from_file_location("pgha_agent_readiness", READINESS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def dynamic_config(urls: list[str], timeout: float = 1.5) -> dict[str, Any] | None:
    """Patroni's dynamic configuration (GET /config) from the first node that answers."""
    for url in urls:
        code, body = http("GET", url, timeout=timeout)
        if code == 200 and isinstance(body, dict):
            return body
    return None
