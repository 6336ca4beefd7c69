"""The lab's Prometheus: a real Prometheus (Debian `prometheus`) in its own network namespace,
`<cluster>-prom`, on the lab bridge, scraping the lab nodes with the cluster's scrape
configuration and alert rules (builder.stages.monitoring), over TLS with the lab's
`pki/prometheus.crt`.

Boundary: the Prometheus process, its namespace and veth, its folder (<lab>/prometheus/) and
the two HTTP API calls the lab makes (`query`, `alerts`). The lab's cluster gives the monitoring
address as `monitoring.sources` (lab_cluster) and short intervals (lab_intervals), so faults
page within seconds. Prometheus listens on its own lab address; the host reaches it across the
bridge after `net.assert_local_route`, like every lab call. `down` is idempotent and `lab down`
calls it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from builder.core.errors import PghaError
from builder.core.run import require
from builder.lab import net
from builder.lab.health import wait_until
from builder.model.cluster import Cluster
from builder.stages import monitoring

if TYPE_CHECKING:
    from builder.lab.lab import Lab

PORT = 9090
# The lab's intervals: scrape and evaluate every 2 s, page after 6 s (three scrapes).
LAB_SCRAPE_S = 2
LAB_ALERT_AFTER_S = 6


def address(cluster: Cluster) -> str:
    """The monitoring address: the highest host address of the lab network that no node,
    gateway or VIP uses."""
    cidr = cluster.network.cidr
    used = {str(n.address) for n in cluster.nodes} | {str(cluster.network.gateway)}
    used |= {str(cluster.load_balancer.virtual_ip)} if cluster.load_balancer.virtual_ip else set()
    for host in reversed(list(cidr.hosts())[-16:]):
        if str(host) not in used:
            return str(host)
    raise PghaError(f"no free address for the lab's Prometheus at the end of {cidr}")


def lab_settings(data: dict[str, Any]) -> None:
    """lab_cluster's monitoring: Prometheus' address as the only source, short intervals."""
    mon = data.setdefault("monitoring", {})
    if not mon.get("enabled", True):
        return
    mon.update(scrape_interval_s=LAB_SCRAPE_S, alert_after_s=LAB_ALERT_AFTER_S)
    probe = Cluster.model_validate({**data, "monitoring": {**mon, "sources": []}})
    mon["sources"] = [f"{address(probe)}/32"]


def netns(lab: Lab) -> str:
    return f"{lab.cluster.name}-prom"


def _veth(lab: Lab) -> str:
    return net._ifname("vp", f"{lab.cluster.name}-prom")


def folder(lab: Lab) -> Path:
    return lab.dir / "prometheus"


def url(lab: Lab, path: str) -> str:
    addr = address(lab.cluster)
    net.assert_local_route(lab.runner, lab.net, addr)
    return f"http://{addr}:{PORT}{path}"


def _get(lab: Lab, path: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(url(lab, path), timeout=timeout) as resp:
        return json.loads(resp.read())


def _write_config(lab: Lab) -> Path:
    where = folder(lab)
    (where / "data").mkdir(parents=True, exist_ok=True)
    (where / "alerts.yml").write_text(monitoring.render_rules(lab.cluster))
    cfg = monitoring.scrape_config(lab.cluster, tls_dir=str(lab.ctx.out.pki),
                                   rule_files=[str(where / "alerts.yml")])
    path = where / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _net_up(lab: Lab) -> None:
    ns, veth = netns(lab), _veth(lab)
    if ns not in net.namespaces(lab.runner):
        net.ip(lab.runner, "netns", "add", ns)
    if not net.ip(lab.runner, "link", "show", veth, check=False).strip():
        net.ip(lab.runner, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
               "netns", ns)
    net.ip(lab.runner, "link", "set", veth, "master", lab.net.bridge)
    net.ip(lab.runner, "link", "set", veth, "up")
    addr = f"{address(lab.cluster)}/{lab.net.prefix}"
    if addr not in net.ip(lab.runner, "-n", ns, "-br", "addr", "show", "dev", "eth0"):
        net.ip(lab.runner, "-n", ns, "addr", "add", addr, "dev", "eth0")
    net.ip(lab.runner, "-n", ns, "link", "set", "lo", "up")
    net.ip(lab.runner, "-n", ns, "link", "set", "eth0", "up")


def up(lab: Lab, timeout: float = 60) -> str:
    """Start the lab's Prometheus, or make the running one re-read its configuration and
    rules (SIGHUP); returns its URL once it is ready."""
    if not lab.cluster.monitoring.enabled:
        raise PghaError("monitoring is off in the cluster file",
                        hint="set monitoring.enabled: true (the default)")
    require("prometheus")
    _net_up(lab)
    config = _write_config(lab)
    pid = _pid(lab)
    if pid is not None:  # running: it re-reads the configuration and rules just written
        os.kill(pid, signal.SIGHUP)
    else:
        log = (folder(lab) / "prometheus.log").open("ab")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns(lab), "prometheus", f"--config.file={config}",
             f"--storage.tsdb.path={folder(lab) / 'data'}",
             f"--web.listen-address={address(lab.cluster)}:{PORT}", "--log.level=warn",
             "--storage.tsdb.retention.time=1d"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        (folder(lab) / "prometheus.pid").write_text(f"{proc.pid}\n")
    wait_until("Prometheus ready", lambda: _ready(lab), timeout)
    return url(lab, "/")


def _ready(lab: Lab) -> bool:
    try:
        with urllib.request.urlopen(url(lab, "/-/ready"), timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _pid(lab: Lab) -> int | None:
    try:
        pid = int((folder(lab) / "prometheus.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(folder(lab)).encode() in cmdline else None


def running(lab: Lab) -> bool:
    return _pid(lab) is not None


def down(lab: Lab) -> None:
    """Stop Prometheus, remove its namespace and veth (idempotent)."""
    pid = _pid(lab)
    if pid is not None:
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _pid(lab) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid(lab) is not None:
            os.killpg(pid, signal.SIGKILL)
    for pid_in in net.pids_in(lab.runner, netns(lab)) if netns(lab) in net.namespaces(
            lab.runner) else []:
        os.kill(pid_in, signal.SIGKILL)
    if netns(lab) in net.namespaces(lab.runner):
        net.ip(lab.runner, "netns", "del", netns(lab))
    net.ip(lab.runner, "link", "del", _veth(lab), check=False)
    shutil.rmtree(folder(lab), ignore_errors=True)


def query(lab: Lab, expr: str) -> list[dict[str, Any]]:
    """The result vector of an instant PromQL query."""
    data = _get(lab, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if data.get("status") != "success":
        raise PghaError(f"Prometheus refused {expr!r}: {data.get('error')}")
    return list(data["data"]["result"])


def alerts(lab: Lab) -> list[dict[str, Any]]:
    """Every alert Prometheus has now (pending and firing), with labels and annotations."""
    if not running(lab):
        raise PghaError(f"the lab's Prometheus is not running ({lab.cluster.name})",
                        hint="pgha-build lab up --monitoring")
    return list(_get(lab, "/api/v1/alerts")["data"]["alerts"])


def table(items: list[dict[str, Any]]) -> str:
    if not items:
        return "no alert is pending or firing"
    rows = [("ALERT", "STATE", "NODE", "SINCE", "SUMMARY")]
    for a in sorted(items, key=lambda a: (a["state"] != "firing", a["labels"]["alertname"])):
        rows.append((a["labels"]["alertname"], a["state"], a["labels"].get("node", "-"),
                     a.get("activeAt", "")[:19], a["annotations"].get("summary", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4]
                     for r in rows)

