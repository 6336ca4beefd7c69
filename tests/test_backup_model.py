"""The `backup:` section: defaults, the rules across it, and what each node's seed carries."""

from __future__ import annotations

import configparser
import shutil
import subprocess

import pytest
import yaml

from builder.core.context import Context
from builder.core.errors import ConfigError
from builder.model import backup, tlsplan
from builder.model import loading as config
from builder.model.rules import check
from builder.stages import seeds

NODES = [{"name": "db1", "roles": ["db"], "address": "10.77.0.11"},
         {"name": "db2", "roles": ["db"], "address": "10.77.0.12"},
         {"name": "db3", "roles": ["db"], "address": "10.77.0.13"}]


def _ctx(tmp_path, **data):
    return Context.create(config.from_data(data), tmp_path)


def _seed(ctx, node):
    return seeds.render_seed(ctx, ctx.cluster.node(node), tlsplan.load_secrets(ctx.out, ctx.cluster))


def _file(seed, suffix):
    return next((f["content"] for f in seed["files"] if f["path"].endswith(suffix)), None)


def _ini(text):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_reference_cluster_has_backups_on_the_load_balancer(tmp_path):
    ctx = _ctx(tmp_path)
    assert backup.enabled(ctx.cluster) and backup.stanza(ctx.cluster) == "pgha"
    assert ctx.cluster.node("lb1").roles == ["haproxy", "backup"]
    assert not [w for w in check(ctx.cluster).warnings if w.path in ("backup", "nodes")]


def test_the_example_file_has_backups(tmp_path):
    from builder.core.paths import RESOURCES

    data = yaml.safe_load((RESOURCES / "examples" / "cluster.yaml").read_text())
    assert backup.enabled(config.from_data(data))


