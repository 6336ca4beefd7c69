"""Role configs rendered into seeds: parse what is rendered and check the values."""

from __future__ import annotations

import yaml

from builder.core.context import Context
from builder.model import loading as config
from builder.model.secrets import generate
from builder.stages import seeds

SEC = generate()


def _ctx(tmp_path, **data):
    return Context.create(config.from_data(data), tmp_path)


def _file(seed: dict, suffix: str) -> str:
    return next(f["content"] for f in seed["files"] if f["path"].endswith(suffix))


def _env(text: str) -> dict[str, str]:
    return dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))


def test_patroni_yml_values(tmp_path):
    ctx = _ctx(tmp_path, profile="fast", patroni={"parameters": {"max_connections": 250}})
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db2"), SEC), "patroni.yml"))
    assert p["scope"] == "pgha" and p["name"] == "db2"
    assert p["restapi"]["listen"] == "10.77.0.12:8008"
    assert p["restapi"]["connect_address"] == "10.77.0.12:8008"
    assert p["restapi"]["authentication"] == {"username": "patroni",
                                              "password": SEC.restapi.password}
    assert p["etcd3"]["hosts"] == ["10.77.0.11:2379", "10.77.0.12:2379", "10.77.0.13:2379"]
    dcs = p["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 1, 3)
    assert dcs["maximum_lag_on_failover"] == 1048576
    assert dcs["synchronous_mode"] is True and dcs["synchronous_mode_strict"] is False
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
    assert auth["superuser"]["password"] == SEC.superuser.password
    assert auth["replication"]["password"] == SEC.replication.password
    assert auth["rewind"]["password"] == SEC.rewind.password


def test_pg_hba(tmp_path):
    ctx = _ctx(tmp_path)
    p = yaml.safe_load(_file(seeds.render_seed(ctx, ctx.cluster.node("db1"), SEC), "patroni.yml"))
    hba = [line.split() for line in p["postgresql"]["pg_hba"]]
    assert ["host", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"] in hba
    assert ["host", "replication", "replicator", "10.77.0.11/32", "scram-sha-256"] in hba
    assert ["host", "replication", "replicator", "10.77.0.0/24", "scram-sha-256"] in hba
    for line in hba:
        if line[0] == "host":
            assert line[-1] == "scram-sha-256"
            assert line[3] in ("127.0.0.1/32", "10.77.0.11/32", "10.77.0.0/24")
    assert not any("0.0.0.0/0" in " ".join(line) or "trust" in line for line in hba)


def test_etcd_env(tmp_path):
    ctx = _ctx(tmp_path)
    env = _env(_file(seeds.render_seed(ctx, ctx.cluster.node("db3"), SEC), "etcd.conf"))
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
    check = {"inter_ms": 1500, "fall": 2, "rise": 1, "fastinter_ms": 500, "downinter_ms": 700}
    ctx = _ctx(tmp_path, load_balancer={"check": check})
    text = _file(seeds.render_seed(ctx, ctx.cluster.node("lb1"), SEC), "haproxy.cfg")
    sections = text.split("\nlisten ")
    primary = next(s for s in sections if s.startswith("primary"))
    replicas = next(s for s in sections if s.startswith("replicas"))
    stats = next(s for s in sections if s.startswith("stats"))
    assert "bind *:5000" in primary and "option httpchk GET /primary" in primary
    assert "bind *:6000" in replicas and "option httpchk GET /replica" in replicas
    for s in (primary, replicas):
        assert "http-check expect status 200" in s
        assert ("default-server inter 1500ms fastinter 500ms downinter 700ms fall 2 rise 1 "
                "on-marked-down shutdown-sessions"
                in s)
        assert s.count("check port 8008") == 3
        assert "server db1 10.77.0.11:5432" in s
    assert "bind *:7000" in stats
    assert f"stats auth haproxy:{SEC.haproxy_stats.password}" in stats


def test_keepalived_only_with_vip_and_two_lbs(tmp_path):
    one = _ctx(tmp_path, load_balancer={"virtual_ip": "10.77.0.100"})
    seed = seeds.render_seed(one, one.cluster.node("lb1"), SEC)
    assert [s["name"] for s in seed["services"]] == ["haproxy"]
    assert not any(f["path"].endswith("keepalived.conf") for f in seed["files"])
    nodes = [*one.cluster.model_dump(mode="json")["nodes"],
             {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"}]
    two = _ctx(tmp_path, nodes=nodes, load_balancer={"virtual_ip": "10.77.0.100"})
    seed1 = seeds.render_seed(two, two.cluster.node("lb1"), SEC)
    seed2 = seeds.render_seed(two, two.cluster.node("lb2"), SEC)
    assert [s["name"] for s in seed1["services"]] == ["haproxy", "keepalived"]
    k1, k2 = _file(seed1, "keepalived.conf"), _file(seed2, "keepalived.conf")
    assert "10.77.0.100/24" in k1 and "chk_haproxy" in k1
    assert "unicast_peer {\n        10.77.0.9\n" in k1
    assert "priority 150" in k1 and "priority 140" in k2
    novip = _ctx(tmp_path, nodes=nodes)
    seed = seeds.render_seed(novip, novip.cluster.node("lb2"), SEC)
    assert not any(f["path"].endswith("keepalived.conf") for f in seed["files"])
