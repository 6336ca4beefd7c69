"""What the cluster's Prometheus gets: scrape configuration and alert rules (pure rendering).

The `monitoring` step (builder/stages/monitoring_stage.py) writes output/<cluster>/monitoring/.
Files (none holds a secret; the client key stays in pki/):
- `prometheus.yml`: scrape jobs `<cluster>-patroni` (Patroni /metrics, HTTPS), `<cluster>-etcd`
  (etcd /metrics on the client port, client certificate) and `<cluster>-pgha` (pgha-exporter
  on every node: HAProxy backends, the VIP, certificate expiry, watchdog, disk), each target
  labelled `cluster` and `node`, all over TLS verified against the cluster CA, with
  Prometheus' client certificate `pki/prometheus.crt` (copied to monitoring.prometheus_tls_dir);
- `alerts.yml`: the rules of resources/monitoring/alerts.yaml that apply to this cluster, each
  with `summary`, `meaning` and `first_command` (`runbook` = both) annotations;
- `alerts_test.yml`: their promtool unit tests (builder/stages/monitoring_tests.py);
- `dashboard.json`: a Grafana dashboard (builder/stages/dashboard.py).

Rules are data: the alert file is loaded, `<<token>>`s are replaced by typed model values (job
names, counts, byte and second thresholds; nothing from the user's free text) and the result is
dumped with yaml.safe_dump, so PromQL and annotations are quoted for YAML.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from builder.core import fastyaml
from builder.core.errors import PghaError
from builder.core.paths import RESOURCES
from builder.model import backup, roles
from builder.model.cluster import Cluster, Node
from builder.stages import render

ALERTS = RESOURCES / "monitoring" / "alerts.yaml"
TOKEN = re.compile(r"<<(\w+)>>")


def jobs(cluster: Cluster) -> dict[str, str]:
    """Scrape job names: patroni, etcd, pgha (the exporter)."""
    return {k: f"{cluster.name}-{k}" for k in ("patroni", "etcd", "pgha")}


def durations(cluster: Cluster) -> dict[str, str]:
    """The named `for:` durations of alerts.yaml."""
    after = cluster.monitoring.alert_after_s
    return {"after": f"{after}s", "quick": f"{2 * cluster.monitoring.scrape_interval_s}s",
            "no_primary": f"{after + cluster.patroni.ttl}s"}


def fires_within(cluster: Cluster, rule: dict[str, Any]) -> int:
    """Seconds after its fault starts by which an alert fires (the bound docs/monitoring.md
    states and the lab test asserts): its `for:`, plus a scrape timeout, the scrape that sees
    the fault, the evaluation that starts `for:` and the one that ends it, plus 2 s."""
    units = {"s": 1, "m": 60, "h": 3600}
    wait = int(rule["for"][:-1]) * units[rule["for"][-1]]
    return wait + 4 * cluster.monitoring.scrape_interval_s + 2


def tokens(cluster: Cluster) -> dict[str, str]:
    """<<token>> -> text, every value typed (names match NodeName, numbers are ints)."""
    db = roles.nodes_with(cluster.nodes, "postgres")
    etcd = roles.nodes_with(cluster.nodes, "etcd_member")
    lbs = roles.nodes_with(cluster.nodes, "load_balancer")
    repos = roles.nodes_with(cluster.nodes, "backup_repo")
    mon = cluster.monitoring
    lag = mon.lag_bytes or cluster.patroni.maximum_lag_on_failover
    j = jobs(cluster)
    return {
        "cluster": cluster.name,
        "P": f'job="{j["patroni"]}"', "E": f'job="{j["etcd"]}"', "X": f'job="{j["pgha"]}"',
        "replicas": str(max(len(db) - 1, 0)), "etcd_n": str(len(etcd)),
        "quorum": str(len(etcd) // 2 + 1), "lag": str(lag),
        "cert_s": str(mon.cert_days * 86400), "cert_days": str(mon.cert_days), "disk_pct": str(mon.disk_free_percent),
        "vip": str(cluster.load_balancer.virtual_ip or ""),
        "lb_first": lbs[0].name if lbs else "",
        "repo": repos[0].name if repos else "", "stanza": backup.stanza(cluster),
        "backup_age_s": str(mon.backup_max_age_s), "backup_age": human(mon.backup_max_age_s),
    }


def human(seconds: int) -> str:
    """26h, 90m, 45s: the largest unit that divides exactly."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def conditions(cluster: Cluster) -> dict[str, bool]:
    """`when:` names of alerts.yaml -> whether the cluster has what the alert watches."""
    lbs = roles.nodes_with(cluster.nodes, "load_balancer") if cluster.load_balancer.kind == \
        "haproxy" else []
    return {
        "replicas": len(roles.nodes_with(cluster.nodes, "postgres")) > 1,
        "sync": cluster.patroni.synchronous_mode is not False,
        "etcd_multi": len(roles.nodes_with(cluster.nodes, "etcd_member")) > 1,
        "lb": bool(lbs),
        "vip": cluster.load_balancer.virtual_ip is not None and len(lbs) >= 2,
        "watchdog": cluster.patroni.watchdog != "off",
        "backup": backup.enabled(cluster),
    }


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise PghaError(f"monitoring data: unknown token <<{match.group(1)}>>")
        return values[match.group(1)]
    return TOKEN.sub(one, text)


