"""Role configs rendered into seeds: parse what is rendered and check the values."""

from __future__ import annotations

import pytest
import yaml

from builder.core.context import Context
from builder.model import loading as config
from builder.model import tlsplan
from builder.stages import seeds


def _sec(ctx):
    """The cluster's passwords and PKI (made once per output folder, as a build does)."""
    return tlsplan.load_secrets(ctx.out, ctx.cluster)


def _ctx(tmp_path, **data):
    return Context.create(config.from_data(data), tmp_path)


def _file(seed: dict, suffix: str) -> str:
    return next(f["content"] for f in seed["files"] if f["path"].endswith(suffix))


def _env(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


def test_patroni_yml_values(tmp_path):
    ctx = _ctx(tmp_path, profile="fast", patroni={"parameters": {"max_connections": 250}})
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db2"), _sec(ctx)), "patroni.yml"))
    assert p["scope"] == "pgha" and p["name"] == "db2"
    assert p["restapi"]["listen"] == "10.77.0.12:8008"
    assert p["restapi"]["connect_address"] == "10.77.0.12:8008"
    assert p["restapi"]["authentication"] == {"username": "patroni",
                                              "password": _sec(ctx).restapi.password}
    assert p["etcd3"]["hosts"] == ["10.77.0.11:2379", "10.77.0.12:2379", "10.77.0.13:2379"]
    dcs = p["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 3)
    assert dcs["maximum_lag_on_failover"] == 1048576
    assert dcs["synchronous_mode"] == "quorum" and dcs["synchronous_mode_strict"] is False
    assert dcs["postgresql"]["use_pg_rewind"] and dcs["postgresql"]["use_slots"]
    assert dcs["postgresql"]["parameters"]["max_connections"] == 250
    assert dcs["postgresql"]["parameters"]["password_encryption"] == "scram-sha-256"
    assert {"encoding": "UTF8"} in p["bootstrap"]["initdb"]
    assert "data-checksums" in p["bootstrap"]["initdb"]
    pg = p["postgresql"]
    assert pg["bin_dir"] == "/usr/pgsql-16/bin" and pg["data_dir"] == "/var/lib/pgsql/16/data"
    assert pg["connect_address"] == "10.77.0.12:5432"
    assert pg["parameters"]["unix_socket_directories"] == "/run/postgresql"
    auth = pg["authentication"]
    assert auth["superuser"]["password"] == _sec(ctx).superuser.password
    assert auth["replication"]["password"] == _sec(ctx).replication.password
    assert auth["rewind"]["password"] == _sec(ctx).rewind.password


def test_pg_hba_without_tls(tmp_path):
    ctx = _ctx(tmp_path, tls=False)
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx)), "patroni.yml"))
    hba = [line.split() for line in p["postgresql"]["pg_hba"]]
    assert ["host", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"] in hba
    assert ["host", "replication", "replicator", "10.77.0.11/32", "scram-sha-256"] in hba
    assert ["host", "replication", "replicator", "10.77.0.0/24", "scram-sha-256"] in hba
    for line in hba:
        if line[0] == "host":
            assert line[-1] == "scram-sha-256"
            assert line[3] in ("127.0.0.1/32", "10.77.0.11/32", "10.77.0.0/24")
    assert not any("0.0.0.0/0" in " ".join(line) or "trust" in line for line in hba)


def test_etcd_env_without_tls(tmp_path):
    ctx = _ctx(tmp_path, tls=False)
    env = _env(_file(seeds.render_seed(ctx, ctx.cluster.node("db3"), _sec(ctx)), "etcd.conf"))
    assert env["ETCD_NAME"] == "db3"
    assert env["ETCD_INITIAL_CLUSTER"] == ("db1=http://10.77.0.11:2380,db2=http://10.77.0.12:2380,"
                                           "db3=http://10.77.0.13:2380")
    assert env["ETCD_LISTEN_PEER_URLS"] == "http://10.77.0.13:2380"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == "http://10.77.0.13:2380"
    assert "http://10.77.0.13:2379" in env["ETCD_LISTEN_CLIENT_URLS"].split(",")
    assert env["ETCD_ADVERTISE_CLIENT_URLS"] == "http://10.77.0.13:2379"
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == "pgha-etcd"
    assert env["ETCD_DATA_DIR"] == "/var/lib/etcd/pgha.etcd"
    assert all('"' not in v and " " not in v for v in env.values())


def test_haproxy_cfg(tmp_path):
    check = {"inter_ms": 1500, "fall": 2, "rise": 3, "fastinter_ms": 500, "downinter_ms": 700}
    ctx = _ctx(tmp_path, load_balancer={"check": check, "replica_max_lag": 4096})
    text = _file(seeds.render_seed(ctx, ctx.cluster.node("lb1"), _sec(ctx)), "haproxy.cfg")
    sections = text.split("\nlisten ")
    primary = next(s for s in sections if s.startswith("primary"))
    replicas = next(s for s in sections if s.startswith("replicas"))
    stats = next(s for s in sections if s.startswith("stats"))
    assert "bind *:5000" in primary and "option httpchk GET /primary" in primary
    assert "bind *:6000" in replicas
    # a replica more than 4096 bytes behind the leader's last position in the DCS takes no reads
    assert "option httpchk GET /replica?lag=4096\n" in replicas
    # /primary's 200 is authoritative: rise 1; a refused connection takes the primary out
    fast_out = " observe layer4 error-limit 1 on-error mark-down"
    for s, rise, extra in ((primary, 1, fast_out), (replicas, 3, "")):
        assert "http-check expect status 200" in s
        assert (f"default-server inter 1500ms fastinter 500ms downinter 700ms fall 2 rise {rise} "
                f"on-marked-down shutdown-sessions{extra}\n"
                in s)
        assert s.count("check port 8008") == 3
        assert "server db1 10.77.0.11:5432" in s
    assert "option redispatch 1" in primary and "redispatch" not in replicas
    assert "bind *:7000 ssl crt /etc/pgha/tls/haproxy.pem" in stats  # TLS: no clear password
    assert f"stats auth haproxy:{_sec(ctx).haproxy_stats.password}" in stats


def test_keepalived_only_with_vip_and_two_lbs(tmp_path):
    one = _ctx(tmp_path, load_balancer={"virtual_ip": "10.77.0.100"})
    seed = seeds.render_seed(one, one.cluster.node("lb1"), _sec(one))
    assert [s["name"] for s in seed["services"]] == ["haproxy", "pgha-exporter", "pgbackrest"]  # lb1: + backup
    assert not any(f["path"].endswith("keepalived.conf") for f in seed["files"])
    nodes = [*one.cluster.model_dump(mode="json")["nodes"],
             {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"}]
    two = _ctx(tmp_path, nodes=nodes, load_balancer={"virtual_ip": "10.77.0.100"})
    seed1 = seeds.render_seed(two, two.cluster.node("lb1"), _sec(two))
    seed2 = seeds.render_seed(two, two.cluster.node("lb2"), _sec(two))
    assert [s["name"] for s in seed1["services"]] == ["haproxy", "keepalived", "pgha-exporter",
                                                    "pgbackrest"]
    assert [s["name"] for s in seed2["services"]] == ["haproxy", "keepalived", "pgha-exporter"]
    k1, k2 = _file(seed1, "keepalived.conf"), _file(seed2, "keepalived.conf")
    assert "10.77.0.100/24" in k1 and "chk_haproxy" in k1
    assert "unicast_peer {\n        10.77.0.9\n" in k1
    assert "priority 150" in k1 and "priority 140" in k2
    # The check means "this HAProxy serves" (stats socket + client ports), not a process name.
    assert ('script "/usr/libexec/keepalived/pgha-lb-check --socket /var/lib/haproxy/stats '
            '--port 5000 --port 6000 --timeout 1"') in k1
    assert "pgrep" not in k1
    assert "\n    nopreempt\n" in k1 and "state BACKUP" in k1
    argv = next(s["argv"] for s in seed1["services"] if s["name"] == "keepalived")
    assert argv[:4] == ["/usr/sbin/keepalived", "--dont-fork", "--log-console", "--vrrp"]
    novip = _ctx(tmp_path, nodes=nodes)
    seed = seeds.render_seed(novip, novip.cluster.node("lb2"), _sec(novip))
    assert not any(f["path"].endswith("keepalived.conf") for f in seed["files"])


def test_pg_hba_with_tls_admits_remote_access_only_over_ssl(tmp_path):
    ctx = _ctx(tmp_path, network={"client_networks": ["192.168.5.0/24"]})
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx)),
                             "patroni.yml"))
    hba = [line.split() for line in p["postgresql"]["pg_hba"]]
    remote = [h for h in hba if h[0].startswith("host") and h[3] != "127.0.0.1/32"]
    assert remote[0] == ["hostnossl", "all", "all", "0.0.0.0/0", "reject"]
    assert all(h[0] == "hostssl" for h in remote[1:])
    assert ["hostssl", "replication", "replicator", "10.77.0.12/32", "scram-sha-256",
            "clientcert=verify-ca"] in hba
    assert ["hostssl", "all", "all", "192.168.5.0/24", "scram-sha-256"] in hba
    assert ["hostssl", "all", "all", "10.77.0.10/32", "scram-sha-256"] in hba  # the LB
    assert not any(h[3] == "10.77.0.0/24" for h in remote)  # only configured client networks
    pg = p["postgresql"]
    assert pg["parameters"]["ssl"] == "on"
    assert pg["parameters"]["ssl_cert_file"] == "/etc/pgha/tls/postgres.crt"
    for user in ("replication", "rewind"):
        assert pg["authentication"][user]["sslmode"] == "verify-full"
        assert pg["authentication"][user]["sslrootcert"] == "/etc/pgha/tls/ca.crt"
    assert p["etcd3"]["protocol"] == "https" and p["etcd3"]["cert"].endswith("postgres.crt")
    assert p["restapi"]["certfile"] == "/etc/pgha/tls/postgres.crt"
    assert p["restapi"]["verify_client"] == "optional"
    assert p["ctl"]["cacert"] == "/etc/pgha/tls/ca.crt"


