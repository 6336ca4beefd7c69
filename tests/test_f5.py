"""F5 BIG-IP instead of HAProxy: the model rules, the AS3 declaration against what AS3's schema
requires, the timing rule, tmsh.txt agreeing with as3.json and safe to run twice, 5 db nodes,
and bad input answered with one line."""

from __future__ import annotations

import copy
import http.server
import ipaddress
import json
import os
import shlex
import socket
import stat
import subprocess
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from f5_as3 import as3_problems

from builder.cli import cli
from builder.core.context import Context
from builder.core.errors import EXIT_CONFIG, ConfigError
from builder.model import loading
from builder.model.cluster import Cluster
from builder.model.f5 import monitor_timing
from builder.model.rules import check as check_rules
from builder.stages import f5 as stage
from builder.stages import f5as3 as as3
from builder.stages import f5plan as plan
from builder.stages import pipeline

DB = [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"} for i in (1, 2, 3)]


SELF_IPS = ["10.77.0.5", "10.77.0.6"]


def f5_data(**lb: Any) -> dict[str, Any]:
    f5 = {"self_ips": SELF_IPS, **lb.pop("f5", {})}
    return {"name": "shop", "nodes": copy.deepcopy(DB),
            "load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50", "f5": f5, **lb}}


def load(data: dict[str, Any]) -> Cluster:
    return loading.from_data(data, "test.yaml")


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(data)
    return info.value.problems


def decl_of(data: dict[str, Any]) -> dict[str, Any]:
    return as3.declaration(plan.plan(load(data)))


def app_of(decl: dict[str, Any]) -> dict[str, Any]:
    tenant = next(v for k, v in decl.items() if isinstance(v, dict) and v.get("class") ==
                  "Tenant")
    return next(v for v in tenant.values() if isinstance(v, dict))


# ------------------------------------------------------------------ the model


def test_defaults_and_partition_alias() -> None:
    c = load(f5_data())
    assert c.load_balancer.kind == "f5"
    assert (c.load_balancer.f5.tenant, c.load_balancer.f5.application) == ("shop", "postgres")
    assert load({"name": "x"}).load_balancer.kind == "haproxy"
    c = load(f5_data(f5={"partition": "PG_Shop", "application": "orders"}))
    assert (c.load_balancer.f5.tenant, c.load_balancer.f5.application) == ("PG_Shop", "orders")


@pytest.mark.parametrize(("change", "path", "words"), [
    ({"nodes": DB + [{"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.9"}]},
     "nodes[3].roles[0]", "load_balancer.kind is f5"),
    ({"load_balancer": {"kind": "f5"}}, "load_balancer.virtual_ip", "kind f5 needs"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "192.0.2.50"}},
     "load_balancer.virtual_ip", "nothing routes it"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "192.0.2.0",
                        "f5": {"vip_networks": ["192.0.2.0/24"]}}},
     "load_balancer.virtual_ip", "network or broadcast"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.11"}},
     "load_balancer.virtual_ip", "the address of node db1"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50", "replica_port": 5000}},
     "load_balancer.replica_port", "also the primary_port"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50"}},
     "load_balancer.f5.self_ips", "firewall drops its health checks"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                        "f5": {"self_ips": ["10.77.0.12"]}}},
     "load_balancer.f5.self_ips[0]", "a node's or the virtual IP"),
    ({"tls": {"restapi_verify_client": "required"}},
     "tls.restapi_verify_client", "do not present"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                        "f5": {"self_ips": SELF_IPS, "tenant": "Common"}}},
     "load_balancer.f5.tenant", "reserved"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                        "f5": {"self_ips": SELF_IPS, "application": "a b"}}},
     "load_balancer.f5.application", "pattern"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                        "f5": {"self_ips": SELF_IPS, "monitor_interval": 10}}},
     "load_balancer.f5.monitor_interval", "timeout = 3 x interval 10 s + 1"),
    ({"load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                        "f5": {"self_ips": SELF_IPS, "vip_networks": ["192.0.2.1/24"]}}},
     "load_balancer.f5.vip_networks[0]", "not an IPv4 network"),
])
def test_check_rejects_what_cannot_work(change: dict[str, Any], path: str, words: str) -> None:
    data = {**f5_data(), **change}
    found = [p for p in problems(data) if p.startswith(path)]
    assert found and words in found[0], problems(data)