@cache
def alert_data() -> list[dict[str, Any]]:
    data = fastyaml.load(ALERTS.read_text())
    assert isinstance(data, list)
    return data


def rules(cluster: Cluster) -> list[dict[str, Any]]:
    """The Prometheus alerting rules that apply to this cluster."""
    values, when, fors = tokens(cluster), conditions(cluster), durations(cluster)
    out = []
    for a in alert_data():
        if a.get("when") and not when[a["when"]]:
            continue
        meaning = substitute(a["meaning"], values)
        first = substitute(a["first_command"], values)
        out.append({
            "alert": a["alert"],
            "expr": substitute(a["expr"], values),
            "for": fors.get(a["for"], a["for"]),
            "labels": {"severity": a["severity"], "cluster": cluster.name},
            "annotations": {"summary": substitute(a["summary"], values), "meaning": meaning,
                            "first_command": first,
                            "runbook": f"{meaning} First: {first}"},
        })
    return out


def render_rules(cluster: Cluster) -> str:
    doc = {"groups": [{"name": f"pgha-{cluster.name}",
                       "interval": f"{cluster.monitoring.scrape_interval_s}s",
                       "rules": rules(cluster)}]}
    return f"# {render.header()}\n" + fastyaml.dump(doc, sort_keys=False, width=100)


def _tls(tls_dir: str) -> dict[str, str]:
    return {"ca_file": f"{tls_dir}/ca.crt", "cert_file": f"{tls_dir}/prometheus.crt",
            "key_file": f"{tls_dir}/prometheus.key"}


EXPORTER = "pgha-exporter"


def exporter_nodes(cluster: Cluster) -> list[Node]:
    """The nodes one of whose roles runs pgha-exporter (role data: its `services`)."""
    return [n for n in cluster.nodes
            if any(EXPORTER in roles.get(r).services for r in n.roles)]


def scrape_targets(cluster: Cluster) -> dict[str, list[tuple[str, str]]]:
    """job -> [(node, host:port)]."""
    db = roles.nodes_with(cluster.nodes, "postgres")
    etcd = roles.nodes_with(cluster.nodes, "etcd_member")
    j, p = jobs(cluster), cluster.ports
    return {
        j["patroni"]: [(n.name, f"{n.address}:{p.patroni_rest}") for n in db],
        j["etcd"]: [(n.name, f"{n.address}:{p.etcd_client}") for n in etcd],
        j["pgha"]: [(n.name, f"{n.address}:{p.exporter}") for n in exporter_nodes(cluster)],
    }


def scrape_config(cluster: Cluster, tls_dir: str | None = None,
                  rule_files: list[str] | None = None) -> dict[str, Any]:
    """Prometheus' configuration as data (the lab renders it with its own folders)."""
    tls = cluster.tls.enabled
    interval = f"{cluster.monitoring.scrape_interval_s}s"
    jobs_out = []
    for job, targets in scrape_targets(cluster).items():
        job_cfg: dict[str, Any] = {
            "job_name": job, "scheme": "https" if tls else "http",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [t], "labels": {"cluster": cluster.name, "node": n}}
                               for n, t in targets]}
        if tls:
            job_cfg["tls_config"] = _tls(tls_dir or cluster.monitoring.prometheus_tls_dir)
        jobs_out.append(job_cfg)
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "scrape_timeout": f"{min(cluster.monitoring.scrape_interval_s, 10)}s"},
            "rule_files": rule_files or ["alerts.yml"],
            "scrape_configs": jobs_out}


def render_scrape(cluster: Cluster) -> str:
    return (f"# {render.header()}\n# Prometheus scrape configuration of cluster "
            f"{cluster.name}: copy pki/ca.crt, pki/prometheus.crt and pki/prometheus.key to "
            f"{cluster.monitoring.prometheus_tls_dir}/ on the Prometheus server.\n"
            + fastyaml.dump(scrape_config(cluster), sort_keys=False, width=100))
