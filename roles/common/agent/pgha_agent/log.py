"""Logging for the agent: stderr with a `pgha-firstboot:` prefix, plus syslog/journal.

Boundary: sets up the `pgha-firstboot` logger once. Other modules log through `LOG` and never
log file contents or environment values (seeds carry secrets).
"""

import logging
import logging.handlers
import os
import sys

NAME = "pgha-firstboot"
LOG = logging.getLogger(NAME)


class _StderrFormatter(logging.Formatter):
    def format(self, record):
        msg = record.getMessage()
        if record.levelno >= logging.ERROR:
            msg = "error: " + msg
        elif record.levelno >= logging.WARNING:
            msg = "warning: " + msg
        elif record.levelno <= logging.DEBUG:
            msg = "debug: " + msg
        if record.exc_info and LOG.isEnabledFor(logging.DEBUG):
            msg = msg + "\n" + self.formatException(record.exc_info)
        return "{}: {}".format(NAME, msg)


def _stderr_is_journal():
    """True when systemd connected stderr to the journal (then syslog would duplicate lines)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
        dev, ino = stream.split(":")
        return (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (ValueError, OSError, AttributeError):
        return False


def setup(verbose, live, devlog="/dev/log"):
    """Log to stderr; also to syslog when running on the real root and /dev/log exists."""
    LOG.handlers[:] = []
    LOG.propagate = False
    LOG.setLevel(logging.DEBUG if verbose else logging.INFO)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(_StderrFormatter())
    LOG.addHandler(err)
    if live and os.path.exists(devlog) and not _stderr_is_journal():
        try:
            sysl = logging.handlers.SysLogHandler(
                address=devlog, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        except OSError as exc:
            LOG.debug("syslog unavailable (%s): logging to stderr only", exc)
            return
        sysl.setFormatter(logging.Formatter(NAME + "[%(process)d]: %(message)s"))
        sysl.setLevel(logging.INFO)
        LOG.addHandler(sysl)