def test_routed_vip_and_override_pass() -> None:
    load(f5_data(virtual_ip="192.0.2.50", f5={"vip_networks": ["192.0.2.0/24"]}))
    load(f5_data(virtual_ip="198.51.100.7", f5={"allow_unrouted_vip": True}))


def test_haproxy_rules_unchanged_and_f5_block_ignored_with_a_warning() -> None:
    assert "outside network.cidr" in " ".join(problems(
        {"load_balancer": {"virtual_ip": "192.0.2.50"}}))
    c = load({"load_balancer": {"f5": {"tenant": "x"}}})
    assert any(w.path == "load_balancer.f5" for w in check_rules(c).warnings)
    shown = load(load({}).model_dump(mode="json"))  # `show`'s output used as a cluster file
    assert not any(w.path == "load_balancer.f5" for w in check_rules(shown).warnings)
    assert not any("load balancer node" in w.message for w in check_rules(load(f5_data())).warnings)


# ------------------------------------------------------------------ the timing rule


@pytest.mark.parametrize(("lb", "profile", "expected"), [
    ({}, "default", (3, 10)),                        # inter 3000 ms
    ({}, "fast", (1, 4)),                            # inter 1000 ms
    ({"check": {"inter_ms": 2500}}, "default", (3, 10)),  # whole seconds, rounded up
    ({"check": {"inter_ms": 400}}, "default", (1, 4)),    # BIG-IP's minimum interval is 1 s
    ({"f5": {"monitor_interval": 5}}, "default", (5, 16)),
])
def test_monitor_timing(lb: dict[str, Any], profile: str, expected: tuple[int, int]) -> None:
    c = load({**f5_data(**lb), "profile": profile})
    assert monitor_timing(c) == expected
    interval, timeout = expected
    assert timeout == 3 * interval + 1 and timeout < c.patroni.ttl
    for mon in app_of(as3.declaration(plan.plan(c))).values():
        if isinstance(mon, dict) and mon.get("class") == "Monitor":
            assert (mon["interval"], mon["timeout"]) == expected


def test_timing_boundary_at_ttl() -> None:
    # ttl 20: interval 6 gives timeout 19 (< 20, warned as more than half); 7 gives 22: error.
    base = {**f5_data(), "patroni": {"ttl": 20, "loop_wait": 5, "retry_timeout": 5}}
    near = copy.deepcopy(base)
    near["load_balancer"]["f5"]["monitor_interval"] = 6
    report = check_rules(load(near))
    assert any("more than half of ttl 20" in w.message for w in report.warnings)
    over = copy.deepcopy(base)
    over["load_balancer"]["f5"]["monitor_interval"] = 7
    assert any("not less than ttl 20 s" in p for p in problems(over))


# ------------------------------------------------------------------ the AS3 declaration


def test_declaration_has_what_as3_requires() -> None:
    decl = decl_of(f5_data())
    assert as3_problems(decl, "3.36.0") == []
    assert decl["class"] == "ADC" and decl["schemaVersion"] == as3.SCHEMA_VERSION
    assert decl["updateMode"] == "selective"
    assert decl["shop"]["class"] == "Tenant"
    app = decl["shop"]["postgres"]
    assert app["class"] == "Application"
    monitors = {k: v for k, v in app.items() if isinstance(v, dict) and v["class"] == "Monitor"}
    assert {m["send"] for m in monitors.values()} == {"GET /primary HTTP/1.0\r\n\r\n",
                                                      "GET /replica HTTP/1.0\r\n\r\n"}
    for mon in monitors.values():  # Patroni's REST API speaks TLS (tls.enabled, the default)
        assert mon["monitorType"] == "https" and mon["targetPort"] == 8008
        assert mon["send"].endswith("\r\n\r\n") and mon["receive"] == "200 OK"
    for name, uri in (("pool_primary", "/primary"), ("pool_replicas", "/replica")):
        pool = app[name]
        assert pool["serviceDownAction"] == "reset" and pool["slowRampTime"] == 0
        assert app[pool["monitors"][0]["use"]]["send"].startswith(f"GET {uri} ")
        (member,) = pool["members"]
        assert member["servicePort"] == 5432
        assert member["servers"] == [{"name": n["name"], "address": n["address"]} for n in DB]
    ports = {app[v]["virtualPort"]: app[v]["pool"] for v in ("vs_primary", "vs_replicas")}
    assert ports == {5000: "pool_primary", 6000: "pool_replicas"}
    for vs in ("vs_primary", "vs_replicas"):
        assert app[vs]["class"] == "Service_TCP" and app[vs]["virtualAddresses"] == ["10.77.0.50"]
        assert app[vs]["persistenceMethods"] == [] and app[vs]["snat"] == "auto"
        assert app[app[vs]["profileTCP"]["use"]]["idleTimeout"] == 1800


