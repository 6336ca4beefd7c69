"""What AS3 requires of a declaration, and a stand-in BIG-IP AS3 endpoint on 127.0.0.1.

`as3_problems()` encodes the checks of AS3's JSON schema (F5Networks/f5-appsvcs-extension,
schema/3.36.0/as3-schema.json) that matter for our objects, with AS3's error wording
("/path: should have required property 'x'"): ADC / Tenant / Application classes and naming,
required properties per class, enums and ranges, no unknown property where the schema forbids
them, `use` pointers that resolve to an object of the right class, IPv4 addresses.

`FakeBigIp` behaves like AS3's documented REST API (docs/openapi.yaml and the API reference):
Basic or X-F5-Auth-Token auth (401 otherwise), JSON only, GET /info, POST /declare with
`async=true` (202 + task id; the task says "in progress" with code 0 for a few polls),
`controls.dryRun=true` (results with dryRun: true, and `changes` with controls.logLevel=debug),
422 "declaration is invalid" with one error per object, per-tenant "success" / "no change" /
"declaration failed", 503 while another declaration is in progress, 404 for an unknown task.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

ADC_PROPS = {"class", "$schema", "updateMode", "schemaVersion", "id", "target", "label",
             "remark", "constants", "Common", "controls", "scratch"}
TENANT_PROPS = {"class", "label", "remark", "verifiers", "enable", "defaultRouteDomain",
                "Shared", "constants", "controls", "optimisticLockKey"}
APP_PROPS = {"class", "label", "remark", "template", "schemaOverlay", "enable", "constants",
             "serviceMain"}
TENANT_RE = re.compile(r"^[A-Za-z][0-9A-Za-z_.-]*$")
APP_RE = re.compile(r"^[A-Za-z]([0-9A-Za-z_.-]{0,188}[0-9A-Za-z_.])?$")
SERVER_NAME_RE = re.compile(r"^[A-Za-z][0-9A-Za-z_.-]*$")
REMARK_BAD = re.compile(r"[\x00-\x1f\x22\x5c\x7f]")
LABEL_BAD = re.compile(r"[\x00-\x1f\x22#&*<>?\x5b-\x5d`\x7f]")
POOL_PROPS = {"class", "label", "remark", "allowNATEnabled", "allowSNATEnabled",
              "loadBalancingMode", "minimumMembersActive", "monitors", "minimumMonitors",
              "members", "reselectTries", "serviceDownAction", "slowRampTime"}
LB_MODES = {"dynamic-ratio-member", "dynamic-ratio-node", "fastest-app-response",
            "fastest-node", "least-connections-member", "least-connections-node",
            "least-sessions", "observed-member", "observed-node", "predictive-member",
            "predictive-node", "ratio-least-connections-member", "ratio-least-connections-node",
            "ratio-member", "ratio-node", "ratio-session", "round-robin",
            "weighted-least-connections-member", "weighted-least-connections-node"}
MONITOR_PROPS = {"class", "label", "remark", "monitorType", "targetAddress", "targetPort",
                 "interval", "upInterval", "timeUntilUp", "timeout", "adaptive", "send",
                 "receive", "receiveDown", "reverse", "username", "passphrase", "transparent",
                 "dscp"}
HTTPS_PROPS = {"ciphers", "clientCertificate", "clientTLS"}
BUILTIN_MONITORS = {"http", "https", "http2", "icmp", "tcp-half-open", "tcp"}


def _ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).split("%")[0])
        return isinstance(value, str)
    except ValueError:
        return False


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, path: str, out: list[str],
         required: bool = False) -> None:
    if key not in obj:
        if required:
            out.append(f"{path}: should have required property '{key}'")
        return
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        out.append(f"{path}/{key}: should be integer in [{lo}, {hi}]")


def _text(obj: dict[str, Any], path: str, out: list[str]) -> None:
    for key, bad in (("remark", REMARK_BAD), ("label", LABEL_BAD)):
        v = obj.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > 64 or bad.search(v)):
            out.append(f"{path}/{key}: should match the {key} pattern, at most 64 characters")


def _pointer(ref: Any, app: dict[str, Any], cls: str, path: str, out: list[str]) -> None:
    if not (isinstance(ref, dict) and len(ref) == 1 and set(ref) <= {"use", "bigip"}):
        out.append(f"{path}: should be an object with exactly one of 'use', 'bigip'")
        return
    target = ref.get("use")
    if target is not None and not (isinstance(app.get(target), dict)
                                   and app[target].get("class") == cls):
        out.append(f"{path}/use: declaration has no {cls} named '{target}' in this application")


def as3_problems(decl: Any, schema_current: str = "3.45.0") -> list[str]:
    out: list[str] = []
    if not isinstance(decl, dict) or decl.get("class") != "ADC":
        return ["/class: should be equal to constant 'ADC'"]
    sv = decl.get("schemaVersion")
    if not isinstance(sv, str) or not re.fullmatch(r"3\.\d+\.\d+", sv):
        out.append("/schemaVersion: should be a supported schema version")
    elif _vt(sv) > _vt(schema_current):
        out.append(f"/schemaVersion: should be equal to one of the allowed values "
                   f"(3.0.0 .. {schema_current})")
    if decl.get("updateMode", "selective") not in ("selective", "complete"):
        out.append("/updateMode: should be equal to one of the allowed values")
    if not isinstance(decl.get("id", ""), str) or re.search(r"[\x00-\x20\"'<>\\^`|]",
                                                           decl.get("id", "")):
        out.append("/id: should match the declaration id pattern")
    _text(decl, "", out)
    tenants = [k for k in decl if k not in ADC_PROPS]
    if not tenants:
        out.append("/: declaration has no tenant")
    for t in tenants:
        _tenant(t, decl[t], out)
    return out


def _vt(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _tenant(name: str, tenant: Any, out: list[str]) -> None:
    path = f"/{name}"
    if not TENANT_RE.match(name) or len(name) > 190:
        out.append(f"{path}: should match pattern \"{TENANT_RE.pattern}\"")
    if not isinstance(tenant, dict) or tenant.get("class") != "Tenant":
        out.append(f"{path}/class: should be equal to constant 'Tenant'")
        return
    _text(tenant, path, out)
    for a in [k for k in tenant if k not in TENANT_PROPS]:
        _application(f"{path}/{a}", a, tenant[a], out)


def _application(path: str, name: str, app: Any, out: list[str]) -> None:
    if not APP_RE.match(name):
        out.append(f"{path}: should match pattern \"{APP_RE.pattern}\"")
    if not isinstance(app, dict) or app.get("class") != "Application":
        out.append(f"{path}/class: should be equal to constant 'Application'")
        return
    _text(app, path, out)
    checks = {"Monitor": _monitor, "Pool": _pool, "Service_TCP": _service_tcp,
              "TCP_Profile": _tcp_profile}
    for key in [k for k in app if k not in APP_PROPS]:
        obj = app[key]
        where = f"{path}/{key}"
        if not APP_RE.match(key):
            out.append(f"{where}: should match the object name pattern")
        cls = obj.get("class") if isinstance(obj, dict) else None
        if cls not in checks:
            out.append(f"{where}/class: should be equal to one of the allowed values")
            continue
        _text(obj, where, out)
        checks[cls](obj, app, where, out)


def _monitor(m: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    if "monitorType" not in m:
        out.append(f"{path}: should have required property 'monitorType'")
    allowed = MONITOR_PROPS | (HTTPS_PROPS if m.get("monitorType") == "https" else set())
    for key in set(m) - allowed:
        out.append(f"{path}: should NOT have additional property '{key}'")
    if m.get("monitorType") not in ("http", "https", "tcp", "icmp", "tcp-half-open"):
        out.append(f"{path}/monitorType: should be equal to one of the allowed values")
    if m.get("monitorType") in ("http", "https"):
        for key in ("send", "receive"):  # required by AS3 3.29 and earlier; we always send them
            if not isinstance(m.get(key), str):
                out.append(f"{path}/{key}: should be string")
    _int(m, "interval", 0, 3600, path, out)
    _int(m, "timeout", 0, 900, path, out)
    _int(m, "targetPort", 0, 65535, path, out)
    _int(m, "upInterval", 0, 3600, path, out)
    _int(m, "timeUntilUp", 0, 1800, path, out)


def _pool(p: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    for key in set(p) - POOL_PROPS:
        out.append(f"{path}: should NOT have additional property '{key}'")
    if p.get("loadBalancingMode", "round-robin") not in LB_MODES:
        out.append(f"{path}/loadBalancingMode: should be equal to one of the allowed values")
    if p.get("serviceDownAction", "none") not in ("drop", "none", "reselect", "reset"):
        out.append(f"{path}/serviceDownAction: should be equal to one of the allowed values")
    _int(p, "slowRampTime", 0, 900, path, out)
    for i, mon in enumerate(p.get("monitors", [])):
        if isinstance(mon, str):
            if mon not in BUILTIN_MONITORS:
                out.append(f"{path}/monitors/{i}: should be equal to one of the allowed values")
        else:
            _pointer(mon, app, "Monitor", f"{path}/monitors/{i}", out)
    for i, member in enumerate(p.get("members", [])):
        _member(member, f"{path}/members/{i}", out)


def _member(m: Any, path: str, out: list[str]) -> None:
    if not isinstance(m, dict):
        out.append(f"{path}: should be object")
        return
    _int(m, "servicePort", 0, 65535, path, out, required=True)
    _int(m, "connectionLimit", 0, 2147483647, path, out)
    addresses, servers = m.get("serverAddresses"), m.get("servers")
    if addresses is None and servers is None and "bigip" not in m:
        out.append(f"{path}: should have required property 'serverAddresses'")
    for i, a in enumerate(addresses or []):
        if not _ip(a):
            out.append(f"{path}/serverAddresses/{i}: should match format \"f5ip\"")
    for i, s in enumerate(servers or []):
        if not isinstance(s, dict) or set(s) - {"name", "address"} or "address" not in s:
            out.append(f"{path}/servers/{i}: should have only 'name' and required 'address'")
            continue
        if not _ip(s["address"]):
            out.append(f"{path}/servers/{i}/address: should match format \"f5ip\"")
        if "name" in s and not (SERVER_NAME_RE.match(str(s["name"])) and len(s["name"]) <= 64):
            out.append(f"{path}/servers/{i}/name: should match the server name pattern")


def _service_tcp(s: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    _int(s, "virtualPort", 0, 65535, path, out, required=True)
    vas = s.get("virtualAddresses")
    if not isinstance(vas, list) or not vas:
        out.append(f"{path}: should have required property 'virtualAddresses'")
    else:
        for i, va in enumerate(vas):
            if not _ip(va):
                out.append(f"{path}/virtualAddresses/{i}: should match format \"f5ip\"")
    pool = s.get("pool")
    if isinstance(pool, str):
        _pointer({"use": pool}, app, "Pool", f"{path}/pool", out)
    elif pool is not None:
        _pointer(pool, app, "Pool", f"{path}/pool", out)
    prof = s.get("profileTCP")
    if isinstance(prof, str):
        if prof not in ("normal", "lan", "wan", "mobile"):
            out.append(f"{path}/profileTCP: should be equal to one of the allowed values")
    elif prof is not None:
        _pointer(prof, app, "TCP_Profile", f"{path}/profileTCP", out)
    if not isinstance(s.get("persistenceMethods", []), list):
        out.append(f"{path}/persistenceMethods: should be array")
    if isinstance(s.get("snat"), str) and s["snat"] not in ("none", "self", "auto"):
        out.append(f"{path}/snat: should be equal to one of the allowed values")


def _tcp_profile(p: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    if "idleTimeout" in p and p["idleTimeout"] != -1:
        _int(p, "idleTimeout", 1, 86400, path, out)


# ---------------------------------------------------------------- the stand-in BIG-IP


class FakeBigIp:
    """AS3 on 127.0.0.1: `faults` scripts per-request failures, `log` records every request."""

    def __init__(self, user: str = "admin", password: str = "", token: str = "",
                 version: str = "3.45.0", polls_in_progress: int = 1) -> None:
        self.user, self.password, self.token = user, password, token
        self.version = version
        self.installed = True
        self.polls_in_progress = polls_in_progress
        self.tenants: dict[str, Any] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.faults: list[str] = []  # "busy" (one 503), "tenant-fails" (deploy fails)
        self.up: dict[str, set[str]] = {}  # pool name -> nodes its monitor finds up
        self.log: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def authorized(self, headers: Any) -> bool:
        if self.token and headers.get("X-F5-Auth-Token") == self.token:
            return True
        basic = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return bool(self.password) and headers.get("Authorization") == f"Basic {basic}"

    def declare(self, decl: Any, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """What AS3 answers a POST /declare with (synchronous form)."""
        errors = as3_problems(decl, self.version)
        if errors:
            return 422, {"code": 422, "message": "declaration is invalid", "errors": errors,
                         "declarationFullId": ""}
        dry = query.get("controls.dryRun") == ["true"]
        debug = query.get("controls.logLevel") == ["debug"]
        results = []
        for t in [k for k in decl if k not in ADC_PROPS]:
            before = self.tenants.get(t)
            result: dict[str, Any] = {"code": 200, "host": "localhost", "tenant": t,
                                      "runTime": 812}
            if "tenant-fails" in self.faults and not dry:
                result.update(code=422, message="declaration failed",
                              response="01070734:3: Configuration error: Invalid monitor "
                                       "for pool member")
            elif before == decl[t]:
                result["message"] = "no change"
            else:
                result.update(message="success", lineCount=27)
                if dry:
                    result["dryRun"] = True
                    if debug:
                        result["changes"] = _changes(t, before, decl[t])
                else:
                    self.tenants[t] = decl[t]
            results.append(result)
        return 200, {"results": results, "declaration": {} if dry else decl}


def _changes(tenant: str, before: Any, after: dict[str, Any]) -> list[dict[str, Any]]:
    old = before or {}
    out = []
    for app, objs in after.items():
        if not isinstance(objs, dict):
            continue
        for name, obj in objs.items():
            if isinstance(obj, dict) and obj != (old.get(app) or {}).get(name):
                kind = "E" if name in (old.get(app) or {}) else "N"
                command = {"Monitor": "ltm monitor http", "Pool": "ltm pool",
                           "Service_TCP": "ltm virtual", "TCP_Profile": "ltm profile tcp"}
                out.append({"kind": kind, "path": [f"/{tenant}/{app}/{name}"],
                            "command": command.get(obj.get("class", ""), "?"), "tags": ["tmsh"]})
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeBigIp:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_GET

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        fake = self.fake
        with fake.lock:
            fake.log.append({"method": self.command, "path": url.path, "query": url.query,
                             "headers": dict(self.headers), "body": raw})
            if not fake.authorized(self.headers):
                return self.reply(401, {"code": 401, "message": "Authorization failed: no "
                                        "user authentication header or token detected",
                                        "kind": ":resterrorresponse"})
            if not fake.installed and url.path.startswith("/mgmt/shared/appsvcs"):
                return self.reply(404, {"code": 404, "message": "Public URI path not "
                                        "registered: /shared/appsvcs", "kind":
                                        ":resterrorresponse"})
            self._route(url.path, parse_qs(url.query), raw)

    def _route(self, path: str, query: dict[str, list[str]], raw: bytes) -> None:
        fake = self.fake
        if self.command == "GET" and path == "/mgmt/shared/appsvcs/info":
            return self.reply(200, {"version": fake.version, "release": "5",
                                    "schemaCurrent": fake.version, "schemaMinimum": "3.0.0"})
        if self.command == "GET" and path.startswith("/mgmt/shared/appsvcs/task/"):
            return self._task(path.rsplit("/", 1)[1])
        if self.command == "POST" and path == "/mgmt/shared/appsvcs/declare":
            return self._post(query, raw)
        stats = re.fullmatch(r"/mgmt/tm/ltm/pool/~([^~/]+)~([^~/]+)~([^~/]+)/members/stats",
                             path)
        if self.command == "GET" and stats:
            return self._pool_stats(*stats.groups())
        self.reply(404, {"code": 404, "message": f"Public URI path not registered: {path}"})

    def _post(self, query: dict[str, list[str]], raw: bytes) -> None:
        fake = self.fake
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/json":
            return self.reply(400, {"code": 400, "message": "Content-Type must be "
                                    "application/json"})
        if "busy" in fake.faults:
            fake.faults.remove("busy")
            return self.reply(503, {"code": 503, "message": "Error: Configuration operation "
                                    "in progress on device localhost, please try again in 2 "
                                    "minutes"})
        try:
            decl = json.loads(raw)
        except ValueError:
            return self.reply(422, {"code": 422, "message": "declaration is invalid",
                                    "errors": ["body is not JSON"]})
        status, body = fake.declare(decl, query)
        if query.get("async") != ["true"]:
            return self.reply(status, body)
        tid = str(uuid.uuid4())
        fake.tasks[tid] = {"polls": fake.polls_in_progress,
                           "results": body.get("results") or [body], "declaration":
                           body.get("declaration", {})}
        self.reply(202, {"id": tid, "results": [{"message": "Declaration successfully "
                         "submitted", "tenant": "", "host": "", "runTime": 0, "code": 0}],
                         "declaration": {},
                         "selfLink": f"https://localhost/mgmt/shared/appsvcs/task/{tid}"})

    def _pool_stats(self, tenant: str, app: str, pool: str) -> None:
        """iControl REST member stats of a deployed pool (one nestedStats entry per member)."""
        obj = ((self.fake.tenants.get(tenant) or {}).get(app) or {}).get(pool)
        if not isinstance(obj, dict) or obj.get("class") != "Pool":
            return self.reply(404, {"code": 404, "message": f"01020036:3: The requested Pool "
                                    f"(/{tenant}/{app}/{pool}) was not found."})
        up = self.fake.up.get(pool)
        entries = {}
        for member in obj["members"]:
            for i, server in enumerate(member["servers"]):
                on = (server["name"] in up) if up is not None else \
                    (i == 0) == (pool == "pool_primary")
                name = f"~{tenant}~{server['name']}:{member['servicePort']}"
                link = f"https://localhost/mgmt/tm/ltm/pool/~{tenant}~{app}~{pool}/members/{name}"
                entries[f"{link}/stats"] = {"nestedStats": {"entries": {
                    "addr": {"description": server["address"]},
                    "nodeName": {"description": f"/{tenant}/{server['name']}"},
                    "poolName": {"description": f"/{tenant}/{app}/{pool}"},
                    "port": {"value": member["servicePort"]},
                    "serverside.curConns": {"value": 3 if on else 0},
                    "monitorStatus": {"description": "up" if on else "down"},
                    "status.availabilityState": {"description": "available" if on else
                                                 "offline"},
                    "status.enabledState": {"description": "enabled"},
                    "status.statusReason": {"description": "Pool member is available" if on
                                            else "Pool member has been marked down by a "
                                            "monitor"}}}}
        self.reply(200, {"kind": "tm:ltm:pool:members:membersstats", "entries": entries})

    def _task(self, tid: str) -> None:
        task = self.fake.tasks.get(tid)
        if task is None:
            return self.reply(404, {"message": f"No record found with ID of {tid}"})
        if task["polls"] > 0:
            task["polls"] -= 1
            return self.reply(200, {"id": tid, "results": [
                {"message": "in progress", "tenant": "", "host": "", "runTime": 0, "code": 0}],
                "declaration": {}})
        self.reply(200, {"id": tid, "results": task["results"],
                         "declaration": task["declaration"]})
