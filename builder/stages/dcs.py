"""Patroni's dynamic configuration as the cluster file wants it (pure: model -> dict).

The same template renders bootstrap.dcs inside each db node's patroni.yml (first bootstrap) and
the settings `pgha-build config` compares with a running cluster's GET /config: one source.
"""

from __future__ import annotations

from typing import Any

from builder.core import fastyaml
from builder.core.paths import ROLES_DIR
from builder.model.cluster import Cluster
from builder.stages import render

TEMPLATE = ROLES_DIR / "db" / "templates" / "dcs.yml.j2"


def template_name() -> str:
    """The name patroni.yml.j2 includes (`{% include dcs_template %}`)."""
    return render.template_name(TEMPLATE)


def dynamic_config(cluster: Cluster) -> dict[str, Any]:
    """bootstrap.dcs of the cluster: ttl, loop_wait, retry_timeout, maximum_lag_on_failover,
    synchronous_mode*, failsafe_mode, postgresql.{use_pg_rewind,use_slots,parameters}."""
    data = fastyaml.load(render.render_file(TEMPLATE, {"cluster": cluster}))
    if not isinstance(data, dict):  # pragma: no cover - the template is ours
        raise TypeError(f"{template_name()} did not render a mapping")
    return data
