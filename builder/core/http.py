"""One small HTTPS/HTTP JSON client (stdlib) for Patroni's REST API and HAProxy's stats page:
the lab's checks and `pgha-build config`/`restart` on a real cluster use it alike.

Never through a proxy from the environment: requests go straight to the cluster's addresses.
Servers are verified against the cluster CA (tls_context); changes present the operator's
client certificate.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def tls_context(cafile: str, certfile: str | None = None,
                keyfile: str | None = None) -> ssl.SSLContext:
    """Verify servers against the cluster CA (and their name); present a client certificate."""
    context = ssl.create_default_context(cafile=cafile)
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    return context


def http(method: str, url: str, auth: tuple[str, str] | None = None,
         body: dict[str, Any] | None = None, timeout: float = 3,
         context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or text). Connection errors -> (0, str).
    HTTPS URLs need `context` (the cluster CA, see tls_context)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    opener = _OPENER if context is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, _decode(err.read())
    except (OSError, TimeoutError) as err:
        return 0, str(err)


def _decode(raw: bytes) -> Any:
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
