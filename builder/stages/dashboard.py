"""The cluster's Grafana dashboard (output/<cluster>/monitoring/dashboard.json), pure rendering.

One row of state (primary, streaming replicas, quorum standbys, etcd members up, HAProxy
primaries, the VIP holder, firing alerts) and time series (lag, WAL rate, timeline, certificate
days left, disk free). Every expression reads only the series of the scrape jobs in
prometheus.yml, with no dashboard variables, so the lab test runs each one as is against the
lab's Prometheus and requires data. The data source is an input (`DS_PROMETHEUS`), chosen when
the dashboard is imported.
"""

from __future__ import annotations

from typing import Any

from builder.model.cluster import Cluster
from builder.stages import monitoring

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def panels(cluster: Cluster) -> list[tuple[str, str, str, str]]:
    """(title, type, PromQL, legend) of every panel, in order."""
    j = monitoring.jobs(cluster)
    p, e, x = (f'job="{j[k]}"' for k in ("patroni", "etcd", "pgha"))
    return [
        ("Primary", "stat", f"max by (node) (patroni_primary{{{p}}}) == 1", "{{node}}"),
        ("Replicas streaming", "stat", f"sum(patroni_postgres_streaming{{{p}}})", "streaming"),
        ("Sync / quorum standbys", "stat",
         f"sum(patroni_sync_standby{{{p}}}) + sum(patroni_quorum_standby{{{p}}})", "standbys"),
        ("etcd members up", "stat", f"sum(up{{{e}}})", "members"),
        ("HAProxy primaries UP", "stat",
         f'sum by (node) (pgha_haproxy_server_up{{{x}, proxy="primary"}})', "{{node}}"),
        ("Firing alerts", "stat",
         f'count(ALERTS{{alertstate="firing", cluster="{cluster.name}"}}) or vector(0)',
         "firing"),
        ("Replication lag (bytes received behind the primary)", "timeseries",
         (f"scalar(max(patroni_xlog_location{{{p}}})) - patroni_xlog_received_location{{{p}}}"
         f" and on(node) patroni_replica{{{p}}} == 1"), "{{node}}"),
        ("WAL written (bytes/s)", "timeseries",
         f"rate(patroni_xlog_location{{{p}}}[1m]) and on(node) patroni_primary{{{p}}} == 1",
         "{{node}}"),
        ("Timeline", "timeseries", f"patroni_postgres_timeline{{{p}}}", "{{node}}"),
        ("Scrape targets up", "timeseries", f'up{{cluster="{cluster.name}"}}',
         "{{job}} {{node}}"),
        ("etcd leader changes", "timeseries",
         f"increase(etcd_server_leader_changes_seen_total{{{e}}}[5m])", "{{node}}"),
        ("Certificate days left", "timeseries",
         f"(pgha_cert_not_after_seconds{{{x}}} - time()) / 86400", "{{node}} {{cert}}"),
        ("Disk free (%)", "timeseries",
         f"100 * pgha_filesystem_avail_bytes{{{x}}} / pgha_filesystem_size_bytes{{{x}}}",
         "{{node}} {{mountpoint}}"),
    ]


def _panel(i: int, title: str, kind: str, expr: str, legend: str) -> dict[str, Any]:
    row = 0 if kind == "stat" else 4 + ((i - 6) // 2) * 8
    col = (i * 4) % 24 if kind == "stat" else ((i - 6) % 2) * 12
    return {"id": i + 1, "title": title, "type": kind, "datasource": DS,
            "gridPos": {"x": col, "y": row, "w": 4 if kind == "stat" else 12,
                        "h": 4 if kind == "stat" else 8},
            "targets": [{"refId": "A", "datasource": DS, "expr": expr,
                         "legendFormat": legend}]}


def dashboard(cluster: Cluster) -> dict[str, Any]:
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": f"pgha {cluster.name}", "uid": f"pgha-{cluster.name}"[:40],
        "tags": ["pgha", "patroni", "postgresql"], "timezone": "utc", "schemaVersion": 39,
        "refresh": "30s", "time": {"from": "now-6h", "to": "now"}, "editable": True,
        "panels": [_panel(i, *p) for i, p in enumerate(panels(cluster))],
    }
