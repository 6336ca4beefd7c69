"""Redaction of credentials in anything the tool prints or logs.

Two kinds: the user:password part of any URL (`https://user:pw@host/` -> `https://***@host/`),
and registered secret values (API tokens), replaced by `***` wherever they appear. The CLI's
error printer and the "pgha" logger (a logging.Filter installed by core.log.setup) pass every
line through `text()`, so a credential in --api-url, a cluster-file URL or an exception message
never reaches the terminal or a CI log.
"""

from __future__ import annotations

import logging
import re

_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<cred>[^/@\s]+)@")
_SECRETS: set[str] = set()
MIN_SECRET = 4  # shorter values would blank out ordinary words


def register(value: str) -> None:
    """Redact this value from now on (an API token read from the environment)."""
    if len(value) >= MIN_SECRET:
        _SECRETS.add(value)


def text(message: str) -> str:
    """message with URL credentials and registered secrets replaced by ***."""
    out = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}***@", message)
    for value in sorted(_SECRETS, key=len, reverse=True):
        out = out.replace(value, "***")
    return out


class Filter(logging.Filter):
    """Redacts each record's final message (arguments merged in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
