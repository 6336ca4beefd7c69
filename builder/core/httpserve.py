"""A small read-only HTTP file server: URL prefixes mapped to folders, nothing else.

Used by `pgha-build serve` (kickstarts, the pgha repository, seeds, the PXE tree) and by the
image build (the pgha repository and a local install tree served to the installer VM, the way
Packer's http_directory works). GET and HEAD only; every request is logged; a path that leaves
its folder (`..`, an absolute path, a symlink pointing outside, a NUL byte) is refused with 403;
a mount may carry an access rule deciding by client address and path (seeds go only to their
own host). Stops cleanly: `serve_forever()` returns on Ctrl-C, `running()` on leaving the block.
"""

from __future__ import annotations

import contextlib
import http.server
import mimetypes
import shutil
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from builder.core.log import log

MAX_PATH = 1024  # longer request paths: 414
MAX_NAME = 255  # a longer path component cannot name a file: 404
IDLE_TIMEOUT = 30.0  # seconds a connection may sit idle (keep-alive) or stall mid-request

# (client address, path inside the mount, Authorization header or None) -> allowed?
AccessRule = Callable[[str, str, str | None], bool]


@dataclass(frozen=True)
class Mount:
    prefix: str  # URL path prefix, e.g. "/repo/"
    root: Path
    allow: AccessRule | None = None


def resolve(mounts: list[Mount], url_path: str) -> tuple[Mount, str, Path] | None | str:
    """Map a URL path to (mount, relative path, file); None if unmapped (or a name too long to
    exist); "forbidden" if unsafe; "too long" for a path over MAX_PATH characters."""
    if len(url_path) > MAX_PATH:
        return "too long"
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    if "\x00" in path or "\\" in path:
        return "forbidden"
    if any(len(part.encode()) > MAX_NAME for part in path.split("/")):
        return None
    for mount in sorted(mounts, key=lambda m: -len(m.prefix)):
        if not (path + "/").startswith(mount.prefix) and path != mount.prefix.rstrip("/"):
            continue
        rel = path[len(mount.prefix):] if path.startswith(mount.prefix) else ""
        parts = PurePosixPath(rel).parts
        if rel.startswith("/") or ".." in parts:
            return "forbidden"
        try:
            root = mount.root.resolve()
            target = (root / rel).resolve()
        except OSError:  # a loop of symlinks, a name the file system refuses
            return None
        if not target.is_relative_to(root):
            return "forbidden"  # a symlink that points out of the tree
        return mount, rel, target
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    server_version = "pgha-serve"
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT  # socket timeout: an idle or stalled connection is closed

    def setup(self) -> None:
        """TLS handshakes happen here, in the request's thread, bounded by the idle timeout
        (never in the accept loop, where one slow client would stall every other)."""
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def do_GET(self) -> None:
        self._send(body=True)

    def do_HEAD(self) -> None:
        self._send(body=False)

    def _refuse(self, code: int, why: str) -> None:
        self.send_error(code, why)

    def _send(self, body: bool) -> None:
        client = self.client_address[0]
        found = resolve(self.server.mounts, self.path)
        if found == "too long":
            return self._refuse(414, "path too long")
        if found == "forbidden":
            return self._refuse(403, "outside the served tree")
        if found is None or isinstance(found, str):
            return self._refuse(404, "not served")
        mount, rel, target = found
        if mount.allow is not None and not mount.allow(client, rel,
                                                       self.headers.get("Authorization")):
            return self._refuse(403, "not for this client")
        if target.is_dir():
            index = target / "index.html"
            if not index.is_file():
                return self._refuse(404, "directory listing is off")
            target = index
        if not target.is_file():
            return self._refuse(404, "no such file")
        self._send_file(target, body)

    def _send_file(self, target: Path, body: bool) -> None:
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(target.stat().st_size))
        self.end_headers()
        if body:
            with target.open("rb") as fh:
                shutil.copyfileobj(fh, self.wfile)

    def log_message(self, format: str, *args: object) -> None:
        text = (format % args).encode("ascii", "backslashreplace").decode()
        text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
        log.info("serve: %s %s", self.client_address[0], text[:300])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """A client that goes away mid-answer (or any other per-request failure): one log line,
        not socketserver's traceback on stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.info("serve: %s disconnected (%s)", client_address[0], type(exc).__name__)
        else:
            log.warning("serve: request from %s failed: %s: %s", client_address[0],
                        type(exc).__name__, exc)

    def __init__(self, bind: tuple[str, int], mounts: list[Mount],
                 tls: ssl.SSLContext | None = None) -> None:
        self.mounts = mounts
        self.scheme = "https" if tls else "http"
        super().__init__(bind, Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True,
                                          do_handshake_on_connect=False)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"{self.scheme}://{host}:{port}"


def serve_until_interrupted(server: Server, *others: Server) -> None:
    """Serve in the foreground until Ctrl-C (the `others` in threads), then close."""
    threads = [threading.Thread(target=o.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for o in others]
    for thread in threads:
        thread.start()
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log.info("serve: stopped")
    finally:
        for other in others:
            other.shutdown()
            other.server_close()
        server.server_close()


@contextlib.contextmanager
def running(bind: tuple[str, int], mounts: list[Mount],
            tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    """Serve in a background thread for the duration of the block."""
    server = Server(bind, mounts, tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              name="pgha-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
