"""`lab up` and `lab down`: the lab's cluster, its folders, and the order things happen in.

The lab runs the cluster with platform debian12 (Debian's PostgreSQL 15, etcd 3.4, HAProxy 2.6;
Patroni from /opt/pgha-lab/venv, see scripts/setup). It runs the user's artifacts: the RPMs, secrets
and CA of output/<cluster>/ (the lab's platform RPMs built there beside the user's and listed in
the same manifest; builder.lab.artifacts). Everything it makes lives in the lab folder,
/var/lib/pgha-lab/<cluster>/ (PGHA_LAB_DIR overrides /var/lib/pgha-lab): build/<cluster>/ (the
copy of those RPMs, secrets and PKI it runs), one folder per node, the relay's pid and log,
and state.json. It is outside
the checkout and the output folder on purpose: the service users (postgres, etcd) must reach
the node roots, and a checkout under /root (mode 0700) or in a mkdtemp folder would stop them.
output/<cluster>/lab is a symbolic link to it, for finding it. Like the namespaces and the
bridge, a lab is one per cluster name on a machine.

The host's way in (the kernel forward, or the Python relay where nftables is missing) is
builder.lab.hostpath's; node processes are started by each node's agent.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.paths import OutputPaths
from builder.core.run import Runner
from builder.lab import artifacts, datafs, forward, monitor, net, nodes, vip
from builder.lab import preflight as lab_preflight
from builder.lab.health import Sql, tls_context, wait_until
from builder.lab.hostpath import HOST, our_relay, start_relay, stop_relay
from builder.lab.net import LabNet, NodeNet
from builder.model import roles, tlsplan
from builder.model.cluster import Cluster
from builder.model.platform import Layout, layout
from builder.model.secrets import Secrets

LAB_PG = 15
PYTHON = "/usr/bin/python3"
DEFAULT_LAB_ROOT = "/var/lib/pgha-lab"


def lab_root() -> Path:
    """Where every lab's folder lives: PGHA_LAB_DIR, else /var/lib/pgha-lab."""
    return Path(os.environ.get("PGHA_LAB_DIR") or DEFAULT_LAB_ROOT).absolute()


def lab_cluster(cluster: Cluster, profile: str | None = None,
                synchronous: bool | None = None, tls: bool | None = None,
                engine: str | None = None) -> Cluster:
    """The cluster as the lab runs it: platform debian12 with Debian's PostgreSQL 15.
    `profile` re-applies a timing profile (dropping explicit timings); `synchronous` sets
    Patroni's synchronous_mode. Patroni's watchdog is kept only on the vm engine."""
    data = cluster.model_dump(mode="json")
    data.update(platform="debian12", postgres_version=LAB_PG)
    if engine != "vm":
        # Namespaces share this machine's kernel: a watchdog reset would reboot the host.
        data["patroni"]["watchdog"] = "off"
    data["repos"].pop("pgdg", None)
    if profile is not None:
        data["profile"] = profile
        for key in ("ttl", "loop_wait", "retry_timeout"):
            data["patroni"].pop(key, None)
        data["load_balancer"].pop("check", None)
    if synchronous is not None:
        data["patroni"]["synchronous_mode"] = synchronous
    if tls is not None:
        data["tls"] = {**data["tls"], "enabled": tls}
    monitor.lab_settings(data)  # Prometheus' address as the only source, short intervals
    return Cluster.model_validate(data)