def test_rules(tmp_path):
    lb = {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"}
    none = config.from_data({"nodes": [*NODES, lb]})
    assert not backup.enabled(none)
    assert any(w.path == "backup" and "no backups" in w.message for w in check(none).warnings)
    on_db = config.from_data({"nodes": [{**NODES[0], "roles": ["db", "backup"]}, *NODES[1:], lb]})
    assert backup.enabled(on_db)
    assert any("only backup repository is on a database node" in w.message
               for w in check(on_db).warnings)
    two = _problems({"nodes": [*NODES, {**lb, "roles": ["haproxy", "backup"]},
                               {"name": "bk1", "roles": ["backup"], "address": "10.77.0.9"}]})
    assert any("one repository host" in p for p in two)
    no_tls = _problems({"tls": False, "backup": {"enabled": True}})
    assert any(p.startswith("backup.enabled") and "TLS" in p for p in no_tls)
    assert not backup.enabled(config.from_data({"tls": False}))  # unset: off without TLS
    forced = _problems({"nodes": [*NODES, lb], "backup": {"enabled": True}})
    assert any("backup role" in p for p in forced)


def _problems(data):
    with pytest.raises(ConfigError) as exc:
        config.from_data(data)
    return exc.value.problems


@pytest.mark.parametrize("bad", ["daily\nOnCalendar=x", "%H", "", "a" * 65, "'daily'"])
def test_schedule_is_a_strict_calendar(bad):
    with pytest.raises(ConfigError):
        config.from_data({"backup": {"schedule": {"full": bad}}})


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_default_schedules_are_valid_systemd_calendars():
    for expr in backup.Schedule().model_dump().values():
        res = subprocess.run(["systemd-analyze", "calendar", expr], capture_output=True,
                             text=True, check=False)
        assert res.returncode == 0, res.stderr


def test_patroni_archives_and_restores_with_pgbackrest(tmp_path):
    ctx = _ctx(tmp_path, backup={"archive_timeout": 30})
    p = yaml.safe_load(_file(_seed(ctx, "db2"), "patroni.yml"))["postgresql"]
    br = "/usr/bin/pgbackrest --config=/etc/pgbackrest/pgbackrest.conf --stanza=pgha"
    assert p["parameters"]["archive_mode"] == "on"
    assert p["parameters"]["archive_command"] == f"{br} archive-push %p"
    assert p["parameters"]["archive_timeout"] == 30
    assert p["recovery_conf"]["restore_command"] == f'{br} archive-get %f "%p"'
    assert p["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert p["pgbackrest"] == {"command": f"{br} --delta restore", "keep_data": True,
                               "no_params": True}
    off = _ctx(tmp_path / "off", nodes=NODES)
    q = yaml.safe_load(_file(_seed(off, "db2"), "patroni.yml"))["postgresql"]
    assert "archive_mode" not in q["parameters"] and "create_replica_methods" not in q
    assert _file(_seed(off, "db2"), "pgbackrest.conf") is None


def test_repository_and_db_configs(tmp_path):
    ctx = _ctx(tmp_path)
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster)
    repo = _ini(_file(_seed(ctx, "lb1"), "pgbackrest.conf"))
    g, s = repo["global"], repo["pgha"]
    assert g["repo1-cipher-pass"] == sec.backup_cipher and g["repo1-cipher-type"] == "aes-256-cbc"
    assert (g["repo1-retention-full"], g["repo1-retention-diff"]) == ("2", "7")
    assert g["tls-server-address"] == "10.77.0.10" and g["tls-server-port"] == "8432"
    assert [s[f"pg{i}-host"] for i in (1, 2, 3)] == ["10.77.0.11", "10.77.0.12", "10.77.0.13"]
    assert all(s[f"pg{i}-host-type"] == "tls" for i in (1, 2, 3))
    db = _ini(_file(_seed(ctx, "db1"), "pgbackrest.conf"))
    assert db["global"]["repo1-host"] == "10.77.0.10" and db["global"]["archive-async"] == "y"
    assert db["pgha"]["pg1-path"] == "/var/lib/pgsql/16/data"
    # The passphrase only in the repository host's seed.
    for node in ("db1", "db2", "db3"):
        assert sec.backup_cipher not in str(_seed(ctx, node))
    # Each side admits only the other's certificate name, for this stanza.
    text = _file(_seed(ctx, "lb1"), "pgbackrest.conf")
    assert [ln for ln in text.splitlines() if ln.startswith("tls-server-auth")] == [
        f"tls-server-auth=db{i}.pgha.lab=pgha" for i in (1, 2, 3)]
    assert "tls-server-auth=lb1.pgha.lab=pgha" in _file(_seed(ctx, "db1"), "pgbackrest.conf")


def test_timers_follow_the_schedule(tmp_path):
    ctx = _ctx(tmp_path, backup={"schedule": {"full": "Sat *-*-* 02:30:00", "diff": "daily"}})
    seed = _seed(ctx, "lb1")
    assert _file(seed, "pgha-backup-full.timer.d/50-schedule.conf").endswith(
        "OnCalendar=\nOnCalendar=Sat *-*-* 02:30:00\n")
    assert _file(seed, "pgha-backup-diff.timer.d/50-schedule.conf").endswith(
        "OnCalendar=\nOnCalendar=daily\n")


def test_lab_paths_of_peers_are_under_their_roots(tmp_path):
    ctx = _ctx(tmp_path)
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster)
    seed = seeds.render_seed(ctx, ctx.cluster.node("lb1"), sec, root_prefix="/lab/lb1/root",
                             peer_root=lambda n: f"/lab/{n}/root")
    repo = _ini(_file(seed, "pgbackrest.conf"))
    assert repo["global"]["repo1-path"] == "/lab/lb1/root/var/lib/pgbackrest"
    assert repo["pgha"]["pg2-path"] == "/lab/db2/root/var/lib/pgsql/16/data"
    assert repo["pgha"]["pg2-host-config"] == "/lab/db2/root/etc/pgbackrest/pgbackrest.conf"
