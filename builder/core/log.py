"""Logging setup and timed steps: one logger ("pgha"), levels set by -v/-q."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

from builder.core import redact

log = logging.getLogger("pgha")


def setup(verbosity: int) -> None:
    """verbosity: -1 quiet (warnings), 0 normal (info), 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(redact.Filter())  # URL credentials and tokens never reach the log
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Log a named step with its duration at debug level."""
    start = time.monotonic()
    log.debug("▶ %s", name)
    try:
        yield
    finally:
        log.debug("◀ %s (%.2fs)", name, time.monotonic() - start)
