"""promtool unit tests of the cluster's alert rules (output/<cluster>/monitoring/alerts_test.yml).

Boundary: pure rendering. The healthy cluster's series are made from the model (db1 the
primary, the other database nodes streaming quorum standbys, every exporter up, HAProxy routing
writes to db1, the VIP on the first load balancer); resources/monitoring/alerts_test.yaml says
which series each alert's fault changes. For every alert rendered for this cluster, one test
group: healthy series plus the fault, not firing one evaluation before its `for:` elapses,
firing (with the expected labels) after it; and one group where the healthy cluster fires no
alert at all. `promtool test rules alerts_test.yml` runs them next to alerts.yml.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from builder.core import fastyaml
from builder.core.errors import PghaError
from builder.core.paths import RESOURCES
from builder.model import roles
from builder.model.cluster import Cluster
from builder.stages import monitoring
from builder.stages.render import header

FAULTS = RESOURCES / "monitoring" / "alerts_test.yaml"
UNITS = {"s": 1, "m": 60, "h": 3600}
WAL_BASE = 10**12


def seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)([smh])", duration)
    if not match:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(match.group(1)) * UNITS[match.group(2)]


@cache
def fault_data() -> dict[str, Any]:
    data = fastyaml.load(FAULTS.read_text())
    assert isinstance(data, dict)
    return data


def _db_series(cluster: Cluster, j: dict[str, str], n: str) -> dict[str, str]:
    sync = cluster.patroni.synchronous_mode
    out: dict[str, str] = {}
    for i, node in enumerate(roles.nodes_with(cluster.nodes, "postgres")):
        primary = i == 0
        lab = f'{{job="{j["patroni"]}", node="{node.name}"}}'
        values = {"up": 1, "patroni_postgres_running": 1, "patroni_primary": int(primary),
                  "patroni_replica": int(not primary),
                  "patroni_postgres_streaming": int(not primary),
                  "patroni_sync_standby": int(i == 1 and sync is True),
                  "patroni_quorum_standby": int(not primary and sync == "quorum"),
                  "patroni_pending_restart": 0, "patroni_is_paused": 0,
                  "patroni_xlog_location": WAL_BASE if primary else 0,
                  "patroni_xlog_received_location": 0 if primary else WAL_BASE}
        out.update({f"{k}{lab}": f"{v}x{n}" for k, v in values.items()})
        out[f'pgha_watchdog_active{{job="{j["pgha"]}", node="{node.name}"}}'] = f"1x{n}"
    for node in roles.nodes_with(cluster.nodes, "etcd_member"):
        lab = f'{{job="{j["etcd"]}", node="{node.name}"}}'
        out[f"up{lab}"] = f"1x{n}"
        out[f"etcd_server_has_leader{lab}"] = f"1x{n}"
    return out


def _exporter_series(cluster: Cluster, j: dict[str, str], n: str) -> dict[str, str]:
    out: dict[str, str] = {}
    db = roles.nodes_with(cluster.nodes, "postgres")
    vip = cluster.load_balancer.virtual_ip
    cert_ok = (cluster.monitoring.cert_days + 30) * 86400
    interval = cluster.monitoring.scrape_interval_s
    for node in monitoring.exporter_nodes(cluster):
        lab = f'job="{j["pgha"]}", node="{node.name}"'
        out[f"up{{{lab}}}"] = f"1x{n}"
        out[f'pgha_cert_not_after_seconds{{{lab}, cert="postgres"}}'] = f"{cert_ok}x{n}"
        fs = f'{lab}, mountpoint="/var/lib/pgsql"'
        out[f"pgha_filesystem_avail_bytes{{{fs}}}"] = f"50000000000x{n}"
        out[f"pgha_filesystem_size_bytes{{{fs}}}"] = f"100000000000x{n}"
    for i, node in enumerate(db):
        lab = f'job="{j["pgha"]}", node="{node.name}"'
        # every archive attempt succeeds (the newest success moves with time)
        out[f"pgha_archiver_last_archived_time_seconds{{{lab}}}"] = f"0+{interval}x{n}"
        out[f"pgha_archiver_last_failed_time_seconds{{{lab}}}"] = f"0x{n}"
        out[f"pgha_postgres_in_recovery{{{lab}}}"] = f"{int(i != 0)}x{n}"
        if i == 0 and monitoring.conditions(cluster)["backup"]:  # the primary reads backups
            out[f"pgha_backup_info_ok{{{lab}}}"] = f"1x{n}"
            out[f"pgha_backup_count{{{lab}}}"] = f"3x{n}"
            out[f'pgha_backup_last_completion_time_seconds{{{lab}, type="full"}}'] = \
                f"0+{interval}x{n}"
    for k, node in enumerate(roles.nodes_with(cluster.nodes, "load_balancer")):
        lab = f'job="{j["pgha"]}", node="{node.name}"'
        out[f"pgha_haproxy_up{{{lab}}}"] = f"1x{n}"
        for i, d in enumerate(db):
            for proxy, up in (("primary", i == 0), ("replicas", i != 0)):
                key = f'pgha_haproxy_server_up{{{lab}, proxy="{proxy}", server="{d.name}"}}'
                out[key] = f"{int(up)}x{n}"
        if vip is not None:
            out[f'pgha_vip_held{{{lab}, vip="{vip}"}}'] = f"{int(k == 0)}x{n}"
    return out


def _values(cluster: Cluster, n: int) -> dict[str, str]:
    db = [x.name for x in roles.nodes_with(cluster.nodes, "postgres")]
    lbs = [x.name for x in roles.nodes_with(cluster.nodes, "load_balancer")]
    lag = int(monitoring.tokens(cluster)["lag"])
    names = {f"db{i + 1}": name for i, name in enumerate(db)}
    names.update({f"lb{i + 1}": name for i, name in enumerate(lbs)})
    return {**monitoring.tokens(cluster), **names, "n": str(n),
            "behind": str(WAL_BASE - 2 * lag),
            "stale": str(2 * cluster.monitoring.backup_max_age_s)}


def _subst(data: Any, values: dict[str, str]) -> Any:
    if isinstance(data, dict):
        return {_subst(k, values): _subst(v, values) for k, v in data.items()}
    return monitoring.substitute(str(data), values)


def expand(text: str, labels: dict[str, str], value: str) -> str:
    """Prometheus' expansion of our annotations: only `{{ $labels.X }}` and `{{ $value }}`."""
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels.get(m.group(1), ""), text)
    if "$value" in text.replace("{{ $value }}", ""):
        raise ValueError(f"unsupported template in {text!r}")
    return text.replace("{{ $value }}", value)


