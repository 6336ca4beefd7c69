"""`lab replace NODE`: a lost VM re-imaged and booted again from the same RPMs and seed, as an
operator does it; changed seeds applied to running nodes (the one way a node's files change
after first boot); `lab add NODE` / `lab remove NODE` after the cluster file changed; and the
etcd member list as the cluster sees it.

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
from builder.lab import artifacts, datafs, net, nodes, vip
from builder.lab import lab as labmod
from builder.lab.health import tls_context, wait_until
from builder.lab.lab import PYTHON, Lab
from builder.model import roles, tlsplan
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


def power_off(lab: Lab, name: str, node: net.NodeNet) -> None:
    """Every process of the node killed: with the systemd engine its machine powered off (PID 1
    killed, its disk unmounted, its seed's loop device detached); a virtual IP its kernel held
    dropped."""
    if labmod.engine_of(lab) == "systemd":
        from builder.lab import machine

        m = machine.Machine(lab.dir / name, node.netns)
        machine.power_off(lab.runner, m)
        for dev in machine.loops_of(lab.runner, m.base):
            lab.runner.run(["losetup", "--detach", dev], check=False)
    if node.netns in net.namespaces(lab.runner):
        nodes.kill(lab.runner, node)
        vip.forget_addresses(lab, node)


def wipe(lab: Lab, name: str) -> None:
    """The node's disk lost: every process of it killed (its machine powered off with the
    systemd engine), its folder removed."""
    power_off(lab, name, lab.net.node(name))
    datafs.unmount_all(lab.runner, lab.node_dirs(name).base)  # the disk lost: its mounts too
    shutil.rmtree(lab.node_dirs(name).base, ignore_errors=True)
    log.info("%s: wiped (processes killed, %s removed)", name, lab.node_dirs(name).base)


def replace(lab: Lab, name: str, timeout: float = 120) -> dict[str, Any]:
    """Wipe NODE and boot it again from the same RPMs and seed; returns the seconds until the
    cluster was failover-ready with the new node streaming (a load balancer: every load
    balancer serving and one holding the virtual IP), the VIP's holder, and the etcd member
    list."""
    from builder.lab.status import lbs_ready

    if not lab.running():
        raise PghaError(f"lab '{lab.cluster.name}' is not running", hint="pgha-build lab up")
    lab.cluster.node(name)  # a node of the cluster file, or a clear error
    t0 = time.monotonic()
    wipe(lab, name)
    t_wiped = time.monotonic()
    labmod.up(lab, [name], timeout=timeout)
    if name in (n.name for n in lab.lb_nodes):
        wait_until("every load balancer serving, one holding the virtual IP",
                   lambda: lbs_ready(lab), timeout, 0.25)
    t_ready = time.monotonic()
    members = etcd_members(lab)
    return {"node": name, "wipe_s": round(t_wiped - t0, 2),
            "ready_s": round(t_ready - t_wiped, 2), "etcd": members,
            "vip_holder": vip.holder(lab) if lab.vip else None}


def start_seeds(lab: Lab, names: list[str], secrets: Secrets | None = None,
                timeout: float = 120) -> tuple[dict[str, Any], dict[str, nodes.NodeDirs]]:
    """Render the named nodes' seeds again and start each node's own agent on its new seed
    (--force); returns the running agents and the nodes' folders (nodes.wait_booted)."""
    sec = secrets or lab.secrets()
    dirs = {n: lab.node_dirs(n) for n in names}
    if labmod.engine_of(lab) == "systemd":  # the agent inside each machine, as on a VM
        from builder.lab import sysboot

        return {n: sysboot.apply_seed(lab, n, sec, timeout) for n in names}, dirs
    for name, d in dirs.items():
        nodes.write_seed(lab.ctx, lab.cluster.node(name), sec, d)
    agents = {name: nodes.boot(PYTHON, d, lab.net.node(name).netns, timeout)
              for name, d in dirs.items()}
    return agents, dirs