def test_plain_http_monitors_without_tls() -> None:
    app = app_of(decl_of({**f5_data(), "tls": False}))
    assert {app[m]["monitorType"] for m in ("mon_patroni_primary", "mon_patroni_replica")} == \
        {"http"}


def test_db_nodes_admit_the_big_ip(tmp_path: Path) -> None:
    """Firewall rich rules and pg_hba of a db node name the BIG-IP's self IPs as the load
    balancers: its monitors reach Patroni's REST API, its SNAT'd connections PostgreSQL."""
    from builder.model import tlsplan
    from builder.stages import firewall, seeds

    c = load({**f5_data(), "network": {"client_networks": ["192.0.2.0/24"]}})
    rules = firewall.node_rules(c, c.node("db1"))
    for ip in SELF_IPS:
        for svc in ("pgha-patroni", "pgha-postgresql"):
            assert firewall.rich_rule(ipaddress.IPv4Network(f"{ip}/32"), svc) in rules
    ctx = Context.create(c, tmp_path / "out")
    seed = seeds.render_seed(ctx, c.node("db1"), tlsplan.load_secrets(ctx.out, c))
    text = next(f["content"] for f in seed["files"] if f["path"].endswith("patroni.yml"))
    hba = yaml.safe_load(text)["postgresql"]["pg_hba"]
    for ip in SELF_IPS:
        assert f"hostssl all all {ip}/32 scram-sha-256" in hba


@pytest.mark.skipif(not os.environ.get("PGHA_AS3_SCHEMA"),
                    reason="set PGHA_AS3_SCHEMA to F5's as3-schema.json (not shipped here)")
