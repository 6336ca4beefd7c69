"""`pgha-build f5 --apply URL`: send the declaration to a BIG-IP's AS3 endpoint.

Follows AS3's documented API: `GET /mgmt/shared/appsvcs/info` first (is AS3 there, is it new
enough for our schemaVersion), then `POST /mgmt/shared/appsvcs/declare?async=true` (with
`controls.dryRun=true` unless the user said --yes), answered 202 with a task id, then
`GET /mgmt/shared/appsvcs/task/<id>` until every result's code is no longer 0 ("in progress").
Results are per tenant: 200 success / no change, 422 "declaration failed" with the BIG-IP's
`response`, or "declaration is invalid" with one `errors` line per object. A 503 (another
declaration in progress) is retried by the HTTP client.

Credentials come only from the environment (PGHA_F5_USER + PGHA_F5_PASSWORD for Basic auth, or
PGHA_F5_TOKEN for an X-F5-Auth-Token), never from arguments, and are never printed: the HTTP
client scrubs them from every message.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from builder.core import urls
from builder.core.errors import PghaError
from builder.core.httpclient import Api, ApiError, NetworkError, RetryPolicy, Token
from builder.stages.f5as3 import SCHEMA_VERSION

ENV_USER, ENV_PASSWORD, ENV_TOKEN = "PGHA_F5_USER", "PGHA_F5_PASSWORD", "PGHA_F5_TOKEN"
INFO = "/mgmt/shared/appsvcs/info"
DECLARE = "/mgmt/shared/appsvcs/declare"
TASK = "/mgmt/shared/appsvcs/task/"
HINTS = {
    401: f"the BIG-IP refused the credentials: check {ENV_USER}/{ENV_PASSWORD} (a local "
         f"administrator) or {ENV_TOKEN}",
    403: "the BIG-IP user lacks permission: AS3 needs an Administrator",
    404: "AS3 is not installed on this BIG-IP: install the f5-appsvcs RPM (iApps > Package "
         "Management LX), or apply tmsh.txt instead",
}


def api_from_env(env: Mapping[str, str], verify: bool | str = True,
                 policy: RetryPolicy | None = None) -> Api:
    """An Api carrying the BIG-IP credentials from the environment."""
    token, user, password = env.get(ENV_TOKEN), env.get(ENV_USER), env.get(ENV_PASSWORD)
    for name, value in ((ENV_TOKEN, token), (ENV_USER, user), (ENV_PASSWORD, password)):
        if value is not None and any(ch in value for ch in "\r\n\0"):
            raise PghaError(f"{name} holds a line break or NUL", hint=f"set {name} again")
    session = requests.Session()
    session.verify = verify
    common: dict[str, Any] = {"accept": "application/json", "session": session,
                              "hints": dict(HINTS),
                              "policy": policy or RetryPolicy(attempts=4, backoff=2, timeout=60)}
    if token:
        return Api(Token(token), "", auth_header="X-F5-Auth-Token", **common)
    if not user or not password:
        raise PghaError(f"no BIG-IP credentials: set {ENV_USER} and {ENV_PASSWORD} (or "
                        f"{ENV_TOKEN}) in the environment",
                        hint="credentials are read from the environment only, never from "
                             "arguments")
    if ":" in user:
        raise PghaError(f"{ENV_USER} contains ':', which Basic auth cannot carry")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Api(Token(basic), "Basic", **common)


def base_url(url: str) -> str:
    """https://host[:port] of the BIG-IP management interface (http only to loopback)."""
    parts = urls.api_url(url, "the BIG-IP URL",
                         f"put them in {ENV_USER}/{ENV_PASSWORD} instead, never in the URL",
                         "https://bigip.example.net")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise PghaError(f"give the BIG-IP's address only, not a path: {url!r}",
                        hint="e.g. https://bigip.example.net:8443")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Outcome:
    """What AS3 said, ready to print: one line per tenant result, one per object error."""

    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class As3Client:
    url: str
    api: Api
    wait_s: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def info(self) -> dict[str, Any]:
        """AS3's version; refuses one older than the declaration's schemaVersion."""
        data = self._json(self.api.request("GET", self.url + INFO), "GET info")
        current = str(data.get("schemaCurrent") or data.get("version") or "")
        if current and _version(current) < _version(SCHEMA_VERSION):
            raise PghaError(f"AS3 {data.get('version')} on the BIG-IP accepts schemas up to "
                            f"{current}; the declaration needs {SCHEMA_VERSION}",
                            hint="upgrade AS3 (f5-appsvcs RPM), or apply tmsh.txt instead")
        return data

    def declare(self, decl: dict[str, Any], dry_run: bool) -> list[dict[str, Any]]:
        """POST the declaration asynchronously and return the finished per-tenant results."""
        params = {"async": "true"}
        if dry_run:
            params.update({"controls.dryRun": "true", "controls.logLevel": "debug"})
        resp = self.api.request("POST", self.url + DECLARE, json=decl, params=params,
                                expect=(200, 202, 422))
        body = self._json(resp, "POST declare")
        if resp.status_code == 202 and body.get("id"):
            return self.wait(str(body["id"]))
        return _results(body)

    def wait(self, task_id: str) -> list[dict[str, Any]]:
        deadline = self.clock() + self.wait_s
        delay = 0.25
        while True:
            resp = self.api.request("GET", self.url + TASK + task_id)
            results = _results(self._json(resp, "GET task"))
            if results and all(r.get("code") not in (0, None) for r in results):
                return results
            if self.clock() > deadline:
                raise PghaError(f"AS3 task {task_id} still in progress after "
                                f"{self.wait_s:.0f} s", hint=f"see GET {TASK}{task_id} on "
                                "the BIG-IP (the declaration may still be applied)")
            self.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _json(resp: requests.Response, what: str) -> dict[str, Any]:
        try:
            data = resp.json()
        except ValueError:
            raise PghaError(f"{what}: the BIG-IP answered HTTP {resp.status_code} without "
                            "JSON", hint="is this the BIG-IP's management address?") from None
        if not isinstance(data, dict):
            raise PghaError(f"{what}: unexpected answer from AS3 (not a JSON object)")
        return data


