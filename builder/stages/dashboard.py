"""The cluster's Grafana dashboard (output/<cluster>/monitoring/dashboard.json), pure rendering.

One row of state (primary, streaming replicas, quorum standbys, etcd members up, HAProxy
primaries, firing alerts, the VIP holder when there is a VIP) and time series (lag, WAL rate, timeline, certificate
days left, disk free, the WAL archive's age and failures, the newest backup's age, backups). Every expression reads only the series of the scrape jobs in
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
        *([("VIP holder", "stat", f"max by (node) (pgha_vip_held{{{x}}}) == 1", "{{node}}")]
          if monitoring.conditions(cluster)["vip"] else []),
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
        *(_backup_panels(x) if monitoring.conditions(cluster)["backup"] else []),
    ]


def _backup_panels(x: str) -> list[tuple[str, str, str, str]]:
    """WAL archive and backups (pgha-exporter on the database nodes; backups on)."""
    return [
        ("WAL archive: seconds since the primary last archived", "timeseries",
         (f"time() - pgha_archiver_last_archived_time_seconds{{{x}}}"
         f" and on(node) pgha_postgres_in_recovery{{{x}}} == 0"), "{{node}}"),
        ("WAL archive failures (per 5 min)", "timeseries",
         f"increase(pgha_archiver_failed_count{{{x}}}[5m])", "{{node}}"),
        ("Newest backup age (hours)", "timeseries",
         f"(time() - pgha_backup_last_completion_time_seconds{{{x}}}) / 3600", "{{type}}"),
        ("Backups in the repository", "timeseries", f"max(pgha_backup_count{{{x}}})",
         "backups"),
    ]


def _panel(i: int, k: int, title: str, kind: str, expr: str, legend: str) -> dict[str, Any]:
    """Panel i (its id), the k-th of its kind: stats in rows of six at the top, time series
    two to a row below them."""
    if kind == "stat":
        pos = {"x": (k % 6) * 4, "y": (k // 6) * 4, "w": 4, "h": 4}
    else:
        pos = {"x": (k % 2) * 12, "y": 8 + (k // 2) * 8, "w": 12, "h": 8}
    return {"id": i + 1, "title": title, "type": kind, "datasource": DS, "gridPos": pos,
            "targets": [{"refId": "A", "datasource": DS, "expr": expr,
                         "legendFormat": legend}]}


def _layout(items: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    out = []
    for i, (title, kind, expr, legend) in enumerate(items):
        out.append(_panel(i, seen.get(kind, 0), title, kind, expr, legend))
        seen[kind] = seen.get(kind, 0) + 1
    return out


def dashboard(cluster: Cluster) -> dict[str, Any]:
    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                      "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "title": f"pgha {cluster.name}", "uid": f"pgha-{cluster.name}"[:40],
        "tags": ["pgha", "patroni", "postgresql"], "timezone": "utc", "schemaVersion": 39,
        "refresh": "30s", "time": {"from": "now-6h", "to": "now"}, "editable": True,
        "panels": _layout(panels(cluster)),
    }