def test_declaration_against_f5_published_schema() -> None:
    """With F5's own schema file (F5Networks/f5-appsvcs-extension schema/<v>/as3-schema.json):
    every generated declaration validates, and a broken one does not."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(Path(os.environ["PGHA_AS3_SCHEMA"]).read_text())
    validator = jsonschema.Draft7Validator(schema)
    nodes = [{"name": f"pg{i}", "roles": ["db"], "address": f"10.77.0.{20 + i}"}
             for i in range(1, 6)]
    for data in (f5_data(), {**f5_data(), "tls": False, "profile": "fast", "nodes": nodes},
                 f5_data(virtual_ip="192.0.2.50", f5={"vip_networks": ["192.0.2.0/24"],
                                                       "snat": "none"})):
        decl = decl_of(data)
        assert [e.message for e in validator.iter_errors(decl)] == []
        del app_of(decl)["pool_primary"]["members"][0]["servicePort"]
        assert list(validator.iter_errors(decl))


@pytest.mark.parametrize(("mutate", "error"), [
    (lambda a: a["pool_primary"]["members"][0].pop("servicePort"),
     "/shop/postgres/pool_primary/members/0: should have required property 'servicePort'"),
    (lambda a: a["pool_primary"].update(monitors=[{"use": "mon_nope"}]),
     "/shop/postgres/pool_primary/monitors/0/use"),
    (lambda a: a["vs_primary"].pop("virtualPort"), "should have required property 'virtualPort'"),
    (lambda a: a["vs_replicas"].update(pool="mon_patroni_replica"), "vs_replicas/pool/use"),
    (lambda a: a["pool_replicas"].update(serviceDownAction="shutdown-sessions"),
     "serviceDownAction"),
    (lambda a: a["mon_patroni_primary"].update(timeout=1000), "timeout"),
    (lambda a: a["pool_primary"]["members"][0]["servers"][0].update(address="db1"), "f5ip"),
    (lambda a: a["pool_primary"].update(remark='say "hi"'), "remark"),
    (lambda a: a["pool_primary"].update(serviceDownActon="reset"), "additional property"),
])
def test_as3_rules_catch_mistakes(mutate: Any, error: str) -> None:
    decl = decl_of(f5_data())
    mutate(decl["shop"]["postgres"])
    assert any(error in p for p in as3_problems(decl)), as3_problems(decl)


def test_send_string_is_http_that_patroni_s_server_answers() -> None:
    """Patroni's REST API is a http.server.BaseHTTPRequestHandler: send the monitor's exact
    bytes to one that answers like Patroni (200 on the asked-for role, 503 otherwise)."""

    class Patroni(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 200 if self.path == "/primary" else 503
            body = json.dumps({"state": "running", "role": "primary"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Patroni)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = app_of(decl_of(f5_data()))
        answers = {}
        for name in ("mon_patroni_primary", "mon_patroni_replica"):
            with socket.create_connection(server.server_address, timeout=5) as s:
                s.sendall(app[name]["send"].encode())
                answers[name] = s.makefile("rb").read().decode()
        assert app["mon_patroni_primary"]["receive"] in answers["mon_patroni_primary"]
        assert app["mon_patroni_replica"]["receive"] not in answers["mon_patroni_replica"]
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ tmsh.txt


def parse_tmsh(script: str) -> dict[str, dict[str, Any]]:
    """The objects tmsh.txt sets: (type, path) -> attributes, read from its modify/create
    lines as tmsh would receive them (bash quoting removed, tmsh strings unescaped)."""
    objs: dict[str, dict[str, Any]] = {}
    for line in script.splitlines():
        if "tmsh create" not in line and "tmsh modify" not in line:
            continue
        words = shlex.split(line[line.index("tmsh "):].split(" || ")[0])
        kind_len = 3 if words[2] in ("ltm", "sys", "auth") and words[3] in (
            "monitor", "profile") else 2
        kind = " ".join(words[2:2 + kind_len])
        path, rest = words[2 + kind_len], words[3 + kind_len:]
        attrs = objs.setdefault(f"{kind} {path}", {})
        i = 0
        while i < len(rest):
            key = rest[i]
            if key in ("members", "profiles", "source-address-translation"):
                if rest[i + 1] in ("add", "replace-all-with"):
                    i += 1
                depth, j = 0, i + 1
                while True:
                    depth += rest[j] == "{"
                    depth -= rest[j] == "}"
                    j += 1
                    if depth == 0 and rest[j - 1] == "}":
                        break
                attrs[key] = rest[i + 1:j]
                i = j
                continue
            value = rest[i + 1]
            if value.startswith('"'):
                value = value[1:-1].replace("\\r", "\r").replace("\\n", "\n")
            attrs[key] = value
            i += 2
    return objs


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    ctx = Context.create(load(data), tmp_path / "out")
    pipeline.run_steps(ctx, [pipeline.F5])
    return ctx.out.root / "f5"


def test_tmsh_and_json_agree(tmp_path: Path) -> None:
    data = f5_data(f5={"tenant": "PG_shop"})
    folder = write(tmp_path, data)
    app = json.loads((folder / "as3.json").read_text())["PG_shop"]["postgres"]
    objs = parse_tmsh((folder / "tmsh.txt").read_text())
    base = "/PG_shop/postgres"
    for name, obj in app.items():
        if not isinstance(obj, dict):
            continue
        if obj["class"] == "Monitor":
            t = objs[f"ltm monitor {obj['monitorType']} {base}/{name}"]
            assert t["destination"] == f"*:{obj['targetPort']}"
            assert (t["send"], t["recv"]) == (obj["send"], obj["receive"])
            assert (int(t["interval"]), int(t["timeout"])) == (obj["interval"], obj["timeout"])
        elif obj["class"] == "Pool":
            t = objs[f"ltm pool {base}/{name}"]
            assert t["monitor"] == f"{base}/{obj['monitors'][0]['use']}"
            assert t["service-down-action"] == obj["serviceDownAction"]
            assert t["load-balancing-mode"] == obj["loadBalancingMode"]
            (member,) = obj["members"]
            tmsh_members = [w for w in t["members"] if ":" in w]
            assert tmsh_members == [f"/PG_shop/{s['name']}:{member['servicePort']}"
                                    for s in member["servers"]]
            for s in member["servers"]:
                assert objs[f"ltm node /PG_shop/{s['name']}"]["address"] == s["address"]
        elif obj["class"] == "Service_TCP":
            t = objs[f"ltm virtual {base}/{name}"]
            assert t["destination"] == f"/PG_shop/{obj['virtualAddresses'][0]}:" \
                                       f"{obj['virtualPort']}"
            assert t["pool"] == f"{base}/{obj['pool']}"
            assert t["profiles"] == ["{", f"{base}/{obj['profileTCP']['use']}", "}"]
            assert t["persist"] == "none" and t["source-address-translation"][2] == "automap"
        elif obj["class"] == "TCP_Profile":
            assert int(objs[f"ltm profile tcp {base}/{name}"]["idle-timeout"]) == \
                obj["idleTimeout"]
    counted = {k.split()[1] for k in objs}
    assert counted >= {"monitor", "pool", "virtual", "node", "profile"}


FAKE_TMSH = textwrap.dedent("""\
    #!/usr/bin/env python3
    # A stand-in tmsh: keeps objects in a JSON file; create fails on an existing object,
    # modify on a missing one, list succeeds only for an existing one (as tmsh does).
    import json, os, sys
    db = os.environ["TMSH_DB"]
    state = json.load(open(db)) if os.path.exists(db) else {}
    args = [a for a in sys.argv[1:] if a != "-q"]
    open(os.environ["TMSH_LOG"], "a").write(" ".join(args) + "\\n")
    verb = args[0]
    if verb == "save":
        sys.exit(0)
    n = 4 if args[1] in ("ltm",) and args[2] in ("monitor", "profile") else 3
    key, attrs = " ".join(args[1:n + 1]), args[n + 1:]
    if verb == "list":
        if key not in state:
            sys.exit(1)
        if attrs[:1] == ["address"]:
            print(key + " {\\n    address " + state[key].get("address", "") + "\\n}")
        sys.exit(0)
    if verb == "create" and key in state or verb == "modify" and key not in state:
        print("01020066:3: The requested object already exists / was not found", file=sys.stderr)
        sys.exit(1)
    obj = state.setdefault(key, {})
    if len(attrs) >= 2 and attrs[0] == "address":
        obj["address"] = attrs[1]
    obj["last"] = " ".join(attrs)
    json.dump(state, open(db, "w"))