def apply_seeds(lab: Lab, names: list[str] | None = None, secrets: Secrets | None = None,
                timeout: float = 120) -> float:
    """Render the seeds of the running nodes `names` (default: all) again from the lab's cluster
    file and run each node's own agent on its new seed (--force), as an operator does on a
    configured VM: files written, running services reloaded (never bootstrapped again), etcd
    members the seed no longer lists removed once gone. Returns the seconds it took."""
    start = time.monotonic()
    agents, dirs = start_seeds(lab, names or [n.name for n in lab.cluster.nodes], secrets,
                               timeout)
    nodes.wait_booted(agents, dirs)
    return time.monotonic() - start


def _booted(lab: Lab) -> list[str]:
    """The cluster file's nodes that have a folder in the lab (booted before)."""
    return [n.name for n in lab.cluster.nodes if lab.node_dirs(n.name).root.is_dir()]


def add(lab: Lab, name: str, timeout: float = 180) -> dict[str, Any]:
    """NODE is new in the cluster file: the running nodes get their changed seeds (they admit
    it: pg_hba, HAProxy backends, firewall sources; reloaded) while it boots from its seed and
    joins (an etcd learner promoted, a Patroni replica cloned)."""
    if not lab.running():
        raise PghaError(f"lab '{lab.cluster.name}' is not running", hint="pgha-build lab up")
    lab.cluster.node(name)
    if lab.node_dirs(name).base.exists():
        raise PghaError(f"{name} is already in the lab",
                        hint=f"`pgha-build lab replace {name}` re-images it")
    t0 = time.monotonic()
    # its certificates issued in output/<cluster>/pki/ (the user's), copied as `lab up` does
    tlsplan.load_secrets(lab.output, lab.cluster)
    artifacts.copy_keys(lab.output, lab.ctx.out)
    # The running nodes' agents and the new node's boot at once, as on VMs: the others write
    # and reload in seconds, then wait (their failover check lists the new node) until it is
    # a member; the new node's clone retries until the primary admits it.
    agents, dirs = start_seeds(lab, [n for n in _booted(lab) if n != name], timeout=timeout)
    net.up(lab.runner, lab.net)
    labmod.up(lab, [name], timeout=timeout)
    t_ready = time.monotonic()
    nodes.wait_booted(agents, dirs)
    return {"node": name, "ready_s": round(t_ready - t0, 2),
            "total_s": round(time.monotonic() - t0, 2), "etcd": etcd_members(lab)}


def _former(lab: Lab, name: str) -> net.NodeNet:
    """The network of a node the cluster file no longer has (named as LabNet.of names them)."""
    return net.former_node(lab.cluster.name, name)


def remove(lab: Lab, name: str, timeout: float = 180) -> dict[str, Any]:
    """NODE is gone from the cluster file: it is shut down (processes, namespace, folder), then
    the other nodes get their changed seeds: their agents remove its etcd member, HAProxy and
    pg_hba stop admitting it. The primary is refused: switch over first."""
    from builder.lab.readiness import leader, wait_failover_ready
    from builder.lab.status import cluster_view

    if not lab.running():
        raise PghaError(f"lab '{lab.cluster.name}' is not running", hint="pgha-build lab up")
    if any(n.name == name for n in lab.cluster.nodes):
        raise PghaError(f"{name} is still in the cluster file",
                        hint="delete it from the file first (`pgha-build plan` shows the fates)")
    if not (lab.dir / name).is_dir():
        raise PghaError(f"{name} is not in the lab", hint="nothing to remove")
    if leader(lab) == name:
        raise PghaError(f"{name} is the primary", hint="pgha-build lab switchover first")
    t0 = time.monotonic()
    node = _former(lab, name)
    power_off(lab, name, node)
    if node.netns in net.namespaces(lab.runner):
        net.ip(lab.runner, "netns", "del", node.netns)
    net.ip(lab.runner, "link", "del", node.veth, check=False)
    datafs.unmount_all(lab.runner, lab.dir / name)
    shutil.rmtree(lab.dir / name, ignore_errors=True)
    reload_s = apply_seeds(lab, _booted(lab), timeout=timeout)
    wait_until(f"{name} gone from Patroni's members", lambda: name not in [
        m.get("name") for m in (cluster_view(lab) or {}).get("members", [])], timeout, 0.5)
    wait_failover_ready(lab, timeout)
    return {"node": name, "reload_s": round(reload_s, 2),
            "total_s": round(time.monotonic() - t0, 2), "etcd": etcd_members(lab)}