@dataclass(frozen=True)
class Lab:
    """One lab: the (lab) cluster, where its files are, and how to reach it."""

    cluster: Cluster
    dir: Path
    runner: Runner
    link: Path | None = None  # output/<cluster>/lab -> dir
    source: Cluster | None = None  # the cluster as the user wrote it (default: `cluster`)

    @classmethod
    def of(cls, cluster: Cluster, output: Path, runner: Runner | None = None,
           source: Cluster | None = None) -> Lab:
        return cls(cluster, lab_root() / cluster.name, runner or Runner(),
                   output.absolute() / cluster.name / "lab", source)

    @property
    def output(self) -> OutputPaths:
        """The user's output folder, output/<cluster>/, whose artifacts the lab runs."""
        if self.link is None:
            raise PghaError("this lab has no output folder (make it with Lab.of)")
        return OutputPaths(self.link.parent)

    @property
    def net(self) -> LabNet:
        return net.LabNet.of(self.cluster)

    @property
    def layout(self) -> Layout:
        return layout(self.cluster.platform, self.cluster.postgres_version)

    @property
    def ctx(self) -> Context:
        """The lab's own folder as an output folder: <lab>/build/<cluster>/ holds the copy of
        the RPMs, secrets.yaml and pki/ the nodes run (builder.lab.artifacts)."""
        return Context.create(self.cluster, self.dir / "build", self.runner)

    def node_dirs(self, name: str) -> nodes.NodeDirs:
        return nodes.NodeDirs(self.dir / name)

    @property
    def lb_nodes(self) -> list[NodeNet]:
        return [self.net.node(n.name)
                for n in roles.nodes_with(self.cluster.nodes, "load_balancer")]

    @property
    def lb(self) -> NodeNet:
        if not self.lb_nodes:
            raise PghaError("the cluster has no load balancer node (a role with "
                            "load_balancer: true, e.g. haproxy)")
        return self.lb_nodes[0]

    @property
    def vip(self) -> str | None:
        """The virtual IP keepalived moves, if it runs (a virtual_ip and two load balancers)."""
        addr = self.cluster.load_balancer.virtual_ip
        return str(addr) if addr is not None and len(self.lb_nodes) >= 2 else None

    @property
    def entry(self) -> str:
        """Where clients connect: the virtual IP, else the (one) load balancer's address."""
        return self.vip or self.lb.address

    @property
    def db_nodes(self) -> list[NodeNet]:
        return [self.net.node(n.name) for n in roles.nodes_with(self.cluster.nodes, "postgres")]

    def secrets(self) -> Secrets:
        return tlsplan.load_secrets(self.ctx.out, self.cluster)

    def ports(self) -> dict[str, int]:
        lb = self.cluster.load_balancer
        return {"rw": lb.primary_port, "ro": lb.replica_port, "stats": lb.stats_port}

    def sql(self) -> Sql:
        """PostgreSQL through the relays; with TLS, sslmode=verify-full against the cluster's
        service name (the name the load balancer's clients use)."""
        su = self.secrets().superuser
        p = self.ports()
        if not self.cluster.tls.enabled:
            return Sql(HOST, p["rw"], p["ro"], su.username, su.password)
        return Sql(HOST, p["rw"], p["ro"], su.username, su.password,
                   server_name=self.cluster.service_names()[0],
                   sslrootcert=str(self.ctx.out.pki / "ca.crt"))

    def rest_context(self) -> ssl.SSLContext | None:
        """TLS for Patroni's REST API: the cluster CA, and the operator's client certificate
        (Patroni asks for one on changes, or on every request with verify_client required)."""
        if not self.cluster.tls.enabled:
            return None
        self.secrets()  # makes the PKI if this lab has none yet
        pki = self.ctx.out.pki
        return tls_context(str(pki / "ca.crt"), str(pki / "operator.crt"),
                           str(pki / "operator.key"))

    def rest_auth(self) -> tuple[str, str]:
        r = self.secrets().restapi
        return r.username, r.password

    def rest_url(self, node: NodeNet, path: str) -> str:
        net.assert_local_route(self.runner, self.net, node.address)
        scheme = "https" if self.cluster.tls.enabled else "http"
        return f"{scheme}://{node.address}:{self.cluster.ports.patroni_rest}{path}"

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    def running(self) -> bool:
        return self.state_file.exists()


def preflight(lab: Lab) -> None:
    """Everything the lab needs, checked before anything starts (builder.lab.preflight)."""
    lab_preflight.check(lab.layout, lab.dir)


