"""A Patroni cluster built by hand, for bench/baseline_bench.py: what an administrator writes
from Patroni's and HAProxy's documentation, with none of pgha-build's configuration.

Three db nodes (etcd 3.4 and PostgreSQL 15 from Debian, Patroni from the lab venv
/opt/pgha-lab/venv) and one HAProxy node (Debian), each in its own network namespace on one
bridge. The configuration files below are written here, by hand, as YAML/INI text; only the
plumbing is shared with the lab: the namespaces and bridge (builder.lab.net, with its
blackhole route and route checks) and the 127.0.0.1 host path (builder.lab.forward), so that
nothing is ever sent from the root namespace to a lab address that could leave the machine.
No TLS (the Patroni documentation's examples have none); the same Patroni timing, replication
mode and HAProxy check timing as the lab cluster it is compared with.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.core.run import Runner
from builder.lab import forward, net, nodes
from builder.lab.health import Sql, http
from builder.lab.net import LabNet, NodeNet
from builder.lab.readiness import evaluate

PG_BIN = "/usr/lib/postgresql/15/bin"
PATRONI = "/opt/pgha-lab/venv/bin/patroni"
ETCD = "/usr/bin/etcd"
HAPROXY = "/usr/sbin/haproxy"
BASE = Path("/var/lib/pgha-bench")
SUPERUSER = ("postgres", "hand-built-super")
REPLICATION = ("replicator", "hand-built-repl")


@dataclass(frozen=True)
class Timing:
    """What the hand-built cluster copies from the lab cluster it is measured against."""

    ttl: int
    loop_wait: int
    retry_timeout: int
    synchronous_mode: Any
    inter_ms: int
    fastinter_ms: int
    downinter_ms: int
    fall: int
    rise: int


class HandBuilt:
    """The cluster: `up()` starts every process and returns at once; `down()` removes all."""

    def __init__(self, name: str, prefix: str, ports: tuple[int, int, int],
                 timing: Timing) -> None:
        self.name, self.timing, self.ports = name, timing, ports
        self.runner = Runner()
        names = ["db1", "db2", "db3", "lb1"]
        addrs = [f"{prefix}.{i}" for i in (11, 12, 13, 10)]
        self.net = LabNet(
            cluster=name, cidr=f"{prefix}.0/24", gateway=f"{prefix}.1", prefix=24,
            bridge=f"br-{name}"[:15],
            nodes=tuple(NodeNet(n, f"{name}-{n}", f"vp{name}-{n}"[:15], a)
                        for n, a in zip(names, addrs, strict=True)))
        self.dir = BASE / name
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def dbs(self) -> list[NodeNet]:
        return [n for n in self.net.nodes if n.name.startswith("db")]

    @property
    def lb(self) -> NodeNet:
        return self.net.node("lb1")

    def sql(self) -> Sql:
        return Sql("127.0.0.1", self.ports[0], self.ports[1], *SUPERUSER)

    # -- configuration, by hand ----------------------------------------------------------
    def etcd_argv(self, node: NodeNet) -> list[str]:
        peers = ",".join(f"{n.name}=http://{n.address}:2380" for n in self.dbs)
        return [ETCD, "--name", node.name, "--data-dir", str(self.dir / node.name / "etcd"),
                "--listen-peer-urls", f"http://{node.address}:2380",
                "--listen-client-urls", f"http://{node.address}:2379,http://127.0.0.1:2379",
                "--advertise-client-urls", f"http://{node.address}:2379",
                "--initial-advertise-peer-urls", f"http://{node.address}:2380",
                "--initial-cluster", peers, "--initial-cluster-token", f"{self.name}-etcd",
                "--initial-cluster-state", "new"]

    def patroni_yml(self, node: NodeNet) -> str:
        t, home = self.timing, self.dir / node.name
        conf = {
            "scope": self.name, "namespace": "/service/", "name": node.name,
            "restapi": {"listen": f"{node.address}:8008",
                        "connect_address": f"{node.address}:8008"},
            "etcd3": {"hosts": [f"{n.address}:2379" for n in self.dbs]},
            "bootstrap": {
                "dcs": {"ttl": t.ttl, "loop_wait": t.loop_wait,
                        "retry_timeout": t.retry_timeout,
                        "maximum_lag_on_failover": 1048576,
                        "synchronous_mode": t.synchronous_mode,
                        "postgresql": {"use_pg_rewind": True, "use_slots": True, "parameters": {
                            "wal_level": "replica", "hot_standby": "on", "wal_log_hints": "on",
                            "max_wal_senders": 10, "max_replication_slots": 10,
                            "wal_keep_size": "128MB"}}},
                "initdb": [{"encoding": "UTF8"}, "data-checksums"]},
            "postgresql": {
                "listen": f"{node.address},127.0.0.1:5432",
                "connect_address": f"{node.address}:5432",
                "data_dir": str(home / "data"), "bin_dir": PG_BIN,
                "pgpass": str(home / "pgpass"),
                "authentication": {
                    "superuser": dict(zip(("username", "password"), SUPERUSER, strict=True)),
                    "replication": dict(zip(("username", "password"), REPLICATION,
                                            strict=True)),
                    "rewind": dict(zip(("username", "password"), SUPERUSER, strict=True))},
                "parameters": {"unix_socket_directories": str(home / "run")},
                "pg_hba": ["local all all trust",
                           "host replication replicator 127.0.0.1/32 scram-sha-256",
                           f"host replication replicator {self.net.cidr} scram-sha-256",
                           "host all all 127.0.0.1/32 scram-sha-256",
                           f"host all all {self.net.cidr} scram-sha-256"]},
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False,
                     "nosync": False},
        }
        return yaml.safe_dump(conf, sort_keys=False)

    def haproxy_cfg(self) -> str:
        t = self.timing
        out = ["global", "    maxconn 1000", "", "defaults", "    mode tcp", "    retries 2",
               "    timeout client 30m", "    timeout connect 4s", "    timeout server 30m",
               "    timeout check 5s", ""]
        for name, port, path in (("primary", self.ports[0], "/primary"),
                                 ("replicas", self.ports[1], "/replica")):
            out += [f"listen {name}", f"    bind *:{port}", f"    option httpchk OPTIONS {path}",
                    "    http-check expect status 200",
                    (f"    default-server inter {t.inter_ms}ms fastinter {t.fastinter_ms}ms "
                    f"downinter {t.downinter_ms}ms fall {t.fall} rise {t.rise} "
                    "on-marked-down shutdown-sessions")]
            if name == "replicas":
                out.append("    balance roundrobin")
            out += [f"    server {n.name} {n.address}:5432 maxconn 100 check port 8008"
                    for n in self.dbs]
            out.append("")
        return "\n".join(out)

    # -- processes ----------------------------------------------------------------------
    def _start(self, node: NodeNet, argv: list[str], log_name: str,
               user: str | None = None) -> None:
        prefix = ["ip", "netns", "exec", node.netns]
        if user:
            prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "LANG": "C.UTF-8",
               "HOME": str(self.dir / node.name)}
        out = (self.dir / node.name / log_name).open("ab")
        self.procs.append(subprocess.Popen(prefix + argv, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env,
                                           start_new_session=True))

    def _write_files(self) -> None:
        for folder in (BASE, self.dir):
            folder.mkdir(mode=0o755, exist_ok=True)
            folder.chmod(0o755)
        for node in self.net.nodes:
            home = self.dir / node.name
            home.mkdir(mode=0o755)
            if node.name.startswith("db"):
                (home / "run").mkdir()
                (home / "patroni.yml").write_text(self.patroni_yml(node))
                for path in (home, home / "run", home / "patroni.yml"):
                    shutil.chown(path, "postgres", "postgres")
                (home / "patroni.yml").chmod(0o600)
        (self.dir / "lb1" / "haproxy.cfg").write_text(self.haproxy_cfg())

    def up(self) -> None:
        """Network, files, then etcd, Patroni and HAProxy everywhere at once (no waits)."""
        self.down()
        net.up(self.runner, self.net)
        self._write_files()
        for node in self.dbs:
            self._start(node, self.etcd_argv(node), "etcd.log")
        for node in self.dbs:
            self._start(node, [PATRONI, str(self.dir / node.name / "patroni.yml")],
                        "patroni.log", user="postgres")
        self._start(self.lb, [HAPROXY, "-db", "-f", str(self.dir / "lb1" / "haproxy.cfg")],
                    "haproxy.log")
        forward.up(self.runner, self.net, self.lb.address, list(self.ports))

    def start_node(self, name: str) -> None:
        node = self.net.node(name)
        self._start(node, self.etcd_argv(node), "etcd.log")
        self._start(node, [PATRONI, str(self.dir / name / "patroni.yml")], "patroni.log",
                    user="postgres")

    def kill(self, name: str) -> None:
        """SIGKILL every process in the node's namespace (the host dies)."""
        nodes.kill(self.runner, self.net.node(name))

    def down(self) -> None:
        for node in self.net.nodes:
            if node.netns in net.namespaces(self.runner):
                nodes.kill(self.runner, node)
        for proc in self.procs:
            proc.poll()
        self.procs.clear()
        forward.down(self.runner, self.net)
        net.down(self.runner, self.net)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- Patroni's view -----------------------------------------------------------------
    def _rest(self, node: NodeNet, path: str, method: str = "GET",
              body: dict[str, Any] | None = None, timeout: float = 1.5) -> tuple[int, Any]:
        net.assert_local_route(self.runner, self.net, node.address)
        return http(method, f"http://{node.address}:8008{path}", body=body, timeout=timeout)

    def view(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        for node in self.dbs:
            code, cluster = self._rest(node, "/cluster")
            if code == 200 and isinstance(cluster, dict):
                _, config = self._rest(node, "/config")
                return cluster, config if isinstance(config, dict) else None
        return None, None

    def leader(self) -> str | None:
        cluster, _ = self.view()
        members = (cluster or {}).get("members", [])
        return next((m["name"] for m in members if m.get("role") == "leader"), None)

    def ready(self) -> bool:
        cluster, config = self.view()
        return evaluate(cluster, config, [n.name for n in self.dbs]).ready

    def switchover(self) -> None:
        leader = self.leader()
        assert leader
        # Patroni answers a switchover request once it is done (or has failed).
        code, body = self._rest(self.net.node(leader), "/switchover", "POST",
                                {"leader": leader}, timeout=60)
        if code != 200:
            raise RuntimeError(f"switchover refused: {code} {json.dumps(body)[:200]}")


def wait_first(checks: dict[str, Any], timeout: float, t0: float) -> dict[str, float]:
    """Poll every check every 0.2 s until all passed once; seconds from t0 to each first pass."""
    seen: dict[str, float] = {}
    while len(seen) < len(checks):
        for key, check in checks.items():
            if key not in seen and check():
                seen[key] = time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"hand-built cluster: not {sorted(set(checks) - set(seen))} "
                               f"after {timeout:.0f}s")
        time.sleep(0.2)
    return seen


def root_ok() -> bool:
    return os.geteuid() == 0
