"""HTTP for the forge APIs (and the BIG-IP's AS3 API): one session, retries, rate limits, streamed bodies, no token leaks.

Boundary: this module knows HTTP and the GitHub documented failure modes (5xx, dropped
connections, primary and secondary rate limits); it knows nothing about releases. Every error it
raises is a PghaError whose text has the token scrubbed out; the token is only ever placed in the
Authorization header, never in a URL, a log line or a message.
"""

from __future__ import annotations

import email.utils
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from builder import __version__
from builder.core.errors import PghaError
from builder.core.log import log

CHUNK = 1 << 20
RETRY_STATUSES = {500, 502, 503, 504}


class Token:
    """The API token; its repr and str never show the value."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Token(***)"

    __str__ = __repr__


class ApiError(PghaError):
    """The API answered with an error status."""

    def __init__(self, message: str, status: int, body: dict[str, Any] | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status
        self.body = body or {}


class RateLimited(ApiError):
    """A rate limit whose wait is longer than we are willing to sleep."""


class NetworkError(PghaError):
    """The server could not be reached, or kept dropping the connection."""


@dataclass
class RetryPolicy:
    attempts: int = 6
    backoff: float = 1.0  # first wait after a 5xx / dropped connection; doubles each time
    max_backoff: float = 60.0
    max_wait: float = 900.0  # longest rate-limit wait we sleep through before giving up
    timeout: float = 300.0
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time

    def backoff_for(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))


class FileBody:
    """A streamed request body: optional bytes before and after one file, with a known length.

    requests sends it chunk by chunk (Content-Length from __len__); `progress(done)` is called
    with the number of file bytes sent so far.
    """

    def __init__(self, path: Path, progress: Callable[[int], None] | None = None,
                 head: bytes = b"", tail: bytes = b"") -> None:
        self.path, self.head, self.tail = path, head, tail
        self.size = path.stat().st_size
        self.progress = progress

    def __len__(self) -> int:
        return len(self.head) + self.size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        if self.head:
            yield self.head
        done = 0
        with self.path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                done += len(chunk)
                if self.progress:
                    self.progress(done)
                yield chunk
        if done != self.size:
            raise OSError(f"{self.path} changed size while uploading")
        if self.tail:
            yield self.tail


def multipart_body(path: Path, field_name: str, filename: str, content_type: str,
                   progress: Callable[[int], None] | None = None) -> tuple[FileBody, str]:
    """A streamed multipart/form-data body with one file field; returns (body, Content-Type)."""
    boundary = f"pgha-{uuid.uuid4().hex}"
    quoted = filename.replace('"', "%22")
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field_name}\"; "
            f"filename=\"{quoted}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return FileBody(path, progress, head, tail), f"multipart/form-data; boundary={boundary}"


class TokenAuth(requests.auth.AuthBase):
    """Sets the Authorization header (or another auth header). Passed as `auth=`, so requests
    never replaces it with credentials from a ~/.netrc entry for the host (it would with a
    plain header)."""

    def __init__(self, value: str, header: str = "Authorization") -> None:
        self.value = value
        self.header = header

    def __call__(self, req: requests.PreparedRequest) -> requests.PreparedRequest:
        req.headers[self.header] = self.value
        return req


GITHUB_HINTS = {
    401: "the token is invalid or expired: set GITHUB_TOKEN or GH_TOKEN",
    403: "the token lacks permission: it needs contents: write on the repository",
    404: "check --repo and --api-url, and that the token can see the repository",
}


@dataclass
class Api:
    """One authenticated session against a forge API, with the retry policy applied."""

    token: Token
    auth_scheme: str  # "Bearer" (GitHub), "token" (Gitea/Forgejo), "Basic", "" (bare value)
    accept: str
    extra_headers: dict[str, str] = field(default_factory=dict)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    session: requests.Session = field(default_factory=requests.Session)
    auth_header: str = "Authorization"
    hints: dict[int, str] = field(default_factory=lambda: dict(GITHUB_HINTS))

    def redact(self, text: str) -> str:
        return text.replace(self.token.value, "***") if self.token.value else text

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        hdrs = {"Accept": self.accept, "User-Agent": f"pgha-build/{__version__}"}
        hdrs.update(self.extra_headers)
        hdrs.update(extra or {})
        return hdrs

    def request(self, method: str, url: str, *, expect: tuple[int, ...] = (200,),
                json: Any = None, params: dict[str, str] | None = None,
                body: Callable[[], FileBody] | None = None,
                headers: dict[str, str] | None = None, stream: bool = False) -> requests.Response:
        """Send with retries; return the response if its status is in `expect`, else raise."""
        what = f"{method} {_short(url)}"
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self.session.request(
                    method, url, json=json, params=params, data=body() if body else None,
                    headers=self.headers(headers), timeout=self.policy.timeout, stream=stream,
                    auth=TokenAuth(f"{self.auth_scheme} {self.token.value}".lstrip(),
                                   self.auth_header))
            except (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                self._retry_or_raise(attempt, what, exc)
                continue
            if resp.status_code in expect:
                return resp
            self._after_failure(resp, attempt, what)

    def _retry_or_raise(self, attempt: int, what: str, exc: Exception) -> None:
        reason = self.redact(f"{type(exc).__name__}: {exc}".splitlines()[0])[:200]
        if attempt >= self.policy.attempts:
            raise NetworkError(f"{what} failed after {attempt} attempts: {reason}",
                               hint="check the network and --api-url, then re-run "
                                    "(uploads already done are skipped)") from None
        self._sleep(self.policy.backoff_for(attempt), f"connection problem on {what} ({reason})")

    def _after_failure(self, resp: requests.Response, attempt: int, what: str) -> None:
        waited = self._wait_for(resp, attempt)
        if waited is None or attempt >= self.policy.attempts:
            raise self.error(resp, what)
        seconds, reason = waited
        if seconds > self.policy.max_wait:
            raise RateLimited(
                f"{what}: {reason}; that is {seconds:.0f}s away, longer than the "
                f"{self.policy.max_wait:.0f}s we wait", resp.status_code, _json(resp),
                hint="re-run after the reset (finished uploads are skipped), or use another "
                     "token")
        self._sleep(seconds, f"{reason} on {what}")

    def _wait_for(self, resp: requests.Response, attempt: int) -> tuple[float, str] | None:
        """How long to wait before retrying this response, and why; None: do not retry."""
        status, hdrs = resp.status_code, resp.headers
        if status in (403, 429):
            retry_after = _seconds(hdrs.get("retry-after"), self.policy.now())
            if retry_after is not None:
                return max(retry_after, 1.0), f"secondary rate limit (Retry-After {retry_after:.0f}s)"
            if hdrs.get("x-ratelimit-remaining") == "0" and hdrs.get("x-ratelimit-reset"):
                reset = float(hdrs["x-ratelimit-reset"])
                stamp = time.strftime("%H:%M:%S UTC", time.gmtime(reset))
                why = f"primary rate limit reached (resets at {stamp})"
                return max(reset - self.policy.now(), 1.0), why
            message = str(_json(resp).get("message", "")).lower()
            if status == 429 or "rate limit" in message:
                wait = max(60.0, self.policy.backoff_for(attempt))
                return wait, "secondary rate limit (no Retry-After; waiting at least a minute)"
            return None
        if status in RETRY_STATUSES:
            return self.policy.backoff_for(attempt), f"server error {status}"
        return None

    def _sleep(self, seconds: float, reason: str) -> None:
        log.warning("waiting %.0fs: %s", seconds, reason)
        self.policy.sleep(seconds)

    def error(self, resp: requests.Response, what: str) -> ApiError:
        body = _json(resp)
        detail = str(body.get("message") or resp.reason or "").strip()
        codes = [e.get("code") for e in body.get("errors") or [] if isinstance(e, dict)]
        if codes:
            detail += f" ({', '.join(str(c) for c in codes)})"
        hint = self.hints.get(resp.status_code)
        return ApiError(self.redact(f"{what} returned HTTP {resp.status_code}: {detail}"),
                        resp.status_code, body, hint=hint)


def _json(resp: requests.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _seconds(value: str | None, now: float) -> float | None:
    """Retry-After as seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError):
        return None


def _short(url: str) -> str:
    """host[:port]/path, without any user:password@ part."""
    parts = urlsplit(url)
    return f"{parts.netloc.rpartition('@')[2]}{parts.path}"
