"""The cluster file's `monitoring:` section: who may scrape the nodes, and the alert thresholds.

Boundary: typed fields and their defaults only (pure). The Prometheus scrape configuration,
alert rules and dashboard rendered from them are built by `builder.stages.monitoring`; the
firewall rules that admit `sources` by `builder.stages.firewall` (source kind `monitoring`).

Metrics are served over TLS from the cluster CA: Patroni's REST API (`/metrics`, HTTPS on
8008) and etcd's client port (`/metrics`, client certificate required) on the database nodes.
Prometheus presents its own client certificate (`pki/prometheus.crt`), issued by the CA.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from builder.model.types import Int, IPv4Net


class Monitoring(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(
        default=True, description="render output/<cluster>/monitoring/ (scrape configuration, "
        "alert rules, dashboard) and Prometheus' client certificate")
    sources: list[IPv4Net] = Field(
        default_factory=list,
        description="networks of the Prometheus servers that scrape the nodes; the firewall "
                    "admits no one else to the metrics endpoints. Empty: no Prometheus can "
                    "reach them (the artifacts are still written)")
    scrape_interval_s: Int = Field(default=15, ge=1, le=300,
                                   description="Prometheus scrape and rule evaluation interval")
    alert_after_s: Int = Field(
        default=60, ge=1, le=3600,
        description="how long a fault must last before its alert fires (`for:` of the "
                    "page-worthy alerts); at least two scrapes")
    prometheus_tls_dir: str = Field(
        default="/etc/prometheus/pgha", pattern=r"^/[A-Za-z0-9._/-]{0,200}$", max_length=201,
        description="folder on the Prometheus server holding ca.crt, prometheus.crt and "
                    "prometheus.key (copied from output/<cluster>/pki/)")
    lag_bytes: Int | None = Field(
        default=None, ge=1, le=2**50,
        description="replication lag that pages, bytes; default patroni.maximum_lag_on_failover "
                    "(a replica further behind cannot be promoted)")
    cert_days: Int = Field(default=30, ge=1, le=365,
                           description="page when a node certificate expires within this many days")
    disk_free_percent: Int = Field(default=10, ge=1, le=90,
                                   description="page when a node's file system has less free")
    backup_max_age_s: Int = Field(
        default=93600, ge=10, le=45 * 86400,
        description="page when the newest backup (full, diff or incr) is older, seconds; "
                    "default 26 h: the daily differential backup plus 2 h for it to run")
