"""The vm engine's machine: one QEMU process per node, and the two sockets the lab talks to.

Boundary: the host side of one VM (its disk overlay, its command line, power, QMP, the QEMU
guest agent). builder.lab.vmboot decides when; builder.images.debianimage makes the image.

A node's folder (<lab>/<node>/) holds `disk.qcow2` (an overlay whose backing file is the role's
image: the node's own disk, kept across boots), `console.log` (the serial console: kernel,
systemd, the agent's journal lines), `qemu.pid`, `qmp.sock` (QEMU's monitor: hard power-off
with `quit`, `system_reset`) and `qga.sock` (the QEMU guest agent inside the VM: commands run
in the guest with guest-exec, the lab's `exec`).

Hardware: one vCPU, `PGHA_LAB_VM_MEMORY` MiB (768), the disk on virtio-blk, the seed ISO on an
IDE CD-ROM (the guest's /dev/sr0, labelled cidata), a virtio NIC on the node's tap in the lab
bridge (a MAC derived from the node name), a virtio RNG, an i6300esb watchdog (the guest's
softdog is what Patroni uses; the i6300esb is there for a guest that prefers hardware), the
serial console to the log, direct kernel boot with the image's kernel and initramfs.
Acceleration: KVM only when asked (`PGHA_LAB_ACCEL=kvm`) and /dev/kvm is there; otherwise TCG
(software emulation): on a host that is itself a VM, nested KVM guests may hang at boot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.core.errors import PghaError
from builder.core.run import Runner, require

QEMU = "qemu-system-x86_64"
DEFAULT_MEMORY_MIB = 768
KERNEL_ARGS = ("root=/dev/vda", "rw", "console=ttyS0,115200n8", "net.ifnames=0",
               "systemd.show_status=1")


@dataclass(frozen=True)
class Vm:
    """One node as a VM: its folder and its tap."""

    base: Path
    tap: str

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def disk(self) -> Path:
        return self.base / "disk.qcow2"

    @property
    def console(self) -> Path:
        return self.base / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.base / "qemu.pid"

    @property
    def qmp(self) -> Path:
        return self.base / "qmp.sock"

    @property
    def qga(self) -> Path:
        return self.base / "qga.sock"


@dataclass(frozen=True)
class Boot:
    """What a VM boots: the role's image (backing file), kernel, initramfs, and the seed."""

    image: Path
    kernel: Path
    initrd: Path
    seed_iso: Path


def accel() -> str:
    """"kvm" when asked for and /dev/kvm opens, else "tcg" (see the module docstring)."""
    wanted = os.environ.get("PGHA_LAB_ACCEL", "tcg")
    if wanted == "kvm" and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


def memory_mib() -> int:
    try:
        return int(os.environ.get("PGHA_LAB_VM_MEMORY") or DEFAULT_MEMORY_MIB)
    except ValueError:
        raise PghaError("PGHA_LAB_VM_MEMORY must be a number of MiB") from None


def mac(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def create_disk(runner: Runner, vm: Vm, image: Path) -> bool:
    """The node's disk: a qcow2 overlay on the role image (made once; True when made now)."""
    if vm.disk.is_file():
        return False
    vm.base.mkdir(parents=True, exist_ok=True)
    runner.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
                str(vm.disk)])
    return True


def argv(vm: Vm, boot: Boot, cluster_node: str) -> list[str]:
    """QEMU's command line for the VM (daemonized; its pid in vm.pidfile)."""
    return [
        QEMU, "-name", cluster_node, "-machine", "pc", "-accel", accel(), "-smp", "1",
        "-m", str(memory_mib()), "-nodefaults", "-no-user-config", "-display", "none",
        "-kernel", str(boot.kernel), "-initrd", str(boot.initrd),
        "-append", " ".join(KERNEL_ARGS),
        "-drive", f"file={vm.disk},if=virtio,format=qcow2",
        "-drive", f"file={boot.seed_iso},media=cdrom,if=ide,format=raw,readonly=on",
        "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=net0,mac={mac(cluster_node)}",
        "-device", "virtio-rng-pci", "-device", "i6300esb",
        "-chardev", f"file,id=console,path={vm.console},append=on", "-serial", "chardev:console",
        "-qmp", f"unix:{vm.qmp},server=on,wait=off",
        "-chardev", f"socket,id=qga0,path={vm.qga},server=on,wait=off",
        "-device", "virtio-serial", "-device",
        "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0",
        "-pidfile", str(vm.pidfile), "-daemonize",
    ]


