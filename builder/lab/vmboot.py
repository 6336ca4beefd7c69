"""`lab up --engine vm`: every node a QEMU machine booted from its role's disk image.

Boundary: the order of things for the vm engine (builder.lab.lab calls `power_on` where the
process engine starts agents). The role images are made by the images stage with the debian12
backend (builder.images.debianimage), in output/<cluster>/debian12/images/, from the lab's
RPMs (the same RPMs and cluster the lab runs; `pgha-build images --backend debian12` makes the
same files). Each node then gets a qcow2 overlay on its role's image, its seed ISO from
`pgha-build seeds` (the real paths: the VM's / is the node's /) as a CD-ROM, and a tap on the
lab bridge; builder.lab.qemu runs it. The first boot is the agent's, inside the guest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from builder.core.context import Context, source_date_epoch
from builder.core.errors import PghaError
from builder.core.log import log
from builder.lab import qemu
from builder.model.imageformats import Compression
from builder.stages import pipeline, seeds

if TYPE_CHECKING:
    from builder.lab.lab import Lab

FIRSTBOOT = "pgha-firstboot.service"
PLATFORM = "debian12"
SETTLED = ("running", "degraded")
# zstd: about four times faster to write than zlib, and this host's QEMU reads it (>= 5.1).
# `images --backend debian12 --qcow2-compression zstd` makes the same file.
COMPRESSION: Compression = "zstd"


def vm(lab: Lab, name: str) -> qemu.Vm:
    return qemu.Vm(lab.dir / name, lab.net.node(name).tap)


def role_of(lab: Lab, name: str) -> str:
    """The image a node boots: its first role's (which carries its other roles)."""
    return lab.cluster.node(name).roles[0]


def image_context(lab: Lab) -> Context:
    """The lab cluster's debian12 build in the user's output folder (cached RPM stages)."""
    return Context(cluster=lab.cluster, out=lab.output.for_platform(PLATFORM),
                   runner=lab.runner, epoch=source_date_epoch())


def ensure_images(lab: Lab, role_names: set[str]) -> dict[str, qemu.Boot]:
    """Each role's image, kernel and initramfs (built by the images stage when missing)."""
    from builder.images import stage as imagestage
    from builder.images.common import ImageOptions

    ctx = image_context(lab)
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    ctx.messages.clear()
    out: dict[str, qemu.Boot] = {}
    for role in sorted(role_names):
        t0 = time.monotonic()
        imagestage.build_images(ctx, ImageOptions(role=role, formats=("qcow2",),
                                                  backend=PLATFORM, compression=COMPRESSION,
                                                  depsolve=False, login=False))
        log.info("vm: %s image ready in %.1f s", role, time.monotonic() - t0)
        out[role] = qemu.Boot(
            image=imagestage.image_path(ctx, role, "qcow2"),
            kernel=imagestage.boot_file_path(ctx, role, "vmlinuz"),
            initrd=imagestage.boot_file_path(ctx, role, "initrd"), seed_iso=Path())
    for message in ctx.messages:
        log.info("%s", message)
    own = Context(cluster=lab.source or lab.cluster, out=lab.output, runner=lab.runner,
                  epoch=ctx.epoch)
    pipeline.run_steps(own, [pipeline.MANIFEST])  # the images in manifest.json too
    return out


def power_on(lab: Lab, names: list[str]) -> dict[str, float]:
    """Images, disks, seeds; then every named VM is powered on. Returns the power-on times."""
    roles_of = {n: role_of(lab, n) for n in names}
    boots = ensure_images(lab, set(roles_of.values()))
    log.info("vm: %s acceleration, %d MiB per VM", qemu.accel().upper(), qemu.memory_mib())
    sec = lab.secrets()
    started: dict[str, float] = {}
    for name in names:
        machine = vm(lab, name)
        boot = boots[roles_of[name]]
        qemu.create_disk(lab.runner, machine, boot.image)
        written = seeds.write_seed(lab.ctx, lab.cluster.node(name), sec)
        iso = next(a for a in written if a.kind == "seed-iso")
        boot = qemu.Boot(boot.image, boot.kernel, boot.initrd, lab.ctx.out.root / iso.path)
        started[name] = time.monotonic()
        qemu.power_on(lab.runner, machine, boot, name)
    return started


def system_state(machine: qemu.Vm) -> str:
    if qemu.pid(machine) is None:
        return "down"
    if not qemu.guest_ready(machine):
        return "booting"
    return qemu.text(machine, ["systemctl", "is-system-running"], timeout=20) or "unknown"


def wait_settled(machine: qemu.Vm, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    state = "down"
    while time.monotonic() < deadline:
        state = system_state(machine)
        if state in SETTLED:
            return state
        if state == "down":
            raise PghaError(f"{machine.name}: QEMU is not running",
                            hint=f"see {machine.console}")
        time.sleep(2)
    raise PghaError(f"{machine.name}: boot did not finish within {timeout:g} s (state {state})",
                    hint=f"see {machine.console}")


def wait_first_boot(lab: Lab, names: list[str], started: dict[str, float],
                    timeout: float) -> dict[str, float]:
    """Wait until every named VM's boot (first boot included) is over; seconds each took."""
    took = {}
    for name in names:
        machine = vm(lab, name)
        state = wait_settled(machine, timeout)
        took[name] = time.monotonic() - started[name]
        show = qemu.text(machine, ["systemctl", "show", "-p", "Result", "-p", "ActiveState",
                                   FIRSTBOOT])
        if "Result=success" not in show or "ActiveState=active" not in show:
            tail = qemu.text(machine, ["journalctl", "-u", FIRSTBOOT, "-n", "8", "--no-pager",
                                       "-o", "cat"])
            raise PghaError(f"lab: first boot failed on {name} (system {state}, "
                            f"{show.replace(chr(10), ' ')}):\n  " + tail.replace("\n", "\n  "),
                            hint=f"see {machine.console}")
        log.info("%s: %s after %.1f s", name, state, took[name])
    return took


def kill(lab: Lab, name: str) -> int:
    """Hard power-off (SIGKILL of QEMU): 1 when the VM was running."""
    return int(qemu.power_off(vm(lab, name)))


def down(lab: Lab) -> None:
    for node in lab.net.nodes:
        qemu.power_off(vm(lab, node.name))


def running_vm(lab: Lab, name: str) -> qemu.Vm:
    machine = vm(lab, name)
    if qemu.pid(machine) is None:
        raise PghaError(f"{name} is not running as a VM", hint="pgha-build lab up --engine vm")
    return machine


def exec_in(lab: Lab, name: str, command: list[str],
            timeout: float = 120) -> tuple[int, str, str]:
    """Run a command in the node's guest (QEMU guest agent): exit code, stdout, stderr."""
    return qemu.guest_exec(running_vm(lab, name), command, timeout)


def reboot(lab: Lab, name: str, timeout: float = 300) -> str:
    """`systemctl reboot` in the guest: a real reboot (new kernel boot); waits until settled."""
    machine = running_vm(lab, name)
    before = qemu.boots(machine)
    qemu.qga(machine, "guest-exec", path="systemctl", arg=["reboot"])
    deadline = time.monotonic() + timeout
    while qemu.boots(machine) <= before:
        if time.monotonic() > deadline:
            raise PghaError(f"{name}: no new boot within {timeout:g} s",
                            hint=f"see {machine.console}")
        time.sleep(1)
    return wait_settled(machine, max(deadline - time.monotonic(), 30))
