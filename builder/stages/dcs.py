"""Patroni's dynamic configuration as the cluster file wants it (pure: model -> dict).

The same template renders bootstrap.dcs inside each db node's patroni.yml (first bootstrap) and
the settings `pgha-build config` compares with a running cluster's GET /config: one source.
One difference: a cluster bootstraps with loop_wait BOOT_LOOP_WAIT (Patroni's minimum), so the
leader's HA loop makes the replicas' slots and sets the quorum within a second of each step
of the first boot instead of a profile's loop later; once failover-ready, the first-boot
agents PATCH the cluster file's loop_wait (seed health `settle_loop_wait`,
docs/timelines.md).
"""

from __future__ import annotations

from typing import Any

from builder.core import fastyaml
from builder.core.paths import ROLES_DIR
from builder.model.cluster import Cluster
from builder.stages import render

TEMPLATE = ROLES_DIR / "db" / "templates" / "dcs.yml.j2"
BOOT_LOOP_WAIT = 1


def settle_loop_wait(cluster: Cluster) -> int | None:
    """The loop_wait the agents set once the cluster can fail over, if not the boot's."""
    wanted = cluster.patroni.loop_wait
    return None if wanted == BOOT_LOOP_WAIT else wanted


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
