"""A stand-in BIG-IP on 127.0.0.1: AS3's REST API and iControl REST pool member statistics.

`FakeBigIp` behaves like AS3's documented REST API (docs/openapi.yaml and the API reference of
F5Networks/f5-appsvcs-extension): Basic or X-F5-Auth-Token auth (401 otherwise), JSON only,
GET /info, POST /declare with `async=true` (202 + task id; the task says "in progress" with
code 0 for a few polls), `controls.dryRun=true` (results with dryRun: true, and `changes` with
controls.logLevel=debug), 422 "declaration is invalid" with one error per object (the checks
of tests/f5_as3.py), per-tenant "success" / "no change" / "declaration failed", 503 while
another declaration is in progress, 404 for an unknown task; and
GET /mgmt/tm/ltm/pool/~T~A~P/members/stats for a deployed pool.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from f5_as3 import ADC_PROPS, as3_problems


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
