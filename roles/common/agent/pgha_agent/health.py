"""Health checks from the seed (tcp connect, http status, the cluster able to fail over) and
waiting for them.

Boundary: probes and waits; it starts nothing. `wait` polls every check of one service until all
pass or the timeout expires, calling `alive()` between rounds so a service that died fails fast
instead of waiting out the timeout.
"""

import socket
import ssl
import time
import urllib.error
import urllib.request

from pgha_agent import readiness
from pgha_agent.errors import ServiceFailed
from pgha_agent.log import LOG

PROGRESS_EVERY = 30.0


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def under_root(checks, root):
    """The checks with their TLS file paths (cafile, certfile, keyfile: node paths) made host
    paths under the agent's --root."""
    out = []
    for check in checks:
        check = dict(check)
        for key in ("cafile", "certfile", "keyfile"):
            if check.get(key):
                check[key] = root.path(check[key])
        out.append(check)
    return out


def _tls_context(check):
    """Verify the service against the cluster CA (and its name: the URL's address is in its
    certificate); present a client certificate when the check names one."""
    if not check["url"].startswith("https:"):
        return None
    context = ssl.create_default_context(cafile=check.get("cafile"))
    if check.get("certfile"):
        context.load_cert_chain(check["certfile"], check.get("keyfile"))
    return context


def describe(check):
    if check["kind"] == "tcp":
        return "tcp {}:{}".format(check["host"], check["port"])
    if check["kind"] == "failover":
        return "the cluster able to fail over (Patroni {})".format(check["url"])
    return "http {} (expect {})".format(check["url"], ",".join(
        str(c) for c in check.get("expect") or [200]))


def probe(check, timeout=3.0):
    """(ok, detail) for one check, never raising."""
    if check["kind"] == "tcp":
        try:
            socket.create_connection((check["host"], check["port"]), timeout=timeout).close()
            return True, "connected"
        except OSError as exc:
            return False, exc.strerror or str(exc)
    if check["kind"] == "failover":
        return readiness.check(check["url"], check.get("members") or (), timeout, check,
                               own=True)
    expect = check.get("expect") or [200]
    try:
        context = _tls_context(check)
        opener = _OPENER if context is None else urllib.request.build_opener(
            _NoRedirect, urllib.request.HTTPSHandler(context=context))
        with opener.open(check["url"], timeout=timeout) as resp:
            status = resp.getcode()
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
        return False, str(getattr(exc, "reason", exc))
    if status in expect:
        return True, "status {}".format(status)
    return False, "status {} (expected {})".format(status, expect)


def wait(name, checks, alive, timeout, interval=1.0):
    """Block until every check passes; ServiceFailed on timeout or if alive() raises."""
    if not checks:
        LOG.info("%s: started (no health check in the seed)", name)
        return
    start = time.monotonic()
    LOG.info("%s: waiting for %s (timeout %ds)", name, "; ".join(describe(c) for c in checks),
             timeout)
    last_note = start
    while True:
        results = [probe(c) for c in checks]
        failing = [(c, d) for c, (ok, d) in zip(checks, results) if not ok]
        now = time.monotonic()
        if not failing:
            LOG.info("%s: healthy after %.1fs", name, now - start)
            return
        alive()
        detail = "; ".join("{}: {}".format(describe(c), d) for c, d in failing)
        if now - start >= timeout:
            raise ServiceFailed("{} not healthy after {}s: {}".format(name, timeout, detail))
        if now - last_note >= PROGRESS_EVERY:
            LOG.info("%s: still waiting (%.0fs): %s", name, now - start, detail)
            last_note = now
        time.sleep(interval)
