"""Failover readiness of a Patroni cluster: could it fail over right now, and if not, why not.

Boundary: pure evaluation of Patroni's REST answers (GET /cluster and GET /config) plus one
helper that fetches them. Shared by the first-boot agent (health kind "failover": a db node's
first boot is done when its cluster can fail over) and by the lab (`lab up`, `lab status`),
which loads this file as it is. Standard library only, Python 3.6 (RHEL 8 platform-python).

Ready means: one leader, running; every other member replicating with state "streaming"; at
least one replica that may be promoted (no nofailover tag); and with synchronous_mode on (or
quorum) a synchronous (quorum) standby registered in /sync, since Patroni then promotes no one
else. Asynchronous mode also needs a candidate within maximum_lag_on_failover.
"""

import json
import ssl
import urllib.error
import urllib.request

SYNC_ROLES = ("sync_standby", "quorum_standby")
DEFAULT_MAX_LAG = 1048576

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sync_mode(config):
    """'quorum', 'on' or 'off' from Patroni's dynamic configuration."""
    value = config.get("synchronous_mode")
    if isinstance(value, str) and value.lower() == "quorum":
        return "quorum"
    if value is True or (isinstance(value, str) and value.lower() in ("on", "true", "yes")):
        return "on"
    return "off"


def _lag(member):
    lag = member.get("lag", 0)
    return lag if isinstance(lag, int) else None


def _describe(member):
    return "{} is {}".format(member.get("name"), member.get("state") or "not running")


def evaluate(cluster, config, expected=()):
    """(ready, reason): whether the cluster in `cluster` (GET /cluster) can fail over now."""
    members = cluster.get("members") or []
    missing = sorted(set(expected) - set(m.get("name") for m in members))
    if missing:
        return False, "not a member yet: " + ", ".join(missing)
    if cluster.get("pause"):
        return False, "maintenance mode (paused): Patroni fails over nothing"
    leaders = [m for m in members if m.get("role") in ("leader", "standby_leader")]
    if len(leaders) != 1:
        return False, "no leader" if not leaders else "{} leaders".format(len(leaders))
    leader = leaders[0]
    if leader.get("state") != "running":
        return False, "leader " + _describe(leader)
    replicas = [m for m in members if m is not leader]
    if not replicas:
        return False, "no replica: nothing to fail over to"
    waiting = [m for m in replicas if m.get("state") != "streaming"]
    if waiting:
        return False, "; ".join(_describe(m) + ", not streaming" for m in waiting)
    return _candidates(leader, replicas, config)


def _candidates(leader, replicas, config):
    able = [m for m in replicas if not (m.get("tags") or {}).get("nofailover")]
    if not able:
        return False, "every replica is tagged nofailover"
    mode = sync_mode(config)
    head = "leader {}, streaming: {}".format(
        leader.get("name"), ", ".join(m.get("name") for m in replicas))
    if mode == "off":
        max_lag = config.get("maximum_lag_on_failover", DEFAULT_MAX_LAG)
        near = [m for m in able if _lag(m) is not None and _lag(m) <= max_lag]
        if not near:
            return False, "every replica lags more than maximum_lag_on_failover ({} bytes)".format(
                max_lag)
        return True, head + " (asynchronous)"
    sync = [m.get("name") for m in able if m.get("role") in SYNC_ROLES]
    if not sync:
        what = "quorum standby" if mode == "quorum" else "synchronous standby"
        return False, ("no {} registered yet: with synchronous_mode {} Patroni promotes only "
                       "a member listed in /sync").format(what, "quorum" if mode == "quorum"
                                                          else "on")
    label = "quorum" if mode == "quorum" else "sync"
    return True, "{}, {}: {}".format(head, label, ", ".join(sync))


def _opener(tls):
    """An opener without proxies; with `tls` (cafile, and certfile/keyfile when Patroni wants a
    client certificate) it verifies Patroni's certificate against that CA."""
    if not tls or not tls.get("cafile"):
        return _OPENER
    context = ssl.create_default_context(cafile=tls["cafile"])
    if tls.get("certfile"):
        context.load_cert_chain(tls["certfile"], tls.get("keyfile"))
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=context))


def fetch(base_url, timeout=3.0, tls=None):
    """(cluster, config) from one Patroni REST API (base_url like http://10.0.0.11:8008)."""
    opener = _opener(tls)
    return (_get(opener, base_url + "/cluster", timeout),
            _get(opener, base_url + "/config", timeout))


def _get(opener, url, timeout):
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read().decode("utf-8"))


def evaluate_self(status):
    """(ready, reason) for the member answering GET /patroni itself: running, and a leader or
    streaming. Its own view, not its key in the DCS: a key left by a replaced machine of the
    same name can say "streaming" while this one is still cloning."""
    name = status.get("patroni", {}).get("name") or "this member"
    if status.get("state") != "running":
        return False, "{} (itself) is {}".format(name, status.get("state") or "not running")
    if status.get("role") in ("primary", "master", "standby_leader"):
        return True, ""
    if status.get("replication_state", "streaming") != "streaming":
        return False, "{} (itself) is {}, not streaming".format(name, status["replication_state"])
    return True, ""


def check(base_url, expected=(), timeout=3.0, tls=None, own=False):
    """(ready, reason) for the cluster as the Patroni at base_url sees it; never raises. With
    `own`, that member must also be ready by its own account (evaluate_self)."""
    try:
        cluster, config = fetch(base_url, timeout, tls)
        status = _get(_opener(tls), base_url + "/patroni", timeout) if own else {}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return False, "Patroni REST API {}: {}".format(base_url, getattr(exc, "reason", exc))
    if not all(isinstance(x, dict) for x in (cluster, config, status)):
        return False, "Patroni REST API {}: unexpected answer".format(base_url)
    if own:
        ready, reason = evaluate_self(status)
        if not ready:
            return False, reason
    return evaluate(cluster, config, expected)