def test_etcd_env_with_tls_needs_client_certificates(tmp_path):
    ctx = _ctx(tmp_path)
    env = _env(_file(seeds.render_seed(ctx, ctx.cluster.node("db3"), _sec(ctx)), "etcd.conf"))
    assert env["ETCD_INITIAL_CLUSTER"] == ("db1=https://10.77.0.11:2380,"
                                           "db2=https://10.77.0.12:2380,db3=https://10.77.0.13:2380")
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://10.77.0.13:2379,https://127.0.0.1:2379"
    assert env["ETCD_CLIENT_CERT_AUTH"] == env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    assert env["ETCD_CERT_FILE"] == env["ETCD_PEER_CERT_FILE"] == "/etc/pgha/tls/etcd.crt"
    assert env["ETCD_TRUSTED_CA_FILE"] == env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/pgha/tls/ca.crt"


def test_haproxy_checks_patroni_over_verified_tls(tmp_path):
    ctx = _ctx(tmp_path)
    text = _file(seeds.render_seed(ctx, ctx.cluster.node("lb1"), _sec(ctx)), "haproxy.cfg")
    servers = [ln.split() for ln in text.splitlines() if ln.strip().startswith("server ")]
    assert len(servers) == 6
    for s in servers:
        opts = " ".join(s[3:])
        assert "check-ssl verify required ca-file /etc/pgha/tls/ca.crt" in opts
        assert f"verifyhost {s[1]}.pgha.lab" in opts and "crt /etc/pgha/tls/haproxy.pem" in opts