def pid(vm: Vm) -> int | None:
    """QEMU's pid while it runs (checked: its command line names this VM's disk)."""
    try:
        value = int(vm.pidfile.read_text().strip())
        if str(vm.disk).encode() in Path(f"/proc/{value}/cmdline").read_bytes():
            return value
    except (OSError, ValueError):
        pass
    return None


def power_on(runner: Runner, vm: Vm, boot: Boot, node: str) -> None:
    if pid(vm) is not None:
        return
    require(QEMU)
    for sock in (vm.qmp, vm.qga):
        sock.unlink(missing_ok=True)
    with vm.console.open("ab") as fh:
        fh.write(f"\n=== pgha lab: power on ({accel()}) {time.strftime('%H:%M:%S')} ===\n"
                 .encode())
    runner.run(argv(vm, boot, node), timeout=60)


def power_off(vm: Vm, wait: float = 10) -> bool:
    """Hard power-off: SIGKILL the QEMU process (the guest gets no shutdown)."""
    value = pid(vm)
    if value is None:
        return False
    os.kill(value, signal.SIGKILL)
    deadline = time.monotonic() + wait
    while pid(vm) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def _chat(path: Path, messages: Sequence[dict[str, Any]], timeout: float,
          greeting: bool) -> list[dict[str, Any]]:
    """Send JSON messages on a QMP/QGA socket, one reply each (QMP: after its greeting)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        stream = sock.makefile("rwb")
        if greeting:
            stream.readline()
        replies = []
        for msg in messages:
            stream.write(json.dumps(msg).encode() + b"\n")
            stream.flush()
            while True:
                reply = json.loads(stream.readline() or b"{}")
                if "event" not in reply:
                    break
            if "error" in reply:
                raise PghaError(f"{path.name}: {msg.get('execute')}: {reply['error']}")
            replies.append(reply)
        return replies


def qmp(vm: Vm, command: str, **arguments: Any) -> Any:
    msgs: list[dict[str, Any]] = [{"execute": "qmp_capabilities"}, {"execute": command}]
    if arguments:
        msgs[1]["arguments"] = arguments
    return _chat(vm.qmp, msgs, 10, greeting=True)[1].get("return")


def qga(vm: Vm, command: str, timeout: float = 10, **arguments: Any) -> Any:
    msg: dict[str, Any] = {"execute": command}
    if arguments:
        msg["arguments"] = arguments
    sync = {"execute": "guest-sync", "arguments": {"id": int(time.time() * 1000) % 2**31}}
    return _chat(vm.qga, [sync, msg], timeout, greeting=False)[1].get("return")


def guest_ready(vm: Vm) -> bool:
    try:
        qga(vm, "guest-ping", timeout=3)
        return True
    except (OSError, ValueError, PghaError):
        return False


def guest_exec(vm: Vm, command: Sequence[str], timeout: float = 60) -> tuple[int, str, str]:
    """Run a command in the guest (guest agent); (exit code, stdout, stderr)."""
    started = qga(vm, "guest-exec", path=command[0], arg=list(command[1:]),
                  **{"capture-output": True})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = qga(vm, "guest-exec-status", pid=started["pid"])
        if status.get("exited"):
            out = base64.b64decode(status.get("out-data", "")).decode(errors="replace")
            err = base64.b64decode(status.get("err-data", "")).decode(errors="replace")
            return int(status.get("exitcode", -1)), out, err
        time.sleep(0.2)
    raise PghaError(f"{vm.name}: `{' '.join(command)}` did not finish within {timeout:g} s")


def text(vm: Vm, command: Sequence[str], timeout: float = 60) -> str:
    return guest_exec(vm, command, timeout)[1].strip()


def boots(vm: Vm) -> int:
    """How many times the guest kernel started, as its console tells."""
    try:
        return vm.console.read_bytes().count(b"Linux version ")
    except OSError:
        return 0
