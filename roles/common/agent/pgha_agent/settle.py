"""The end of a cluster's first boot: Patroni's HA loop back to the cluster file's period.

Boundary: one GET and at most one PATCH of Patroni's /config on this node's REST API, after the
agent's `failover` health check passed. A cluster bootstraps with loop_wait 1 (Patroni's
minimum; patroni.yml's bootstrap.dcs), so that its leader makes the replicas' slots and sets the
quorum within a second of each step of the first boot. The check's `settle_loop_wait` is the
cluster file's loop_wait: the agent PATCHes it when the running value differs (every db node's
agent may do so: the same value, one write). A failure is logged, not fatal: the cluster runs,
with a shorter HA loop than asked, and `pgha-build config` shows the difference. The REST API
credentials come from the check and are never logged. Standard library only, Python 3.6.
"""

import base64
import json
import ssl
import urllib.error
import urllib.request

from pgha_agent import readiness
from pgha_agent.log import LOG

TIMEOUT = 5.0
TRIES = 3


def _opener(check):
    tls = check if check.get("cafile") else None
    return readiness._opener(tls)


def _patch(check, body):
    token = "{}:{}".format(check.get("username") or "", check.get("password") or "")
    req = urllib.request.Request(
        check["url"] + "/config", data=json.dumps(body).encode("utf-8"), method="PATCH",
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(token.encode()).decode()})
    with _opener(check).open(req, timeout=TIMEOUT) as resp:
        return json.loads(resp.read().decode("utf-8"))


def loop_wait(check):
    """PATCH loop_wait to check["settle_loop_wait"] unless it already is; True when it is."""
    wanted = check.get("settle_loop_wait")
    if not wanted:
        return True
    last = ""
    for _ in range(TRIES):
        try:
            current = readiness._get(_opener(check), check["url"] + "/config", TIMEOUT)
            if current.get("loop_wait") == wanted:
                LOG.info("patroni: loop_wait is %s", wanted)
                return True
            answer = _patch(check, {"loop_wait": wanted})
            if answer.get("loop_wait") == wanted:
                LOG.info("patroni: loop_wait %s -> %s (the first boot's short HA loop ends)",
                         current.get("loop_wait"), wanted)
                return True
            last = "Patroni answered loop_wait {}".format(answer.get("loop_wait"))
        except urllib.error.HTTPError as exc:
            last = "HTTP {}".format(exc.code)
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
            last = str(getattr(exc, "reason", exc))
    LOG.warning("patroni: could not set loop_wait %s (%s): the cluster runs with its boot "
                "loop; `pgha-build config --apply` sets it", wanted, last)
    return False