def _healthy(cluster: Cluster, samples: int) -> dict[str, str]:
    j = monitoring.jobs(cluster)
    return {**_db_series(cluster, j, str(samples)), **_exporter_series(cluster, j, str(samples))}


def _case(cluster: Cluster, rule: dict[str, Any], fault: dict[str, Any]) -> dict[str, Any] | None:
    interval = cluster.monitoring.scrape_interval_s
    wait = seconds(rule["for"])
    samples = wait // interval + 4
    try:
        fault = _subst(fault, _values(cluster, samples))
    except PghaError:  # a token this cluster lacks (e.g. no lb2): no test
        return None
    series = {**_healthy(cluster, samples), **fault["set"]}
    labels = {**fault["labels"], **rule["labels"]}
    notes = {k: expand(v, labels, fault.get("value", "")) for k, v in rule["annotations"].items()}
    tests = [{"eval_time": f"{wait + 2 * interval}s", "alertname": rule["alert"],
              "exp_alerts": [{"exp_labels": labels, "exp_annotations": notes}]}]
    if wait > interval:
        tests.insert(0, {"eval_time": f"{wait - interval}s", "alertname": rule["alert"],
                         "exp_alerts": []})
    return {"interval": f"{interval}s", "name": f"{rule['alert']} fires on its fault",
            "input_series": [{"series": s, "values": v} for s, v in series.items()],
            "alert_rule_test": tests}


def tests(cluster: Cluster) -> tuple[list[dict[str, Any]], list[str]]:
    """(promtool test groups, alerts without a test for this cluster)."""
    rules = monitoring.rules(cluster)
    interval = cluster.monitoring.scrape_interval_s
    groups, missing = [], []
    for rule in rules:
        fault = fault_data().get(rule["alert"]) or []
        cases = [_case(cluster, rule, f) for f in (fault if isinstance(fault, list) else [fault])]
        if not cases or None in cases:
            missing.append(rule["alert"])
        groups += [c for c in cases if c is not None]
    longest = max(seconds(r["for"]) for r in rules) + 2 * interval
    healthy = _healthy(cluster, longest // interval + 2)
    quiet = [{"eval_time": f"{longest}s", "alertname": r["alert"], "exp_alerts": []}
             for r in rules]
    groups.append({"interval": f"{interval}s", "name": "a healthy cluster fires nothing",
                   "input_series": [{"series": s, "values": v} for s, v in healthy.items()],
                   "alert_rule_test": quiet})
    return groups, missing


def render(cluster: Cluster) -> str:
    groups, missing = tests(cluster)
    doc = {"rule_files": ["alerts.yml"],
           "evaluation_interval": f"{cluster.monitoring.scrape_interval_s}s",
           "tests": groups}
    note = f"# no test for this cluster's shape: {', '.join(missing)}\n" if missing else ""
    return f"# {header()}\n{note}" + fastyaml.dump(doc, sort_keys=False, width=120)
