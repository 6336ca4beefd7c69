"""API base URLs given on the command line (a forge's API, a BIG-IP): checked before any
request. https only, except to this machine (loopback); no credentials in the URL; a host, a
closed IPv6 bracket and a port in 1-65535. Every failure is one PghaError line."""

from __future__ import annotations

import ipaddress
from urllib.parse import SplitResult, urlsplit

from builder.core.errors import PghaError


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return host == "localhost"


def api_url(url: str, what: str, creds_hint: str, example: str) -> SplitResult:
    """The parsed URL, or PghaError naming `what` (e.g. "the forge API URL")."""
    if any(ord(c) < 0x21 or ord(c) == 0x7f for c in url):
        raise PghaError(f"{what} has a space, a line break or a control character",
                        hint=f"e.g. {example}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PghaError(f"{what} {url[:80]!r} has a bad host or port ({exc})",
                        hint=f"e.g. {example}") from None
    if parts.username is not None or parts.password is not None:
        raise PghaError(f"{what} carries credentials", hint=creds_hint)
    if parts.scheme not in ("https", "http") or not parts.hostname or port == 0:
        raise PghaError(f"{what} {url[:80]!r} is not an https:// URL with a host",
                        hint=f"e.g. {example}")
    if parts.scheme == "http" and not loopback(parts.hostname):
        raise PghaError(f"refusing plain http for {what}: the credentials would travel "
                        "unencrypted (http is allowed to loopback only)", hint="use https://")
    return parts