def up(lab: Lab, only: list[str] | None = None, timeout: float = 120,
       engine: str | None = None, data_fs_mb: int | None = None) -> dict[str, Any]:
    """Build what is missing, boot the nodes, wait until healthy; return timings.
    engine: "process" (the agents start the services as processes), "systemd" (each
    node a machine with systemd as PID 1, builder.lab.sysboot) or "vm" (each node a QEMU
    machine booted from its role's image, builder.lab.vmboot); default: the running lab's,
    else "process". data_fs_mb: each db node's data on a tmpfs of that size
    (builder.lab.datafs; default: the running lab's).

    Writes and reads are waited for while the first boots still run: the read-write port
    takes writes as soon as a leader exists and HAProxy routes to it, not when every node's
    first boot (replicas streaming, quorum registered) is done. Failover readiness comes last.
    rw_s, ro_s, boot_s (every first boot done) and ready_s count from the end of the build."""
    t0 = time.monotonic()
    engine = engine or engine_of(lab)
    data_fs = datafs.for_engine(data_fs_mb or datafs.recorded(lab.state_file), engine)
    preflight(lab)
    make_dir(lab)
    taken = take_artifacts(lab)
    t_built = time.monotonic()
    net.up(lab.runner, lab.net, taps=engine == "vm")
    names = only or [n.name for n in lab.cluster.nodes]
    _write_state(lab, started=time.time(), engine=engine, data_fs_mb=data_fs,
                 **taken.as_state())
    for addr in (lab.net.node(n).address for n in names):
        net.assert_local_route(lab.runner, lab.net, addr)  # the agents' health checks
    booting = _start_boot(lab, names, engine, timeout, taken)
    start_relay(lab)
    if lab.vip:
        vip.wait_holder(lab, timeout)
    sql = lab.sql()
    wait_until("writes through the read-write port", booting.watching(sql.can_write), timeout)
    t_rw = time.monotonic()
    wait_until("reads through the read-only port", booting.watching(sql.can_read), timeout)
    t_ro = time.monotonic()
    booting.wait()
    t_booted = time.monotonic()
    from builder.lab.readiness import wait_failover_ready

    wait_failover_ready(lab, timeout)
    t_ready = time.monotonic()
    from builder.lab import backup

    if backup.enabled(lab):  # as the repository host's pgha-backup-init timer does
        backup.stanza_create(lab)
    return {"build_s": t_built - t0, "boot_s": t_booted - t_built,
            "rw_s": t_rw - t_built, "ro_s": t_ro - t_built, "ready_s": t_ready - t_built,
            "total_s": t_ready - t0}


@dataclass
class Booting:
    """First boots under way: `failed()` says whether one has already failed (without
    blocking), `wait()` blocks until all are done and raises the first failure."""

    failed: Callable[[], bool]
    wait: Callable[[], object]

    def watching(self, check: Callable[[], bool]) -> Callable[[], bool]:
        """`check`, raising the first boot's error as soon as a first boot failed (instead
        of polling a cluster that will not come until the timeout)."""
        def probe() -> bool:
            if self.failed():
                self.wait()
            return check()
        return probe


def take_artifacts(lab: Lab) -> artifacts.Taken:
    """The artifacts the lab runs (builder.lab.artifacts): taken from output/<cluster>/ (built
    there where missing), or, for a running lab, the copy its nodes already run."""
    if lab.running():
        taken = artifacts.recorded(lab.state_file)
        if taken is not None and all(Path(p).is_file() for p in taken.rpms.values()):
            return taken
    return artifacts.take(lab.cluster, lab.source or lab.cluster, lab.output, lab.ctx.out,
                          lab.runner)


def _start_boot(lab: Lab, names: list[str], engine: str, timeout: float,
                taken: artifacts.Taken) -> Booting:
    rpms = {n: artifacts.node_rpms(taken, lab.cluster.node(n)) for n in names}
    if engine == "vm":
        from builder.lab import vmboot

        powered = vmboot.power_on(lab, names)
        return Booting(lambda: False,
                       lambda: vmboot.wait_first_boot(lab, names, powered, timeout))
    if engine == "systemd":
        from builder.lab import sysboot

        started = sysboot.power_on(lab, names, rpms)
        return Booting(lambda: False,
                       lambda: sysboot.wait_first_boot(lab, names, started, timeout))
    return _start_processes(lab, names, timeout, rpms)


