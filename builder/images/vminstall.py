"""The virt-install backend: one headless RHEL 8 install of a role into a qcow2 disk.

The build-time kickstart is injected into the installer's initrd (`--initrd-inject`,
`inst.ks=file:/<role>.ks`); the pgha repository (and a local install tree) is served to the
installer by builder.core.httpserve, bound to the host side of the VM network (the libvirt network's
bridge address, or 127.0.0.1 seen as 10.0.2.2 on user-mode networking). The serial console goes
to output/<cluster>/logs/, its last line is reported as progress, the install is limited by a
timeout, and the domain is destroyed and undefined afterwards whatever happens.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.core.errors import PghaError, ToolFailed
from builder.core.log import log
from builder.core.run import Runner

LIBVIRT_URI = "qemu:///system"
USER_NET_HOST = "10.0.2.2"  # the host as seen from a user-mode (slirp) guest
DEFAULT_NET_HOST = "192.168.122.1"  # libvirt's stock "default" network
OS_VARIANT = "rhel8.0"  # every osinfo-db knows it; device defaults are the same for all 8.x
KVM_GET_API_VERSION = 0xAE00
PROGRESS_EVERY_S = 30


@dataclass(frozen=True)
class VMSpec:
    name: str
    disk: Path
    memory_mib: int
    vcpus: int
    location: str
    kickstart: Path
    network: str
    extra_args: tuple[str, ...]
    console_log: Path
    timeout_min: int
    connect: str = LIBVIRT_URI
    virt_type: str | None = "kvm"  # "kvm", "qemu" (software), None: the driver's default

    def key_fields(self) -> dict[str, object]:
        """What changes the image (no output paths)."""
        return {"memory": self.memory_mib, "vcpus": self.vcpus, "network": self.network,
                "extra_args": self.extra_args,
                "os_variant": OS_VARIANT, "kickstart": self.kickstart.name}


def kernel_args(spec: VMSpec) -> str:
    return " ".join([f"inst.ks=file:/{spec.kickstart.name}", "inst.text", "inst.cmdline",
                     "console=ttyS0,115200n8", *spec.extra_args])


def virt_install_argv(spec: VMSpec, dry_run: bool = False) -> list[str]:
    net = "user,model=virtio" if spec.network == "user" else f"network={spec.network},model=virtio"
    argv = ["virt-install", "--connect", spec.connect, "--name", spec.name,
            "--memory", str(spec.memory_mib), "--vcpus", str(spec.vcpus)]
    if spec.virt_type:
        argv += ["--virt-type", spec.virt_type]
    argv += ["--os-variant", OS_VARIANT, "--location", spec.location,
             "--disk", f"path={spec.disk},format=qcow2,bus=virtio",
             "--network", net,
             "--initrd-inject", str(spec.kickstart), "--extra-args", kernel_args(spec),
             "--graphics", "none", "--serial", f"file,path={spec.console_log}",
             "--noautoconsole", "--noreboot", "--wait", str(spec.timeout_min)]
    return argv + (["--dry-run", "--print-xml"] if dry_run else [])


def cleanup_argvs(spec: VMSpec) -> list[list[str]]:
    return [["virsh", "-c", spec.connect, "destroy", spec.name],
            ["virsh", "-c", spec.connect, "undefine", spec.name, "--nvram"]]


def kvm_status(dev: Path = Path("/dev/kvm"), cpuinfo: Path = Path("/proc/cpuinfo")
               ) -> tuple[bool, str]:
    """(usable, one line for the user). Usable means /dev/kvm opens and answers the API call."""
    if not dev.exists():
        return False, ("KVM: /dev/kvm is missing: the install runs in software emulation "
                       "(many times slower); enable VT-x/AMD-V or load kvm_intel/kvm_amd")
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.ioctl(fd, KVM_GET_API_VERSION)
        finally:
            os.close(fd)
    except OSError as exc:
        return False, (f"KVM: /dev/kvm is not usable ({exc.strerror}): software emulation; "
                       "add your user to the kvm group or run as root")
    try:
        nested = " hypervisor" in cpuinfo.read_text()
    except OSError:
        nested = False
    if nested:
        return True, ("KVM: /dev/kvm works but this host is itself a VM (nested): guests may "
                      "hang; if the install makes no progress, rerun with --no-kvm")
    return True, "KVM: /dev/kvm works"


def network_host(runner: Runner, connect: str, network: str,
                 dry_run: bool = False) -> tuple[str, str]:
    """(address to bind the HTTP server to, address the guest uses to reach it)."""
    if network == "user":
        return "127.0.0.1", USER_NET_HOST
    try:
        xml = runner.run(["virsh", "-c", connect, "net-dumpxml", network]).stdout
        ip = ET.fromstring(xml).find("ip")
        if ip is None or not ip.get("address"):
            raise PghaError(f"libvirt network '{network}' has no host address",
                            hint="use a NAT/routed network, or image.network: user")
        address = str(ip.get("address"))
        return address, address
    except (PghaError, ET.ParseError):
        if dry_run:
            return DEFAULT_NET_HOST, DEFAULT_NET_HOST
        raise


def _domain_state(runner: Runner, spec: VMSpec) -> str:
    proc = runner.run(["virsh", "-c", spec.connect, "domstate", spec.name], check=False)
    return proc.stdout.decode(errors="replace").strip() if proc.returncode == 0 else "gone"


def _last_line(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 4096))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return "(no console output yet)"
    lines = [ln for ln in lines if ln]
    return lines[-1][:120] if lines else "(no console output yet)"


@contextmanager
def progress(spec: VMSpec) -> Iterator[None]:
    """Report elapsed time and the console's last line every PROGRESS_EVERY_S seconds."""
    stop = threading.Event()
    start = time.monotonic()

    def report() -> None:
        while not stop.wait(PROGRESS_EVERY_S):
            mins = (time.monotonic() - start) / 60
            log.info("install %s: %.0f/%d min: %s", spec.name, mins, spec.timeout_min,
                     _last_line(spec.console_log))

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


def install(runner: Runner, spec: VMSpec) -> None:
    """Run the install; the domain is always removed; the disk is removed unless it succeeded."""
    for argv in cleanup_argvs(spec):  # a domain left by an interrupted earlier run
        runner.run(argv, check=False)
    spec.console_log.parent.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        with progress(spec):
            runner.run(virt_install_argv(spec))
        state = _domain_state(runner, spec)
        if state not in ("shut off", "gone"):
            raise PghaError(f"the install of {spec.name} did not finish within "
                            f"{spec.timeout_min} min (domain {state})",
                            hint=f"see {spec.console_log}; raise image.timeout_min if slow")
        ok = True
    except ToolFailed as exc:
        exc.hint = exc.hint or f"see the serial console log {spec.console_log}"
        raise
    finally:
        for argv in cleanup_argvs(spec):
            runner.run(argv, check=False)
        if not ok:
            spec.disk.unlink(missing_ok=True)
