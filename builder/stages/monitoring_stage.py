"""The `monitoring` pipeline step: output/<cluster>/monitoring/ (see builder/stages/monitoring.py).

Part of `build` when monitoring.enabled; cached on the rendered text like the other stages;
every file is recorded in the manifest. Turning monitoring off removes the files.
"""

from __future__ import annotations

import json

from builder import __version__
from builder.core.context import Context
from builder.core.fsutil import atomic_write
from builder.core.state import Artifact, cached_stage, forget, input_key
from builder.model.cluster import Cluster
from builder.stages import dashboard, monitoring, monitoring_tests

FILES = ("prometheus.yml", "alerts.yml", "alerts_test.yml", "dashboard.json")


def render_all(cluster: Cluster) -> dict[str, str]:
    return {"prometheus.yml": monitoring.render_scrape(cluster), "alerts.yml": monitoring.render_rules(cluster),
            "alerts_test.yml": monitoring_tests.render(cluster),
            "dashboard.json": json.dumps(dashboard.dashboard(cluster), indent=2) + "\n"}


def write_monitoring(ctx: Context) -> list[Artifact]:
    """The pipeline step (monitoring.enabled): the files above, cached on their text."""
    folder = ctx.out.root / "monitoring"
    if not ctx.cluster.monitoring.enabled:
        forget(ctx.out, "monitoring")
        for name in FILES:
            (folder / name).unlink(missing_ok=True)
        return []
    rendered = render_all(ctx.cluster)
    key = input_key("monitoring", __version__, sorted(rendered.items()))
    arts = [Artifact("monitoring", f"monitoring/{name}") for name in FILES]

    def write() -> None:
        for name in FILES:
            atomic_write(folder / name, rendered[name])
        ctx.messages.append(f"monitoring: wrote {', '.join(FILES)} to {folder}")

    return cached_stage(ctx, "monitoring", key, arts, write, fresh="monitoring: up to date")
