"""`lab replace NODE`: a lost VM re-imaged and booted again from the same RPMs and seed, as an
operator does it; changed seeds applied to running nodes (the one way a node's files change
after first boot); and the etcd member list as the cluster sees it.

Boundary: wiping a node (every process of it gone, its folder removed: the disk lost, with the
process or the systemd engine) and booting it again through lab.up, which installs the same
role RPMs, writes the same seed and runs the node's own first-boot agent. The agent does the
joining (pgha_agent/etcdjoin.py) and Patroni clones the database; nothing here edits the
cluster by hand. etcd is read over its v3 JSON gateway with the operator's client certificate.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
import urllib.error
import urllib.request
from typing import Any

from builder.core.errors import PghaError
from builder.core.log import log
from builder.lab import lab as labmod
from builder.lab import net, nodes
from builder.lab.health import tls_context
from builder.lab.lab import PYTHON, Lab
from builder.model import roles
from builder.model.secrets import Secrets

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _etcd_opener(lab: Lab) -> urllib.request.OpenerDirector:
    if not lab.cluster.tls.enabled:
        return _NO_PROXY
    lab.secrets()
    pki = lab.ctx.out.pki
    context = tls_context(str(pki / "ca.crt"), str(pki / "operator.crt"),
                          str(pki / "operator.key"))
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=context))


def _client_urls(lab: Lab) -> list[str]:
    scheme = "https" if lab.cluster.tls.enabled else "http"
    port = lab.cluster.ports.etcd_client
    return [f"{scheme}://{lab.net.node(n.name).address}:{port}"
            for n in roles.nodes_with(lab.cluster.nodes, "etcd_member")]


def _post(opener: urllib.request.OpenerDirector, url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=3) as resp:
        return dict(json.loads(resp.read()))


def _healthy(opener: urllib.request.OpenerDirector, urls: list[str]) -> bool:
    for url in urls:
        try:
            with opener.open(url + "/health", timeout=3) as resp:
                return bool(json.loads(resp.read()).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
            continue
    return False


def etcd_members(lab: Lab) -> list[dict[str, Any]]:
    """Every etcd member (name, id, learner, started, healthy), from the first member that
    answers; [] when none does."""
    opener = _etcd_opener(lab)
    for url in _client_urls(lab):
        net.assert_local_route(lab.runner, lab.net, url.split("//")[1].split(":")[0])
        try:
            answer = _post(opener, url + "/v3/cluster/member/list")
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
            continue
        return sorted(({"name": m.get("name", ""), "id": m["ID"],
                        "learner": bool(m.get("isLearner")),
                        "started": bool(m.get("clientURLs")),
                        "healthy": _healthy(opener, m.get("clientURLs") or [])}
                       for m in answer.get("members", [])), key=lambda m: m["name"])
    return []


def etcd_line(members: list[dict[str, Any]]) -> str:
    """`db1 healthy, db2 healthy, db3 learner unhealthy` for a report."""
    if not members:
        return "no etcd member answers"
    return ", ".join(f"{m['name'] or m['id']}{' learner' if m['learner'] else ''} "
                     f"{'healthy' if m['healthy'] else 'unhealthy'}" for m in members)


def wipe(lab: Lab, name: str) -> None:
    """The node's disk lost: every process of it killed (its machine powered off with the
    systemd engine), its folder removed."""
    node = lab.net.node(name)
    if labmod.engine_of(lab) == "systemd":
        from builder.lab import machine

        m = machine.Machine(lab.dir / name, node.netns)
        machine.power_off(lab.runner, m)
        for dev in machine.loops_of(lab.runner, m.base):
            lab.runner.run(["losetup", "--detach", dev], check=False)
    if node.netns in net.namespaces(lab.runner):
        nodes.kill(lab.runner, node)
    shutil.rmtree(lab.node_dirs(name).base, ignore_errors=True)
    log.info("%s: wiped (processes killed, %s removed)", name, lab.node_dirs(name).base)


def replace(lab: Lab, name: str, timeout: float = 120) -> dict[str, Any]:
    """Wipe NODE and boot it again from the same RPMs and seed; returns the seconds until the
    cluster was failover-ready with the new node streaming, and the etcd member list."""
    if not lab.running():
        raise PghaError(f"lab '{lab.cluster.name}' is not running", hint="pgha-build lab up")
    lab.cluster.node(name)  # a node of the cluster file, or a clear error
    t0 = time.monotonic()
    wipe(lab, name)
    t_wiped = time.monotonic()
    labmod.up(lab, [name], timeout=timeout)
    t_ready = time.monotonic()
    members = etcd_members(lab)
    return {"node": name, "wipe_s": round(t_wiped - t0, 2),
            "ready_s": round(t_ready - t_wiped, 2), "etcd": members}


def apply_seeds(lab: Lab, names: list[str] | None = None, secrets: Secrets | None = None,
                timeout: float = 120) -> float:
    """Render the seeds of the running nodes `names` (default: all) again from the lab's cluster
    file and run each node's own agent on its new seed (--force), as an operator does on a
    configured VM: files written, running services reloaded (never bootstrapped again), etcd
    members the seed no longer lists removed once gone. Returns the seconds it took."""
    start = time.monotonic()
    sec = secrets or lab.secrets()
    dirs = {n: lab.node_dirs(n) for n in names or [n.name for n in lab.cluster.nodes]}
    for name, d in dirs.items():
        nodes.write_seed(lab.ctx, lab.cluster.node(name), sec, d)
    agents = {name: nodes.boot(PYTHON, d, lab.net.node(name).netns, timeout)
              for name, d in dirs.items()}
    nodes.wait_booted(agents, dirs)
    return time.monotonic() - start