def _start_processes(lab: Lab, names: list[str], timeout: float,
                     rpms: dict[str, list[Path]]) -> Booting:
    """Each node's agent starts as soon as its own root and seed are ready: the RPM installs
    (child processes) run at once, the seeds are rendered meanwhile, one node after the other."""
    ctx, sec = lab.ctx, lab.secrets()
    all_dirs = {n: lab.node_dirs(n) for n in names}
    data_fs, dbs = datafs.recorded(lab.state_file), {n.name for n in lab.db_nodes}
    agents: dict[str, subprocess.Popen[bytes]] = {}
    with ThreadPoolExecutor(max_workers=len(names) or 1, thread_name_prefix="install") as pool:
        installs = {n: pool.submit(nodes.install, lab.runner, d, lab.layout, rpms[n])
                    for n, d in all_dirs.items()}
        for name, dirs in all_dirs.items():
            nodes.write_seed(ctx, lab.cluster.node(name), sec, dirs)
            installs[name].result()
            if data_fs and name in dbs:
                datafs.attach(lab.runner, dirs.root, lab.layout, data_fs)
            agents[name] = nodes.boot(PYTHON, dirs, lab.net.node(name).netns, timeout)
    return Booting(lambda: any(p.poll() not in (None, 0) for p in agents.values()),
                   lambda: nodes.wait_booted(agents, all_dirs))


def engine_of(lab: Lab) -> str:
    """The engine the lab runs with (state.json), "process" when none is recorded."""
    try:
        return str(json.loads(lab.state_file.read_text()).get("engine") or "process")
    except (OSError, ValueError):
        return "process"


def make_dir(lab: Lab) -> None:
    """The lab folder, reachable by the service users (0755 down from the lab root), and the
    link to it from the output folder."""
    for folder in [*reversed(lab.dir.parents), lab.dir]:
        if not folder.exists():
            folder.mkdir(mode=0o755)
            folder.chmod(0o755)  # whatever the umask
    if lab.link is not None and not lab.link.is_symlink():
        with contextlib.suppress(OSError):
            lab.link.parent.mkdir(parents=True, exist_ok=True)
            lab.link.symlink_to(lab.dir, target_is_directory=True)


def _write_state(lab: Lab, **extra: Any) -> None:
    make_dir(lab)
    data = {"cluster": lab.cluster.name, "network": lab.net.cidr,
            "nodes": [n.name for n in lab.cluster.nodes], **extra}
    lab.state_file.write_text(json.dumps(data, indent=2) + "\n")


def down(lab: Lab) -> None:
    """Stop every lab process, remove namespaces, links, routes and the lab folder."""
    if lab.dir.exists():
        stop_relay(lab)
    from builder.lab import machine, vmboot

    vmboot.down(lab)
    machine.down(lab.runner, lab.dir, {n.name: n.netns for n in lab.net.nodes})
    for node in lab.net.nodes:
        if node.netns in net.namespaces(lab.runner):
            nodes.kill(lab.runner, node)
    forward.down(lab.runner, lab.net)
    monitor.down(lab)
    net.down(lab.runner, lab.net)
    datafs.unmount_all(lab.runner, lab.dir)  # found in /proc: after a crashed run too
    if lab.dir.exists():
        shutil.rmtree(lab.dir)
    if lab.link is not None and lab.link.is_symlink():
        lab.link.unlink()
        with contextlib.suppress(OSError):
            lab.link.parent.rmdir()  # output/<cluster>/ too, if the link was all it held
    log.debug("lab %s is down", lab.cluster.name)


def leftovers(lab: Lab) -> list[str]:
    """Anything of the lab still there: processes, network objects, files."""
    found = net.leftovers(lab.runner, lab.net) + forward.leftovers(lab.runner, lab.net)
    found += [f"process {pid}" for pid in _lab_pids(lab)]
    from builder.lab import machine

    found += machine.leftovers(lab.runner, lab.dir, {n.name: n.netns for n in lab.net.nodes})
    if lab.dir.exists():
        found.append(f"folder {lab.dir}")
    if lab.link is not None and lab.link.is_symlink():
        found.append(f"link {lab.link}")
    return found


def _lab_pids(lab: Lab) -> list[int]:
    """Processes whose command line or working folder points into the lab folder."""
    marker = str(lab.dir).encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (marker in (proc / "cmdline").read_bytes()
                    or our_relay(int(proc.name), lab.net.cidr)):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids
