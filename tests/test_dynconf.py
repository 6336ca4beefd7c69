"""Dynamic configuration (issue 20): the cluster file's bootstrap.dcs is one rendering shared by
patroni.yml and `pgha-build config`; its difference with a running cluster's GET /config, and
the PATCH body that applies it. The real cluster side runs in tests/test_lab_changes.py."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.model import tlsplan
from builder.model.cluster import Cluster
from builder.ops import dynconf
from builder.stages import dcs, seeds


def test_patroni_yml_carries_the_same_dynamic_configuration(ctx) -> None:
    seed = seeds.render_seed(ctx, ctx.cluster.node("db1"),
                             tlsplan.load_secrets(ctx.out, ctx.cluster))
    patroni = next(f for f in seed["files"] if f["path"] == "/etc/patroni/patroni.yml")
    boot = yaml.safe_load(patroni["content"])["bootstrap"]["dcs"]
    want = dcs.dynamic_config(ctx.cluster)
    # The one difference: the first boot runs Patroni's shortest HA loop; the agents PATCH the
    # cluster file's loop_wait once the cluster can fail over (the seed's failover check).
    assert boot == {**want, "loop_wait": dcs.BOOT_LOOP_WAIT} and want["loop_wait"] == 5
    check = next(c for c in seed["health"] if c["kind"] == "failover")
    assert check["settle_loop_wait"] == 5 and check["username"] == "patroni"


def test_dynamic_config_follows_the_cluster_file() -> None:
    cluster = Cluster.model_validate({"profile": "fast", "patroni": {
        "synchronous_mode": True, "parameters": {"max_connections": "200", "work_mem": "8MB"}}})
    want = dcs.dynamic_config(cluster)
    assert (want["ttl"], want["loop_wait"], want["retry_timeout"]) == (20, 1, 3)
    assert want["synchronous_mode"] is True
    params = want["postgresql"]["parameters"]
    assert params["max_connections"] == "200" and params["work_mem"] == "8MB"
    assert params["wal_level"] == "replica"  # the defaults stay


def _running() -> dict:
    """A running cluster's GET /config as Patroni 4 answers it after bootstrap."""
    return dcs.dynamic_config(Cluster())


def test_no_difference_when_the_running_cluster_matches() -> None:
    d = dynconf.compare(_running(), dcs.dynamic_config(Cluster()))
    assert d.changes == [] and d.patch() == {}
    assert dynconf.report(d) == [
        "the running cluster's dynamic configuration matches the cluster file"]


def test_parameters_compare_as_postgresql_reads_them() -> None:
    running = _running()
    running["postgresql"]["parameters"].update(max_connections="100", hot_standby=True)
    assert dynconf.compare(running, dcs.dynamic_config(Cluster())).changes == []


def test_changed_added_and_removed_settings_make_one_patch() -> None:
    running = _running()
    running["postgresql"]["parameters"]["log_min_duration_statement"] = "1s"  # set by hand
    running["master_start_timeout"] = 300  # not managed by the cluster file: kept
    cluster = Cluster.model_validate({"patroni": {
        "ttl": 40, "parameters": {"max_connections": 300, "work_mem": "16MB"}}})
    d = dynconf.compare(running, dcs.dynamic_config(cluster))
    assert d.patch() == {"ttl": 40, "postgresql": {"parameters": {
        "max_connections": 300, "work_mem": "16MB", "log_min_duration_statement": None}}}
    assert d.restart_keys() == ["max_connections"]
    assert d.unmanaged == ["master_start_timeout"]
    lines = dynconf.report(d)
    assert "~ ttl: 30 -> 40" in lines
    assert "~ postgresql.parameters.max_connections: 100 -> 300   [needs a restart]" in lines
    assert '+ postgresql.parameters.work_mem: "16MB"' in lines
    assert any(ln.startswith("- postgresql.parameters.log_min_duration_statement") for ln in lines)
    assert lines[-1] == "kept (not set by the cluster file): master_start_timeout"


def test_mode_change_is_a_typed_patch() -> None:
    cluster = Cluster.model_validate({"patroni": {"synchronous_mode": False}})
    d = dynconf.compare(_running(), dcs.dynamic_config(cluster))
    assert d.patch() == {"synchronous_mode": False}  # quorum -> false, a JSON boolean


def test_config_refuses_what_check_refuses(tmp_path: Path) -> None:
    bad = tmp_path / "cluster.yaml"
    bad.write_text("patroni:\n  ttl: 20\n  loop_wait: 10\n  retry_timeout: 10\n")
    res = CliRunner().invoke(cli, ["-c", str(bad), "-o", str(tmp_path / "out"), "config"])
    assert res.exit_code == 2, res.output
    assert "patroni.ttl" in res.output and "Traceback" not in res.output


def test_config_needs_the_clusters_own_secrets(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["-o", str(tmp_path / "out"), "config"])
    assert res.exit_code == 1, res.output
    assert "secrets.yaml" in res.output and "hint:" in res.output
    assert not (tmp_path / "out" / "pgha" / "secrets.yaml").exists()  # never made up
