"""Releases and release assets on GitHub (and Enterprise) and on Gitea/Forgejo.

Boundary: the REST calls, as documented by each forge, behind one small interface (`Forge`):
find or create a release, list, upload (streamed), delete and rename assets. It decides
nothing: what to upload, skip or replace is builder.release.publish's job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from builder.core import urls
from builder.core.errors import EXIT_CONFIG, PghaError
from builder.core.httpclient import (
    CHUNK,
    Api,
    ApiError,
    FileBody,
    RetryPolicy,
    Token,
    multipart_body,
)

GITHUB_API = "https://api.github.com"
LABEL_PREFIX = "sha256:"  # asset label carrying the sha256 (GitHub without `digest`)
Progress = Callable[[int], None]


class UsageError(PghaError):
    exit_code = EXIT_CONFIG


@dataclass(frozen=True)
class Release:
    id: int
    tag: str
    html_url: str
    upload_url: str
    draft: bool
    body: str


@dataclass(frozen=True)
class RemoteAsset:
    id: int
    name: str
    size: int
    state: str  # "uploaded"; GitHub leaves "starter"/"new" after a failed upload
    sha256: str | None  # from `digest` (GitHub), or from our label; None: unknown
    download_url: str


class Forge:
    """The operations `pgha-build release` needs; one subclass per forge."""

    kind = "?"

    def __init__(self, api_url: str, repo: str, api: Api) -> None:
        self.api_url, self.repo, self.api = api_url.rstrip("/"), repo, api

    def url(self, path: str) -> str:
        return f"{self.api_url}/repos/{self.repo}{path}"

    def find_release(self, tag: str) -> Release | None:
        try:
            return self._release(self.api.request(
                "GET", self.url(f"/releases/tags/{quote(tag, safe='')}")).json())
        except ApiError as err:
            if err.status != 404:
                raise
        # Draft releases are not found by tag: look through the list.
        for page in range(1, 101):
            items = self.api.request("GET", self.url("/releases"),
                                     params={"per_page": "50", "page": str(page),
                                             "limit": "50"}).json()
            for item in items:
                if item.get("tag_name") == tag:
                    return self._release(item)
            if len(items) < 50:
                break
        return None

    def create_release(self, tag: str, notes: str, draft: bool, prerelease: bool) -> Release:
        data = {"tag_name": tag, "name": tag, "body": notes, "draft": draft,
                "prerelease": prerelease}
        return self._release(self.api.request("POST", self.url("/releases"), json=data,
                                               expect=(201,)).json())

    def update_notes(self, release: Release, notes: str) -> None:
        self.api.request("PATCH", self.url(f"/releases/{release.id}"), json={"body": notes})

    def list_assets(self, release: Release) -> list[RemoteAsset]:
        assets: list[RemoteAsset] = []
        for page in range(1, 101):
            items = self.api.request("GET", self.url(f"/releases/{release.id}/assets"),
                                     params={"per_page": "100", "page": str(page),
                                             "limit": "100"}).json()
            assets.extend(self._asset(a) for a in items)
            if len(items) < 100:
                break
        return assets

    def delete_asset(self, release: Release, asset: RemoteAsset) -> None:
        self.api.request("DELETE", self._asset_url(release, asset), expect=(204,))

    def rename_asset(self, release: Release, asset: RemoteAsset, name: str,
                     sha256: str) -> RemoteAsset:
        resp = self.api.request("PATCH", self._asset_url(release, asset),
                                json=self._rename_body(name, sha256), expect=(200, 201))
        return self._asset(resp.json())

    def download_sha256(self, asset: RemoteAsset) -> str:
        """Stream the asset and hash it (used when the forge gives no digest)."""
        resp = self.api.request("GET", asset.download_url, stream=True,
                                headers={"Accept": "application/octet-stream"})
        digest = hashlib.sha256()
        for chunk in resp.iter_content(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()

    def upload(self, release: Release, path: Path, name: str, content_type: str,
               sha256: str, progress: Progress | None) -> RemoteAsset:
        raise NotImplementedError

    def _asset_url(self, release: Release, asset: RemoteAsset) -> str:
        raise NotImplementedError

    def _rename_body(self, name: str, sha256: str) -> dict[str, str]:
        return {"name": name}

    def _release(self, data: dict[str, Any]) -> Release:
        return Release(id=int(data["id"]), tag=str(data.get("tag_name", "")),
                       html_url=str(data.get("html_url", "")),
                       upload_url=str(data.get("upload_url") or ""),
                       draft=bool(data.get("draft")), body=str(data.get("body") or ""))

    def _asset(self, data: dict[str, Any]) -> RemoteAsset:
        raise NotImplementedError


class GitHub(Forge):
    """GitHub and GitHub Enterprise Server (REST API, version 2022-11-28)."""

    kind = "github"

    def upload(self, release: Release, path: Path, name: str, content_type: str,
               sha256: str, progress: Progress | None) -> RemoteAsset:
        """POST the raw bytes to the release's upload_url (hypermedia), name and label."""
        url = re.sub(r"\{[^}]*\}$", "", release.upload_url)
        if not url:
            raise PghaError(f"release {release.tag} has no upload_url in the API response")
        resp = self.api.request(
            "POST", url, params={"name": name, "label": LABEL_PREFIX + sha256},
            body=lambda: FileBody(path, progress), expect=(201,),
            headers={"Content-Type": content_type})
        return self._asset(resp.json())

    def _asset_url(self, release: Release, asset: RemoteAsset) -> str:
        return self.url(f"/releases/assets/{asset.id}")

    def _rename_body(self, name: str, sha256: str) -> dict[str, str]:
        return {"name": name, "label": LABEL_PREFIX + sha256}

    def _asset(self, data: dict[str, Any]) -> RemoteAsset:
        digest = str(data.get("digest") or "")
        label = str(data.get("label") or "")
        sha = (digest.removeprefix("sha256:") if digest.startswith("sha256:")
               else label.removeprefix(LABEL_PREFIX) if label.startswith(LABEL_PREFIX) else None)
        return RemoteAsset(id=int(data["id"]), name=str(data["name"]), size=int(data["size"]),
                           state=str(data.get("state") or "uploaded"), sha256=sha,
                           download_url=str(data.get("url") or ""))


