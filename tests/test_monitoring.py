"""Monitoring: the model's `monitoring:` section, the firewall rules it adds, the build step's
files (manifest), and the alert rules proven with the real promtool (Debian `prometheus`):
`promtool check rules`, `promtool test rules` on the generated unit tests (every alert fires on
its fault and a healthy cluster fires nothing), `promtool check config` on the scrape
configuration with real certificates; and a broken rule makes the tests fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from builder.core.context import Context
from builder.model import tlsplan
from builder.model.cluster import Cluster
from builder.stages import (
    dashboard,
    firewall,
    monitoring,
    monitoring_stage,
    monitoring_tests,
    pipeline,
)

FULL: dict[str, Any] = {  # every alert applies: 3 db, 2 LBs with a VIP, watchdog, backups
    "nodes": [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.1{i}"} for i in (1, 2, 3)]
    + [{"name": "lb1", "roles": ["haproxy", "backup"], "address": "10.77.0.10"},
       {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"}],
    "load_balancer": {"virtual_ip": "10.77.0.100"},
    "monitoring": {"sources": ["10.77.0.5/32", "10.88.0.0/24"]},
}
PROMTOOL = shutil.which("promtool")


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if PROMTOOL is None:
        pytest.fail("promtool is required (Debian package prometheus): run scripts/setup")
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def write(cluster: Cluster, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in monitoring_stage.render_all(cluster).items():
        (folder / name).write_text(text)
    return folder


def test_defaults() -> None:
    mon = Cluster().monitoring
    assert mon.enabled and mon.sources == [] and mon.alert_after_s == 60
    assert Cluster().ports.exporter == 9650


def test_firewall_admits_only_the_named_sources() -> None:
    cluster = Cluster.model_validate(FULL)
    db_rules = firewall.node_rules(cluster, cluster.node("db1"))
    lb_rules = firewall.node_rules(cluster, cluster.node("lb1"))
    for rules, service in ((db_rules, "pgha-metrics-db"), (lb_rules, "pgha-metrics-lb")):
        mine = [r for r in rules if f'"{service}"' in r]
        assert sorted(re.findall(r'address="([^"]+)"', " ".join(mine))) == \
            ["10.77.0.5/32", "10.88.0.0/24"]
    assert "pgha-metrics-db" not in firewall.open_services(cluster.node("db1"))
    off = Cluster.model_validate({**FULL, "monitoring": {"enabled": False,
                                                        "sources": ["10.77.0.5/32"]}})
    assert not [r for r in firewall.node_rules(off, off.node("db1")) if "metrics" in r]
    none = Cluster()
    assert not [r for r in firewall.node_rules(none, none.node("db1")) if "metrics" in r]


@pytest.mark.integration
def test_metrics_firewall_rules_load_in_firewalld() -> None:
    from builder.core.run import Runner
    from builder.model import roles
    from builder.stages import render, specs
    cluster = Cluster.model_validate(FULL)
    node = cluster.node("db1")
    context = render.base_context(cluster)
    services = {f.dest.rsplit("/", 1)[1][:-4]: f.content.decode()
                for r in node.roles for f in specs.firewall_files(roles.get(r), context)}
    mine = [r for r in firewall.node_rules(cluster, node) if "pgha-metrics" in r]
    assert len(mine) == 2
    firewall.check_rules(Runner(), services, mine, "db1")


def test_every_alert_has_a_runbook_and_a_fault_test() -> None:
    cluster = Cluster.model_validate(FULL)
    rules = monitoring.rules(cluster)
    names = [r["alert"] for r in rules]
    assert names == [a["alert"] for a in monitoring.alert_data()]  # all apply to FULL
    for rule in rules:
        notes = rule["annotations"]
        assert notes["meaning"] and notes["first_command"] and "First:" in notes["runbook"]
        assert "<<" not in json.dumps(rule)
    groups, missing = monitoring_tests.tests(cluster)
    assert missing == []
    assert {g["name"].split()[0] for g in groups[:-1]} == set(names)
    for required in ("PghaReplicasNotStreaming", "PghaNoSyncStandby", "PghaEtcdMemberDown",
                     "PghaEtcdQuorumAtRisk", "PghaHaproxyNoPrimary", "PghaHaproxyTwoPrimaries",
                     "PghaSplitBrain", "PghaVipNotHeld", "PghaVipOnTwoNodes",
                     "PghaCertificateExpiresSoon", "PghaWatchdogNotActive",
                     "PghaReplicationLag", "PghaPendingRestart", "PghaDiskSpaceLow",
                     "PghaWalArchiveFailing", "PghaBackupTooOld"):
        assert required in names


def test_rules_follow_the_cluster() -> None:
    default = {r["alert"]: r for r in monitoring.rules(Cluster())}
    assert "PghaVipNotHeld" not in default  # one load balancer, no VIP
    assert default["PghaNoPrimary"]["for"] == "90s"  # alert_after_s + ttl
    assert "> 1048576" in default["PghaReplicationLag"]["expr"]
    async_off = Cluster.model_validate({"patroni": {"synchronous_mode": False,
                                                    "watchdog": "off"}})
    names = {r["alert"] for r in monitoring.rules(async_off)}
    assert not names & {"PghaNoSyncStandby", "PghaWatchdogNotActive"}


def test_backup_alerts_follow_the_backup_section() -> None:
    """On with the default cluster (lb1 is the repository), gone without a repository; the age
    threshold is monitoring.backup_max_age_s, shown in the summary."""
    default = {r["alert"]: r for r in monitoring.rules(Cluster())}
    assert default["PghaBackupTooOld"]["expr"].endswith("> 93600")
    assert "older than 26h" in default["PghaBackupTooOld"]["annotations"]["summary"]
    assert "--stanza=pgha check" in default["PghaWalArchiveFailing"]["annotations"]["runbook"]
    assert "ssh lb1 " in default["PghaBackupTooOld"]["annotations"]["first_command"]
    short = Cluster.model_validate({"monitoring": {"backup_max_age_s": 5400}})
    too_old = next(r for r in monitoring.rules(short) if r["alert"] == "PghaBackupTooOld")
    assert too_old["expr"].endswith("> 5400") and "90m" in too_old["annotations"]["summary"]
    no_repo = Cluster.model_validate({"nodes": FULL["nodes"][:3] + [
        {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"}]})
    names = {r["alert"] for r in monitoring.rules(no_repo)}
    assert not names & {"PghaWalArchiveFailing", "PghaBackupTooOld", "PghaNoBackup",
                        "PghaBackupRepositoryUnreadable"}


def test_scrape_config_is_tls_with_the_cluster_ca() -> None:
    cfg = monitoring.scrape_config(Cluster())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"pgha-patroni", "pgha-etcd", "pgha-pgha"}
    for job in jobs.values():
        assert job["scheme"] == "https"
        assert job["tls_config"]["ca_file"] == "/etc/prometheus/pgha/ca.crt"
        assert job["tls_config"]["cert_file"].endswith("/prometheus.crt")
    assert [s["targets"] for s in jobs["pgha-etcd"]["static_configs"]] == \
        [["10.77.0.11:2379"], ["10.77.0.12:2379"], ["10.77.0.13:2379"]]
    assert jobs["pgha-pgha"]["static_configs"][3]["labels"] == {"cluster": "pgha", "node": "lb1"}


def test_dashboard_panels_have_expressions() -> None:
    board = dashboard.dashboard(Cluster())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    assert len(exprs) == len(dashboard.panels(Cluster())) >= 10
    assert all("$" not in e for e in exprs)  # runnable as is against Prometheus


def test_dashboard_panels_follow_the_cluster_and_do_not_overlap() -> None:
    """The VIP panel only with a VIP, the archive and backup panels only with backups (so the
    lab's check that every panel returns data holds for every shape); no two panels share a
    grid cell."""
    full, default = Cluster.model_validate(FULL), Cluster()
    no_repo = Cluster.model_validate({"nodes": FULL["nodes"][:3] + [
        {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"}]})
    titles = {name: [t for t, *_ in dashboard.panels(c)]
              for name, c in (("full", full), ("default", default), ("no_repo", no_repo))}
    assert "VIP holder" in titles["full"] and "VIP holder" not in titles["default"]
    assert "Newest backup age (hours)" in titles["default"]
    assert not [t for t in titles["no_repo"] if "backup" in t.lower() or "archive" in t]
    for cluster in (full, default, no_repo):
        cells = set()
        for panel in dashboard.dashboard(cluster)["panels"]:
            g = panel["gridPos"]
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                    for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, panel["title"]
            cells |= mine


def test_build_step_writes_the_files_into_the_manifest(ctx: Context) -> None:
    assert pipeline.MONITORING in pipeline.BUILD
    tlsplan.load_or_create(ctx.out, ctx.cluster)
    pipeline.run_steps(ctx, [pipeline.MONITORING, pipeline.MANIFEST])
    manifest = json.loads(ctx.out.manifest.read_text())
    paths = {a["path"] for a in manifest["artifacts"]}
    assert {f"monitoring/{n}" for n in monitoring_stage.FILES} <= paths
    assert (ctx.out.pki / "prometheus.crt").is_file()
    text = "".join((ctx.out.root / "monitoring" / n).read_text() for n in monitoring_stage.FILES)
    assert "PRIVATE KEY" not in text
    off = Context.create(Cluster.model_validate({"monitoring": {"enabled": False}}),
                         ctx.out.root.parent, ctx.runner)
    pipeline.run_steps(off, [pipeline.MONITORING])
    assert not (ctx.out.root / "monitoring" / "alerts.yml").exists()


@pytest.mark.integration
@pytest.mark.parametrize("data", [{}, FULL, {**FULL, "patroni": {"synchronous_mode": True}}],
                         ids=["default", "vip-quorum", "vip-sync"])
def test_promtool_checks_and_unit_tests_pass(tmp_path: Path, data: dict[str, Any]) -> None:
    folder = write(Cluster.model_validate(data), tmp_path)
    done = promtool("check", "rules", "alerts.yml", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    done = promtool("test", "rules", "alerts_test.yml", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.mark.integration
def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    folder = write(Cluster(), tmp_path)
    rules = yaml.safe_load((folder / "alerts.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        if rule["alert"] == "PghaSplitBrain":
            rule["expr"] = rule["expr"].replace("> 1", "> 2")
    (folder / "alerts.yml").write_text(yaml.safe_dump(rules))
    tests = yaml.safe_load((folder / "alerts_test.yml").read_text())
    tests["tests"] = [g for g in tests["tests"] if g["name"].startswith("PghaSplitBrain")]
    (folder / "alerts_test.yml").write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", "alerts_test.yml", cwd=folder)
    assert done.returncode != 0
    assert "PghaSplitBrain" in done.stdout + done.stderr


@pytest.mark.integration
def test_promtool_check_config_with_the_cluster_certificates(ctx: Context) -> None:
    tlsplan.load_or_create(ctx.out, ctx.cluster)
    folder = ctx.out.root / "monitoring"
    write(ctx.cluster, folder)
    cfg = monitoring.scrape_config(ctx.cluster, tls_dir=str(ctx.out.pki))
    (folder / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    done = promtool("check", "config", "prometheus.yml", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_rules_for_monitoring() -> None:
    from builder.model.rules import check
    report = check(Cluster.model_validate({"monitoring": {"scrape_interval_s": 30,
                                                          "alert_after_s": 45}}))
    assert "monitoring.alert_after_s" in [p.path for p in report.errors]
    assert "monitoring.sources" in [p.path for p in report.warnings]
    assert not [p for p in check(Cluster.model_validate(FULL)).warnings
                if p.path.startswith("monitoring")]
