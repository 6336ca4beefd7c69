"""Failover readiness (the agent's pgha_agent/readiness.py, also used by the lab): judged on
Patroni's /cluster and /config answers, as Patroni 4.1 writes them; the agent's `failover`
health check against a local HTTP server that answers like a Patroni REST API; the db seed
carries that check; the lab status prints the verdict and the watchdog mode."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from builder.core.context import Context
from builder.lab.readiness import Readiness, agent_readiness, evaluate
from builder.lab.status import table
from builder.model import loading as config
from builder.model import tlsplan
from builder.stages import seeds

NAMES = ["db1", "db2", "db3"]
SYNC = {"synchronous_mode": True, "maximum_lag_on_failover": 1048576}
SELF_PRIMARY = {"state": "running", "role": "primary", "patroni": {"name": "db1"}}


def member(name: str, role: str = "replica", state: str = "streaming", lag: Any = 0,
           **extra: Any) -> dict[str, Any]:
    m = {"name": name, "role": role, "state": state, "timeline": 1, **extra}
    if role != "leader":
        m["lag"] = lag
    return m


def view(*members: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"members": list(members), **extra}


LEADER = member("db1", "leader", "running")


def verdict(cluster: dict[str, Any], conf: dict[str, Any] = SYNC) -> Readiness:
    return evaluate(cluster, conf, NAMES)


def test_ready_with_a_synchronous_standby_and_every_replica_streaming() -> None:
    r = verdict(view(LEADER, member("db2", "sync_standby"), member("db3")))
    assert r.ready, r.reason
    assert "sync: db2" in r.reason and r.line().startswith("failover-ready: yes")


@pytest.mark.parametrize(("cluster", "conf", "why"), [
    # right after bootstrap: streaming, but /sync names no one yet (Patroni promotes no one)
    (view(LEADER, member("db2"), member("db3")), SYNC, "no synchronous standby registered"),
    (view(LEADER, member("db2", "quorum_standby", state="running"), member("db3")),
     {"synchronous_mode": "quorum"}, "db2 is running, not streaming"),
    (view(LEADER, member("db2"), member("db3")), {"synchronous_mode": "quorum"},
     "no quorum standby registered"),
    (view(LEADER, member("db2", "sync_standby")), SYNC, "not a member yet: db3"),
    (view(member("db1", state="running"), member("db2"), member("db3")), SYNC, "no leader"),
    (view(member("db1", "leader", "stopped"), member("db2", "sync_standby"), member("db3")),
     SYNC, "leader db1 is stopped"),
    (view(LEADER, member("db2", "sync_standby"), member("db3"), pause=True), SYNC,
     "maintenance mode"),
    (view(LEADER, member("db2", "sync_standby", tags={"nofailover": True}),
          member("db3", tags={"nofailover": True})), SYNC, "nofailover"),
    (view(LEADER, member("db2", lag=5 << 20), member("db3", lag="unknown")),
     {"synchronous_mode": False, "maximum_lag_on_failover": 1 << 20}, "lags more than"),
])
def test_not_ready_says_why(cluster: dict[str, Any], conf: dict[str, Any], why: str) -> None:
    r = verdict(cluster, conf)
    assert not r.ready
    assert why in r.reason, r.reason
    assert r.line().startswith("failover-ready: no (")


def test_asynchronous_and_quorum_modes() -> None:
    async_ = verdict(view(LEADER, member("db2", lag=100), member("db3", lag=10 << 20)),
                     {"synchronous_mode": False})
    assert async_.ready and "asynchronous" in async_.reason
    quorum = verdict(view(LEADER, member("db2", "quorum_standby"),
                          member("db3", "quorum_standby")), {"synchronous_mode": "quorum"})
    assert quorum.ready and "quorum: db2, db3" in quorum.reason
    assert agent_readiness().sync_mode({"synchronous_mode": "on"}) == "on"
    assert agent_readiness().sync_mode({}) == "off"


def test_no_answer_is_not_ready() -> None:
    assert not evaluate(None, SYNC, NAMES).ready
    assert "no Patroni REST API answers" in evaluate(view(LEADER), None, NAMES).reason


class _Patroni(BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, Any]] = {}
    patches: ClassVar[list[tuple[str | None, Any]]] = []

    def do_PATCH(self) -> None:
        """Patroni's PATCH /config: basic auth, the body merged into /config, the result."""
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Patroni.patches.append((self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != "Basic cGF0cm9uaTpzM2NyZXQ=":  # patroni:s3cret
            self.send_response(401)
            self.end_headers()
            return
        self.answers["/config"] = {**self.answers.get("/config", {}), **body}
        self.do_GET()

    def do_GET(self) -> None:
        body = json.dumps(self.answers.get(self.path, {})).encode()
        self.send_response(200 if self.path in self.answers else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def patroni_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Patroni)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_agent_failover_probe(patroni_api: str) -> None:
    from test_agent_units import health  # the agent package, on sys.path there

    check = {"kind": "failover", "url": patroni_api, "members": NAMES, "service": "patroni"}
    _Patroni.answers = {"/cluster": view(LEADER, member("db2"), member("db3")), "/config": SYNC,
                        "/patroni": SELF_PRIMARY}
    ok, detail = health.probe(check)
    assert not ok and "no synchronous standby registered" in detail
    _Patroni.answers["/cluster"] = view(LEADER, member("db2", "sync_standby"), member("db3"))
    assert health.probe(check) == (True, "leader db1, streaming: db2, db3, sync: db2")
    assert "able to fail over" in health.describe(check)
    gone = {**check, "url": "http://127.0.0.1:9"}
    ok, detail = health.probe(gone, timeout=1)
    assert not ok and "Patroni REST API http://127.0.0.1:9" in detail


def test_agent_failover_probe_asks_the_member_itself(patroni_api: str) -> None:
    """A re-imaged db3 still cloning: its key in etcd, left by the machine it replaces, says
    streaming; db3's own REST API says otherwise, and the probe believes db3."""
    from test_agent_units import health

    check = {"kind": "failover", "url": patroni_api, "members": NAMES, "service": "patroni"}
    _Patroni.answers = {"/cluster": view(LEADER, member("db2", "sync_standby"), member("db3")),
                        "/config": SYNC,
                        "/patroni": {"state": "creating replica", "role": "replica",
                                     "patroni": {"name": "db3"}}}
    assert health.probe(check) == (False, "db3 (itself) is creating replica")
    _Patroni.answers["/patroni"] = {"state": "running", "role": "replica",
                                    "replication_state": "in archive recovery",
                                    "patroni": {"name": "db3"}}
    assert health.probe(check) == (False, "db3 (itself) is in archive recovery, not streaming")
    _Patroni.answers["/patroni"] = {**_Patroni.answers["/patroni"],
                                    "replication_state": "streaming"}
    assert health.probe(check)[0] is True


def test_agent_settles_loop_wait_once_ready(patroni_api: str, caplog, monkeypatch) -> None:
    """The boot's 1 s HA loop ends: the agent PATCHes the cluster file's loop_wait with the REST
    API's credentials, once; a value already right is left alone; a refused PATCH is a
    warning (the cluster runs), and no password reaches the log."""
    import importlib

    from test_agent_units import health  # noqa: F401  (puts the agent package on sys.path)

    settle = importlib.import_module("pgha_agent.settle")
    # an agent run earlier in this process (log.setup) stops its logger from propagating
    monkeypatch.setattr(importlib.import_module("pgha_agent.log").LOG, "propagate", True)

    check = {"kind": "failover", "url": patroni_api, "settle_loop_wait": 5,
             "username": "patroni", "password": "s3cret"}
    _Patroni.answers = {"/config": {"loop_wait": 1, "ttl": 30}}
    _Patroni.patches.clear()
    assert settle.loop_wait(check) is True
    assert _Patroni.answers["/config"] == {"loop_wait": 5, "ttl": 30}
    assert _Patroni.patches == [("Basic cGF0cm9uaTpzM2NyZXQ=", {"loop_wait": 5})]
    assert settle.loop_wait(check) is True and len(_Patroni.patches) == 1  # already 5
    assert settle.loop_wait({**check, "settle_loop_wait": None}) is True
    _Patroni.answers["/config"]["loop_wait"] = 1
    assert settle.loop_wait({**check, "password": "wrong"}) is False
    assert "HTTP 401" in caplog.text and "s3cret" not in caplog.text and "wrong" not in caplog.text


def test_db_seed_waits_for_failover_readiness(tmp_path) -> None:
    cluster = config.load(None)
    ctx = Context.create(cluster, tmp_path)
    sec = tlsplan.load_secrets(ctx.out, cluster)
    seed = seeds.render_seed(ctx, cluster.node("db2"), sec)
    check = next(c for c in seed["health"] if c["kind"] == "failover")
    # TLS on (the default): Patroni's REST API over HTTPS, verified, with the client certificate
    assert check["url"] == "https://10.77.0.12:8008" and check["members"] == NAMES
    assert check["cafile"].endswith("/ca.crt") and check["service"] == "patroni"
    lb = seeds.render_seed(ctx, cluster.node("lb1"), sec)
    assert not [c for c in lb["health"] if c["kind"] == "failover"]
    plain = config.from_data({"tls": {"enabled": False}})
    ctx = Context.create(plain, tmp_path / "plain")
    seed = seeds.render_seed(ctx, plain.node("db1"), tlsplan.load_secrets(ctx.out, plain))
    sec = tlsplan.load_secrets(ctx.out, plain)
    check = next(c for c in seeds.render_seed(ctx, plain.node("db1"), sec)["health"]
                 if c["kind"] == "failover")
    assert check == {"kind": "failover", "url": "http://10.77.0.11:8008", "service": "patroni",
                     "members": NAMES, "settle_loop_wait": 5, "username": "patroni",
                     "password": sec.restapi.password}
    fast = config.from_data({"profile": "fast"})  # loop_wait 1 already: nothing to settle
    ctx = Context.create(fast, tmp_path / "fast")
    seed = seeds.render_seed(ctx, fast.node("db1"), tlsplan.load_secrets(ctx.out, fast))
    assert "settle_loop_wait" not in next(c for c in seed["health"] if c["kind"] == "failover")


def test_status_table_shows_readiness_and_watchdog() -> None:
    data = {"cluster": "pgha", "running": True, "members": [], "backends": [],
            "failover_ready": {"ready": False, "reason": "no leader"},
            "synchronous_mode": True, "watchdog": "off",
            "load_balancers": [], "virtual_ip": None, "vip_holder": None,
            "endpoints": {"read_write": "a", "read_only": "b", "stats": "c", "entry": "d"}}
    text = table(data)
    assert "failover-ready: no (no leader)" in text
    assert "watchdog: off (the lab's nodes share this machine's kernel" in text


def test_agent_failover_probe_over_verified_https(tmp_path) -> None:
    """With TLS on, the check verifies Patroni's certificate against the cluster's CA and
    presents the node's client certificate (Patroni may require one)."""
    import ssl

    from test_agent_units import health

    from builder.model import pki

    ca = pki.make_ca("t", 1)
    server = pki.issue(ca, pki.CertSpec("db1", ips=("127.0.0.1",)), 1)
    client = pki.issue(ca, pki.CertSpec("db1", server=False, client=True), 1)
    for name, text in (("ca.crt", ca.cert_pem), ("s.crt", server.cert_pem),
                       ("s.key", server.key_pem), ("c.crt", client.cert_pem),
                       ("c.key", client.key_pem)):
        (tmp_path / name).write_text(text)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Patroni)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp_path / "ca.crt"))
    ctx.load_cert_chain(tmp_path / "s.crt", tmp_path / "s.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        _Patroni.answers = {"/cluster": view(LEADER, member("db2", "sync_standby"),
                                             member("db3")), "/config": SYNC,
                            "/patroni": SELF_PRIMARY}
        check = {"kind": "failover", "url": f"https://127.0.0.1:{httpd.server_address[1]}",
                 "members": NAMES, "cafile": str(tmp_path / "ca.crt"),
                 "certfile": str(tmp_path / "c.crt"), "keyfile": str(tmp_path / "c.key")}
        assert health.probe(check)[0] is True
        other = pki.make_ca("other", 1)
        (tmp_path / "other.crt").write_text(other.cert_pem)
        ok, detail = health.probe({**check, "cafile": str(tmp_path / "other.crt")})
        assert not ok and "CERTIFICATE_VERIFY_FAILED" in detail
    finally:
        httpd.shutdown()
        httpd.server_close()