class Gitea(Forge):
    """Gitea and Forgejo (API v1): attachments are uploaded as multipart `attachment`."""

    kind = "gitea"

    def upload(self, release: Release, path: Path, name: str, content_type: str,
               sha256: str, progress: Progress | None) -> RemoteAsset:
        reader, ctype = multipart_body(path, "attachment", name, content_type, progress)
        resp = self.api.request(
            "POST", self.url(f"/releases/{release.id}/assets"), params={"name": name},
            body=lambda: reader, expect=(201,), headers={"Content-Type": ctype})
        return self._asset(resp.json())

    def _asset_url(self, release: Release, asset: RemoteAsset) -> str:
        return self.url(f"/releases/{release.id}/assets/{asset.id}")

    def _asset(self, data: dict[str, Any]) -> RemoteAsset:
        return RemoteAsset(id=int(data["id"]), name=str(data["name"]), size=int(data["size"]),
                           state="uploaded", sha256=None,
                           download_url=str(data.get("browser_download_url") or ""))


def _is_gitea_url(url: str) -> bool:
    return urlsplit(url).path.endswith("/api/v1")


def _github(url: str, repo: str, tok: Token, policy: RetryPolicy) -> Forge:
    api = Api(tok, "Bearer", "application/vnd.github+json",
              {"X-GitHub-Api-Version": "2022-11-28"}, policy=policy)
    return GitHub(url, repo, api)


def _gitea(url: str, repo: str, tok: Token, policy: RetryPolicy) -> Forge:
    if not _is_gitea_url(url):
        url += "/api/v1"
    return Gitea(url, repo, Api(tok, "token", "application/json", policy=policy))


@dataclass(frozen=True)
class ForgeKind:
    name: str
    help: str
    make: Callable[[str, str, Token, RetryPolicy], Forge]  # (api url, repo, token, policy)
    recognise: Callable[[str], bool]  # "auto" picks the first kind that recognises the URL


# Adding a forge is one entry here (the last one is auto's fallback); --forge follows.
TABLE: tuple[ForgeKind, ...] = (
    ForgeKind("gitea", "Gitea and Forgejo (API v1), recognised by a URL ending in /api/v1",
              _gitea, _is_gitea_url),
    ForgeKind("github", "GitHub and GitHub Enterprise", _github, lambda url: True),
)
BY_NAME = {k.name: k for k in TABLE}
CHOICES: tuple[str, ...] = ("auto", *sorted(BY_NAME))
if TYPE_CHECKING:
    ForgeName = str
else:
    ForgeName = Literal[CHOICES]


def cli_help() -> str:
    return ("API flavour: " + "; ".join(f"{k.name}: {k.help}" for k in TABLE)
            + "; auto: the first that recognises the URL.")


def connect(api_url: str | None, repo: str, token: str, forge: ForgeName,
            policy: RetryPolicy | None = None) -> Forge:
    """The client for this forge (a name in TABLE, or "auto": decided from the URL)."""
    url = (api_url or GITHUB_API).rstrip("/")
    urls.api_url(url, "the forge API URL", "pass the token in GITHUB_TOKEN or GH_TOKEN, never "
                 "in the URL", "https://git.example.net/api/v1")
    kind = (next(k for k in TABLE if k.recognise(url)) if forge == "auto"
            else BY_NAME[forge])
    return kind.make(url, repo, Token(token), policy or RetryPolicy())


_REMOTE_PATTERNS = [
    re.compile(r"^[\w.-]+@[\w.-]+:(?P<repo>[\w.-]+/[\w.-]+?)(\.git)?/?$"),  # git@host:o/r.git
    re.compile(r"^(https?|ssh|git)://[^/]+/(?P<repo>[\w.-]+/[\w.-]+?)(\.git)?/?$"),
]


def repo_from_remote(url: str) -> str | None:
    """owner/name from a git remote URL (scp-like, ssh://, https://), or None."""
    for pattern in _REMOTE_PATTERNS:
        match = pattern.match(url.strip())
        if match:
            return match.group("repo")
    return None


_REPO_PART = re.compile(r"[A-Za-z0-9_.-]{1,100}")


def check_repo(repo: str) -> str:
    """OWNER/NAME as forges spell them: ASCII letters, digits, `_.-`, never `.` or `..` (the
    name is put into API paths: `../..` would leave /repos/)."""
    parts = repo.split("/")
    if (len(parts) != 2 or not all(_REPO_PART.fullmatch(p) for p in parts)
            or any(set(p) == {"."} for p in parts)):
        raise UsageError(f"--repo {repo[:80]!r} is not of the form OWNER/NAME",
                         hint="e.g. --repo acme/pgha-cluster")
    return repo