def test_patroni_watchdog_failsafe_and_quorum(tmp_path):
    ctx = _ctx(tmp_path)
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx)), "patroni.yml"))
    assert p["watchdog"] == {"mode": "automatic", "device": "/dev/watchdog", "safety_margin": 5}
    assert p["bootstrap"]["dcs"]["failsafe_mode"] is False
    ctx = _ctx(tmp_path / "q", patroni={"watchdog": "required", "synchronous_mode": "quorum",
                                        "failsafe_mode": True})
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx)), "patroni.yml"))
    assert p["watchdog"]["mode"] == "required"
    assert p["bootstrap"]["dcs"]["synchronous_mode"] == "quorum"
    assert p["bootstrap"]["dcs"]["failsafe_mode"] is True


def test_lab_turns_the_watchdog_off(tmp_path):
    from builder.lab.lab import lab_cluster

    cluster = lab_cluster(config.from_data({"patroni": {"watchdog": "required"}}))
    assert cluster.patroni.watchdog == "off"
    ctx = Context.create(cluster, tmp_path)
    p = yaml.safe_load(_file(seeds.render_seed(ctx, cluster.node("db1"), _sec(ctx)), "patroni.yml"))
    assert p["watchdog"]["mode"] == "off"


def _global_section(cfg: str) -> list[str]:
    lines = cfg.split("\nglobal\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_haproxy_dh_param_in_global_accepted_by_the_real_haproxy(tmp_path):
    """HAProxy 1.8 warns at every start without tune.ssl.default-dh-param; the real haproxy
    (zero-warning mode -dW) checks the whole TLS configuration with the seed's certificates."""
    import shutil
    import subprocess

    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is required: run scripts/setup")
    ctx = _ctx(tmp_path / "out")
    seed = seeds.render_seed(ctx, ctx.cluster.node("lb1"), _sec(ctx))
    cfg = _file(seed, "haproxy.cfg")
    assert "tune.ssl.default-dh-param 2048" in _global_section(cfg)
    root = tmp_path / "root"
    for f in seed["files"]:
        path = root / f["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f["content"])
    local = cfg.replace("/etc/pgha/tls", f"{root}/etc/pgha/tls").replace(
        "/var/lib/haproxy", str(tmp_path))
    assert f"crt {root}/etc/pgha/tls/haproxy.pem" in local  # the TLS parts are really checked
    (tmp_path / "haproxy.cfg").write_text(local)
    proc = subprocess.run(["haproxy", "-dW", "-c", "-f", str(tmp_path / "haproxy.cfg")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = local.replace("tune.ssl.default-dh-param 2048", "tune.ssl.default-dh-param x")
    (tmp_path / "broken.cfg").write_text(broken)
    bad = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "broken.cfg")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "default-dh-param" in bad.stdout + bad.stderr