def _results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-tenant results of an answer; a bare error answer becomes one result."""
    results = body.get("results")
    if isinstance(results, list):
        return [r for r in results if isinstance(r, dict)]
    if "code" in body or "errors" in body:
        return [body]
    return []


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("-")[0].split(".")[:3]:
        parts.append(int(piece) if piece.isdigit() else 0)
    return tuple(parts)


def summarize(results: list[dict[str, Any]], dry_run: bool) -> Outcome:
    out = Outcome()
    if not results:
        out.errors.append("AS3 returned no result")
    for r in results:
        code, message = r.get("code"), str(r.get("message", ""))
        tenant = r.get("tenant") or "(declaration)"
        for err in r.get("errors") or []:
            out.errors.append(f"{err}")
        if code == 200:
            changes = [c for c in r.get("changes") or [] if isinstance(c, dict)]
            count = f", {len(changes)} change(s)" if changes else ""
            what = " (dry-run: nothing changed on the BIG-IP)" if dry_run else ""
            out.lines.append(f"tenant {tenant}: {message}{count}{what}")
            out.lines.extend(f"  {_change(c)}" for c in changes)
        else:
            detail = r.get("response") or ""
            out.errors.append(f"tenant {tenant}: {message} (code {code})"
                              + (f": {detail}" if detail else ""))
    return out


def _change(c: dict[str, Any]) -> str:
    kinds = {"N": "create", "D": "delete", "E": "modify", "A": "modify"}
    path = c.get("path") or []
    where = str(path[0]) if path else "?"
    return f"{kinds.get(str(c.get('kind')), str(c.get('kind')))} {c.get('command', '')} " \
           f"{where}".replace("  ", " ")


def apply(base: str, api: Api, decl: dict[str, Any], dry_run: bool, wait_s: float = 300.0,
          sleep: Callable[[float], None] = time.sleep) -> Outcome:
    """Check AS3, send the declaration (dry-run unless told), wait, and summarize.

    `base` comes from base_url() and `api` from api_from_env(): both checked before any work.
    """
    cli = As3Client(base, api, wait_s=wait_s, sleep=sleep)
    try:
        cli.info()
        results = cli.declare(decl, dry_run)
    except ApiError as exc:
        raise PghaError(exc.message, hint=exc.hint) from None
    except NetworkError as exc:
        if "SSLError" in exc.message:
            raise PghaError(f"TLS verification of {base} failed",
                            hint="pass --ca-file with the BIG-IP's CA (or device) certificate, "
                                 "or --insecure on a lab BIG-IP") from None
        raise PghaError(exc.message, hint="check the BIG-IP's address and that this machine "
                        "reaches its management port") from None
    return summarize(results, dry_run)
