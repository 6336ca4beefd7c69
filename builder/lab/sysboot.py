"""`lab up --engine systemd`: boot the nodes as machines and wait until their first boot is done.

Boundary: the order of things for the systemd engine (builder.lab.lab calls `boot` where the
process engine starts agents). Image (builder.images.rootfs), dependency stand-ins
(builder.images.provides), the node's seed as `pgha-build seeds` writes it (platform debian12, no
root prefix: the machine's / is the node's /), then builder.lab.machine for each node.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from builder.core.errors import PghaError
from builder.core.log import log
from builder.images import provides, rootfs
from builder.lab import machine, nodes
from builder.lab.machine import Machine
from builder.stages import seeds

if TYPE_CHECKING:
    import subprocess

    from builder.lab.lab import Lab
    from builder.model.secrets import Secrets

FIRSTBOOT = "pgha-firstboot.service"
AGENT = "/usr/libexec/pgha/pgha-firstboot"
NEXT_SEED = "var/lib/pgha/seed-next.json"  # on the machine's disk, 0600 in a 0700 folder


def machines(lab: Lab, names: list[str] | None = None) -> list[Machine]:
    wanted = names or [n.name for n in lab.cluster.nodes]
    return [Machine(lab.dir / name, lab.net.node(name).netns) for name in wanted]


def netns_of(lab: Lab) -> dict[str, str]:
    return {n.name: n.netns for n in lab.net.nodes}


def boot(lab: Lab, names: list[str], rpm_paths: dict[str, list[Path]],
         timeout: float) -> dict[str, float]:
    """Install, seed and power on every named node, then wait for each first boot; returns
    the seconds each machine took from power-on to a settled boot."""
    started = power_on(lab, names, rpm_paths)
    return wait_first_boot(lab, names, started, timeout)


def power_on(lab: Lab, names: list[str], rpm_paths: dict[str, list[Path]]) -> dict[str, float]:
    """Install, seed and power on every named node; return when each was powered on (the
    first boots then run by themselves: `wait_first_boot` waits for them)."""
    machine.preflight()
    t0 = time.monotonic()
    image = rootfs.ensure(lab.runner)
    log.debug("rootfs ready in %.1f s: %s", time.monotonic() - t0, image)
    extra = provides.build(lab.runner, lab.layout, lab.ctx.out.root / "lab-provides")
    missing = provides.unmapped([p for paths in rpm_paths.values() for p in paths])
    if missing:
        raise PghaError(f"lab: no Debian stand-in for {', '.join(missing)}",
                        hint="add it to builder/resources/lab/provides.yaml")
    ctx = lab.ctx
    sec = lab.secrets()
    started: dict[str, float] = {}
    for m in machines(lab, names):
        machine.mount_root(lab.runner, m, image)
        machine.install_rpms(lab.runner, m, [extra, *rpm_paths[m.name]])
        written = seeds.write_seed(ctx, lab.cluster.node(m.name), sec)
        iso = next(a for a in written if a.kind == "seed-iso")
        seed_dev = machine.attach_seed(lab.runner, ctx.out.root / iso.path)
        started[m.name] = time.monotonic()
        machine.power_on(m, seed_dev)
    return started


def wait_first_boot(lab: Lab, names: list[str], started: dict[str, float],
                    timeout: float) -> dict[str, float]:
    """Wait until every named machine's first boot is done; returns the seconds each took
    from power-on to a settled boot, or raises with the first boot's journal."""
    took = {}
    for m in machines(lab, names):
        machine.wait_pid1(m)
        state = machine.wait_settled(lab.runner, m, timeout)
        took[m.name] = time.monotonic() - started[m.name]
        result = machine.unit_property(lab.runner, m, FIRSTBOOT, "Result")
        active = machine.unit_property(lab.runner, m, FIRSTBOOT, "ActiveState")
        if result != "success" or active != "active":
            tail = machine.text_in(lab.runner, m, ["journalctl", "-u", FIRSTBOOT, "-n", "8",
                                                   "--no-pager", "-o", "cat"])
            raise PghaError(f"lab: first boot failed on {m.name} (system {state}, "
                            f"{FIRSTBOOT} {active}/{result}):\n  " + tail.replace("\n", "\n  "),
                            hint=f"pgha-build lab exec {m.name} -- journalctl -b")
        log.info("%s: %s after %.1f s", m.name, state, took[m.name])
    return took


def apply_seed(lab: Lab, name: str, secrets: Secrets,
               timeout: float) -> subprocess.Popen[bytes]:
    """A changed seed on a running machine, as an operator applies it on a VM: the node's seed
    rendered again, its seed.json copied onto the machine's disk, and `pgha-firstboot --seed`
    run inside the machine (its agent writes the files and reloads the running services
    through systemd). Returns the running agent; its output goes to <node>/agent.log."""
    m = Machine(lab.dir / name, lab.net.node(name).netns)
    pid = machine.pid1(m)
    if pid is None:
        raise PghaError(f"{name}: the machine is not running",
                        hint=f"pgha-build lab up --nodes {name}")
    seeds.write_seed(lab.ctx, lab.cluster.node(name), secrets)
    dest = m.root / NEXT_SEED
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(lab.ctx.out.seeds / name / "pgha" / "seed.json", tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)
    argv = ["nsenter", "-t", str(pid), "-a", "-r", "-w", AGENT, "--seed", "/" + NEXT_SEED,
            "--force", "--health-timeout", str(int(timeout))]
    log.debug("%s: applying its changed seed inside the machine", name)
    return nodes.start_agent(argv, m.base / "agent.log",
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