""")


def run_tmsh(script: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "tmsh"
    fake.write_text(FAKE_TMSH)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
           "TMSH_DB": str(tmp_path / "db.json"), "TMSH_LOG": str(tmp_path / "log")}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=False)


def test_tmsh_txt_is_safe_to_run_twice(tmp_path: Path) -> None:
    folder = write(tmp_path, f5_data())
    script = folder / "tmsh.txt"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    first = run_tmsh(script, tmp_path)
    assert first.returncode == 0, first.stderr
    state = json.loads((tmp_path / "db.json").read_text())
    creates = (tmp_path / "log").read_text().count("create ")
    assert creates == 2 + 2 + 3 + 2 + 1 + 2  # partition+folder, monitors, nodes, pools, tcp, vs
    (tmp_path / "log").write_text("")
    second = run_tmsh(script, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "create " not in (tmp_path / "log").read_text()
    assert json.loads((tmp_path / "db.json").read_text()) == state
    assert "ok: partition shop" in second.stdout


def test_tmsh_refuses_a_node_that_moved(tmp_path: Path) -> None:
    folder = write(tmp_path, f5_data())
    (tmp_path / "db.json").write_text(json.dumps({"ltm node /shop/db2": {"address": "10.9.9.9"}}))
    result = run_tmsh(folder / "tmsh.txt", tmp_path)
    assert result.returncode == 1
    assert "node /shop/db2 exists with another address than 10.77.0.12" in result.stderr


def test_five_db_nodes(tmp_path: Path) -> None:
    nodes = [{"name": f"pg{i}", "roles": ["db"], "address": f"10.77.0.{20 + i}"}
             for i in range(1, 6)]
    data = {**f5_data(), "nodes": nodes}
    folder = write(tmp_path, data)
    decl = json.loads((folder / "as3.json").read_text())
    assert as3_problems(decl) == []
    app = decl["shop"]["postgres"]
    for pool in ("pool_primary", "pool_replicas"):
        servers = app[pool]["members"][0]["servers"]
        assert [s["address"] for s in servers] == [n["address"] for n in nodes]
    objs = parse_tmsh((folder / "tmsh.txt").read_text())
    assert sorted(k for k in objs if k.startswith("ltm node")) == \
        [f"ltm node /shop/pg{i}" for i in range(1, 6)]
    assert len([w for w in objs["ltm pool /shop/postgres/pool_replicas"]["members"]
                if ":" in w]) == 5
    readme = (folder / "README.md").read_text()
    assert "cluster of 5 nodes" in readme and "/shop/pg5" in readme


def test_build_writes_f5_only_for_kind_f5(tmp_path: Path) -> None:
    assert pipeline.F5 in pipeline.BUILD
    folder = write(tmp_path, f5_data())
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "as3.json", "tmsh.txt"]
    back = Context.create(load({**f5_data(), "load_balancer": {}}), tmp_path / "out")
    pipeline.run_steps(back, [pipeline.F5, pipeline.MANIFEST])  # the same cluster, haproxy
    assert list(folder.iterdir()) == []
    manifest = json.loads(back.out.manifest.read_text())
    assert not [a for a in manifest["artifacts"] if a["path"].startswith("f5/")]


def test_text_quoting_refuses_what_tmsh_or_bash_would_read() -> None:
    assert stage.text("GET /x HTTP/1.0\r\n\r\n") == "'\"GET /x HTTP/1.0\\r\\n\\r\\n\"'"
    for bad in ('a"b', "a'b", "a$b", "a;b", "a[b]", "a{b}", "a\\b", "a`b`"):
        with pytest.raises(ValueError):
            stage.text(bad)


# ------------------------------------------------------------------ the command line


def cli_run(tmp_path: Path, data: dict[str, Any], *args: str) -> Any:
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump(data))
    return CliRunner().invoke(cli, ["-c", str(f), "-o", str(tmp_path / "out"), *args])


def test_cli_f5_writes_the_files(tmp_path: Path) -> None:
    result = cli_run(tmp_path, f5_data(), "f5")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out/shop/f5/as3.json").is_file()
    manifest = json.loads((tmp_path / "out/shop/manifest.json").read_text())
    assert {a["path"] for a in manifest["artifacts"]} >= {"f5/as3.json", "f5/tmsh.txt"}


@pytest.mark.parametrize(("data", "args", "code", "line"), [
    ({"name": "plain"}, ["f5"], 1, "error: cluster 'plain' uses HAProxy"),
    (f5_data(), ["f5", "--yes"], 2, "--yes goes with --apply URL"),
    ({**f5_data(), "nodes": DB + [{"name": "lb1", "roles": ["haproxy"],
                                   "address": "10.77.0.9"}]}, ["check"], EXIT_CONFIG,
     "lb1 has the load balancer role 'haproxy', but load_balancer.kind is f5"),
    (f5_data(virtual_ip="192.0.2.9"), ["f5"], EXIT_CONFIG,
     "192.0.2.9 is outside network.cidr and every"),
])
def test_bad_input_one_line(tmp_path: Path, data: dict[str, Any], args: list[str], code: int,
                            line: str) -> None:
    result = cli_run(tmp_path, data, *args)
    assert result.exit_code == code, result.output
    assert line in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("as3.json"))


def test_monitors_speak_https_when_tls_is_on_and_http_without() -> None:
    with_tls = as3.declaration(plan.plan(Cluster.model_validate(f5_data())))
    without = as3.declaration(plan.plan(Cluster.model_validate({**f5_data(), "tls": False})))
    def kinds(decl: dict) -> set[str]:
        app = next(v for v in decl.values() if isinstance(v, dict) and v.get("class") == "Tenant")
        return {m["monitorType"] for a in app.values() if isinstance(a, dict)
                for m in a.values() if isinstance(m, dict) and m.get("class") == "Monitor"}
    assert kinds(with_tls) == {"https"} and kinds(without) == {"http"}
