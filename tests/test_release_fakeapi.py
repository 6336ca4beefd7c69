"""A local forge API on 127.0.0.1 that behaves like the documented GitHub REST API (releases,
release assets, upload host) or Gitea/Forgejo's (multipart `attachment`), for the release tests.

Strict like the real thing: exact Authorization and Accept, Content-Type and Content-Length on
uploads (no chunked bodies), 422 `already_exists` for a duplicate asset name, 404 for an unknown
tag or repository. Faults are scripted per request: 5xx, primary and secondary rate limits with
their headers, a connection dropped mid-upload (leaving a `starter` asset, as GitHub may).
Every request is logged with the asset names present at that moment.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

REPO = "acme/pgha"
TOKEN = "ghp_TESTtoken_do_not_print_0123456789"


class FakeForge:
    def __init__(self, mode: str = "github") -> None:
        self.mode = mode
        self.releases: dict[int, dict[str, Any]] = {}
        self.assets: dict[int, dict[str, Any]] = {}
        self.faults: list[tuple[str, str, dict[str, Any]]] = []
        self.log: list[dict[str, Any]] = []
        self.expose_digest = True
        self.next_id = 1
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.fake = self  # type: ignore[attr-defined]
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def api_url(self) -> str:
        return self.base + ("/api/v3" if self.mode == "github" else "/api/v1")

    def fault(self, method: str, path_regex: str, **kind: Any) -> None:
        self.faults.append((method, path_regex, kind))

    def writes(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["method"] not in ("GET", "HEAD")]

    def names(self, state: str | None = "uploaded") -> list[str]:
        return sorted(a["name"] for a in self.assets.values()
                      if state is None or a["state"] == state)

    def add_release(self, tag: str, draft: bool = False) -> dict[str, Any]:
        rid = self._id()
        rel = {"id": rid, "tag_name": tag, "name": tag, "draft": draft, "prerelease": False,
               "body": "", "html_url": f"{self.base}/{REPO}/releases/tag/{tag}",
               "upload_url": f"{self.base}/uploads/repos/{REPO}/releases/{rid}/assets"
                             "{?name,label}"}
        self.releases[rid] = rel
        return rel

    def add_asset(self, rid: int, name: str, data: bytes, label: str = "",
                  state: str = "uploaded") -> dict[str, Any]:
        aid = self._id()
        asset = {"id": aid, "release": rid, "name": name, "label": label, "state": state,
                 "data": data, "content_type": "application/octet-stream",
                 "uuid": uuid.uuid4().hex}
        self.assets[aid] = asset
        return asset

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def asset_json(self, a: dict[str, Any]) -> dict[str, Any]:
        if self.mode == "gitea":
            return {"id": a["id"], "name": a["name"], "size": len(a["data"]),
                    "uuid": a["uuid"], "browser_download_url": f"{self.base}/attachments/"
                                                              f"{a['uuid']}"}
        out = {"id": a["id"], "name": a["name"], "label": a["label"], "state": a["state"],
               "size": len(a["data"]), "content_type": a["content_type"],
               "url": f"{self.api_url}/repos/{REPO}/releases/assets/{a['id']}"}
        if self.expose_digest:
            out["digest"] = "sha256:" + hashlib.sha256(a["data"]).hexdigest()
        return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def fake(self) -> FakeForge:
        return self.server.fake  # type: ignore[attr-defined,no-any-return]

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PATCH = do_DELETE = do_GET

    def reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
              raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if raw is None and body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.status = status

    def _dispatch(self) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        self.route, self.query = unquote(parts.path), parse_qs(parts.query)
        self.status = 0
        with fake.lock:
            entry = {"method": self.command, "path": self.route, "query": parts.query,
                     "names": fake.names(),
                     "headers": dict(self.headers)}
            fake.log.append(entry)
            if not self._strict():
                pass
            elif not self._fault():
                try:
                    (_github if fake.mode == "github" else _gitea)(self)
                except _Dropped:
                    return
            entry["status"] = self.status

    def _strict(self) -> bool:
        fake = self.fake
        if self.route.startswith("/attachments/"):
            return True
        scheme = "Bearer" if fake.mode == "github" else "token"
        if self.headers.get("Authorization") != f"{scheme} {TOKEN}":
            self.reply(401, {"message": "Bad credentials"})
            return False
        accept = "application/vnd.github+json" if fake.mode == "github" else "application/json"
        wanted = (accept, "application/octet-stream")
        if self.headers.get("Accept") not in wanted:
            self.reply(415, {"message": f"Accept must be {accept}"})
            return False
        if self.command in ("POST", "PATCH") and self.headers.get("Transfer-Encoding"):
            self.reply(411, {"message": "chunked bodies are not accepted"})
            return False
        if self.command in ("POST", "PATCH") and self.headers.get("Content-Length") is None:
            self.reply(411, {"message": "Length Required"})
            return False
        return True

    def _fault(self) -> bool:
        fake = self.fake
        for i, (method, regex, kind) in enumerate(fake.faults):
            if method == self.command and re.search(regex, self.route):
                del fake.faults[i]
                _apply_fault(self, kind)
                return True
        return False

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers["Content-Length"]))

    def json_body(self) -> Any:
        return json.loads(self.body() or b"null")


class _Dropped(Exception):
    pass


def _apply_fault(h: _Handler, kind: dict[str, Any]) -> None:
    if "drop" not in kind and h.headers.get("Content-Length"):
        h.body()  # keep the connection usable for the retry
    if "status" in kind:
        h.reply(kind["status"], {"message": "Server Error"})
    elif "primary" in kind:
        h.reply(403, {"message": "API rate limit exceeded for user ID 1."},
                {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0",
                 "x-ratelimit-used": "5000",
                 "x-ratelimit-reset": str(int(time.time() + kind["primary"]))})
    elif "secondary" in kind:
        h.reply(kind.get("code", 429), {"message": "You have exceeded a secondary rate limit."},
                {"retry-after": str(kind["secondary"])})
    elif "drop" in kind:
        length = int(h.headers.get("Content-Length") or 0)
        h.rfile.read(length // 2)
        m = re.search(r"/releases/(\d+)/assets$", h.route)
        if m and kind.get("starter") and h.fake.mode == "github":
            h.fake.add_asset(int(m.group(1)), h.query["name"][0], b"", state="starter")
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _Dropped


def _github(h: _Handler) -> None:
    fake, route, cmd = h.fake, h.route, h.command
    repo_prefix = f"/api/v3/repos/{REPO}"
    m = re.fullmatch(rf"/uploads/repos/{REPO}/releases/(\d+)/assets", route)
    if m and cmd == "POST":
        return _gh_upload(h, int(m.group(1)))
    if not route.startswith(repo_prefix + "/"):
        return h.reply(404, {"message": "Not Found"})
    rest = route[len(repo_prefix):]
    if m := re.fullmatch(r"/releases/tags/(.+)", rest):
        found = [r for r in fake.releases.values() if r["tag_name"] == m.group(1)
                 and not r["draft"]]
        return h.reply(200, found[0]) if found else h.reply(404, {"message": "Not Found"})
    if rest == "/releases" and cmd == "GET":
        return h.reply(200, _page(h, list(fake.releases.values())))
    if rest == "/releases" and cmd == "POST":
        return _create_release(h)
    if (m := re.fullmatch(r"/releases/(\d+)", rest)) and cmd == "PATCH":
        fake.releases[int(m.group(1))].update(h.json_body())
        return h.reply(200, fake.releases[int(m.group(1))])
    if (m := re.fullmatch(r"/releases/(\d+)/assets", rest)) and cmd == "GET":
        items = [fake.asset_json(a) for a in fake.assets.values()
                 if a["release"] == int(m.group(1))]
        return h.reply(200, _page(h, items))
    if m := re.fullmatch(r"/releases/assets/(\d+)", rest):
        return _asset_op(h, int(m.group(1)))
    h.reply(404, {"message": "Not Found"})


def _page(h: _Handler, items: list[Any]) -> list[Any]:
    per = int(h.query.get("per_page", ["30"])[0])
    page = int(h.query.get("page", ["1"])[0])
    return items[(page - 1) * per: page * per]


def _create_release(h: _Handler) -> None:
    if h.headers.get("Content-Type") != "application/json":
        return h.reply(415, {"message": "Content-Type must be application/json"})
    data = h.json_body()
    if any(r["tag_name"] == data["tag_name"] for r in h.fake.releases.values()):
        return h.reply(422, {"message": "Validation Failed", "errors": [
            {"resource": "Release", "code": "already_exists", "field": "tag_name"}]})
    rel = h.fake.add_release(data["tag_name"], bool(data.get("draft")))
    rel.update(body=data.get("body", ""), prerelease=bool(data.get("prerelease")))
    h.reply(201, rel)


def _gh_upload(h: _Handler, rid: int) -> None:
    fake = h.fake
    ctype = h.headers.get("Content-Type")
    data = h.body()
    if not ctype:
        return h.reply(400, {"message": "Content-Type required"})
    if rid not in fake.releases or "name" not in h.query:
        return h.reply(404 if rid not in fake.releases else 422, {"message": "bad upload"})
    name = h.query["name"][0]
    if any(a["name"] == name and a["release"] == rid for a in fake.assets.values()):
        return h.reply(422, {"message": "Validation Failed", "errors": [
            {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]})
    asset = fake.add_asset(rid, name, data, h.query.get("label", [""])[0])
    asset["content_type"] = ctype
    h.reply(201, fake.asset_json(asset))


def _asset_op(h: _Handler, aid: int) -> None:
    fake = h.fake
    asset = fake.assets.get(aid)
    if asset is None:
        return h.reply(404, {"message": "Not Found"})
    if h.command == "DELETE":
        del fake.assets[aid]
        return h.reply(204)
    if h.command == "GET":
        if h.headers.get("Accept") == "application/octet-stream":
            return h.reply(200, raw=asset["data"])
        return h.reply(200, fake.asset_json(asset))
    data = h.json_body()
    if any(a["name"] == data.get("name") and a["release"] == asset["release"] and a is not asset
           for a in fake.assets.values()):
        return h.reply(422, {"message": "Validation Failed", "errors": [
            {"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]})
    asset.update({k: v for k, v in data.items() if k in ("name", "label")})
    h.reply(200, fake.asset_json(asset))


def _gitea(h: _Handler) -> None:
    fake, route, cmd = h.fake, h.route, h.command
    if m := re.fullmatch(r"/attachments/(\w+)", route):
        found = [a for a in fake.assets.values() if a["uuid"] == m.group(1)]
        return h.reply(200, raw=found[0]["data"]) if found else h.reply(404, {})
    prefix = f"/api/v1/repos/{REPO}"
    if not route.startswith(prefix + "/"):
        return h.reply(404, {"message": "Not Found"})
    rest = route[len(prefix):]
    if m := re.fullmatch(r"/releases/tags/(.+)", rest):
        found = [r for r in fake.releases.values() if r["tag_name"] == m.group(1)]
        return h.reply(200, found[0]) if found else h.reply(404, {"message": "Not Found"})
    if rest == "/releases":
        return h.reply(200, list(fake.releases.values())) if cmd == "GET" else _create_release(h)
    if (m := re.fullmatch(r"/releases/(\d+)/assets", rest)) and cmd == "GET":
        return h.reply(200, [fake.asset_json(a) for a in fake.assets.values()
                             if a["release"] == int(m.group(1))])
    if (m := re.fullmatch(r"/releases/(\d+)/assets", rest)) and cmd == "POST":
        return _gitea_upload(h, int(m.group(1)))
    if m := re.fullmatch(r"/releases/(\d+)/assets/(\d+)", rest):
        return _asset_op(h, int(m.group(2)))
    h.reply(404, {"message": "Not Found"})


def _gitea_upload(h: _Handler, rid: int) -> None:
    ctype = h.headers.get("Content-Type", "")
    m = re.fullmatch(r"multipart/form-data; boundary=(\S+)", ctype)
    data = h.body()
    if not m:
        return h.reply(400, {"message": "expected multipart/form-data"})
    sep = b"--" + m.group(1).encode()
    parts = [p for p in data.split(sep) if p not in (b"", b"--\r\n")]
    for part in parts:
        head, _, content = part.partition(b"\r\n\r\n")
        if b'name="attachment"' in head:
            name = h.query.get("name", [""])[0]
            asset = h.fake.add_asset(rid, name, content.removesuffix(b"\r\n"))
            return h.reply(201, h.fake.asset_json(asset))
    h.reply(400, {"message": "no attachment field"})


@pytest.fixture
def fake_github() -> Iterator[FakeForge]:
    fake = FakeForge("github")
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def fake_gitea() -> Iterator[FakeForge]:
    fake = FakeForge("gitea")
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


# The fake itself is strict: these pin down the behaviour the release tests rely on.

def test_fake_rejects_wrong_token_and_accept(fake_github: FakeForge) -> None:
    url = f"{fake_github.api_url}/repos/{REPO}/releases"
    assert requests.get(url, timeout=5).status_code == 401
    bad = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/html"}
    assert requests.get(url, headers=bad, timeout=5).status_code == 415


def test_fake_rejects_chunked_upload_and_duplicate(fake_github: FakeForge) -> None:
    rel = fake_github.add_release("v1")
    url = f"{fake_github.base}/uploads/repos/{REPO}/releases/{rel['id']}/assets"
    hdrs = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/vnd.github+json",
            "Content-Type": "text/plain"}
    chunked = requests.post(url, params={"name": "a"}, data=iter([b"x"]), headers=hdrs,
                            timeout=5)
    assert chunked.status_code == 411
    assert requests.post(url, params={"name": "a"}, data=b"x", headers=hdrs,
                         timeout=5).status_code == 201
    dup = requests.post(url, params={"name": "a"}, data=b"x", headers=hdrs, timeout=5)
    assert dup.status_code == 422 and dup.json()["errors"][0]["code"] == "already_exists"
