"""The systemd engine: each lab node is a machine with systemd as PID 1, booted like a VM.

Boundary: the host side of a machine's life (disk, seed disk, power, commands inside it,
clean-up). builder.lab.lab decides when; builder.lab.machine_init is the process that runs a
machine; builder.images.rootfs makes the image; builder.images.provides the dependency stand-ins.

A node's folder (<lab>/<node>/) holds `upper/` and `work/` (the machine's own writable layer:
its "disk"), `root/` (the overlay of upper/ on the cached image: the machine's /, mounted in
the host while the lab runs), `console.log` (what the supervisor and systemd print),
`machine.pid` (host PID of the machine's PID 1 while it runs) and `supervisor.pid`.

Boot of a node, as a VM image plus a seed would: the overlay is mounted; the first time, the
pgha-lab-provides RPM and the node's role RPMs are installed into it with `rpm --root` and
their scriptlets (pgha-common's %post presets pgha-firstboot.service on); the node's NoCloud
seed ISO (the one `pgha-build seeds` makes, with the node's real paths) is attached read-only
to a loop device, which the machine sees as /dev/sr0 labelled cidata; then the supervisor
starts systemd, which runs pgha-firstboot.service, which starts etcd, Patroni and HAProxy
through systemd with the RPMs' drop-ins. Patroni comes from the lab venv, bind-mounted
read-only at /opt/pgha-lab/venv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.run import Runner, require
from builder.lab import machine_init
from builder.model.platform import LAB_VENV

SETTLED = ("running", "degraded", "maintenance", "stopping")
CGROUP_PARENTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
TOOLS = ("nsenter", "unshare", "losetup", "mount", "umount", "chroot")


@dataclass(frozen=True)
class Machine:
    """One node as a machine: its folder and network namespace."""

    base: Path
    netns: str

    @property
    def name(self) -> str:
        return self.base.name

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def upper(self) -> Path:
        return self.base / "upper"

    @property
    def work(self) -> Path:
        return self.base / "work"

    @property
    def console(self) -> Path:
        return self.base / "console.log"

    @property
    def pidfile(self) -> Path:
        return self.base / "machine.pid"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.base / "supervisor.pid"

    @property
    def installed_marker(self) -> Path:
        return self.base / ".rpms-installed"

    @property
    def cgroup(self) -> Path:
        return cgroup_parent() / "pgha-lab" / self.netns


def cgroup_parent() -> Path:
    """Where machines' cgroups go: the cgroup2 hierarchy (/sys/fs/cgroup/unified on a hybrid
    host like this one, /sys/fs/cgroup on a unified one)."""
    for parent in CGROUP_PARENTS:
        if (parent / "cgroup.procs").exists() and (parent / "cgroup.subtree_control").exists():
            return parent
    raise PghaError("no cgroup2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup",
                    hint="the systemd engine needs cgroup v2 mounted; use --engine process")


def mounted(path: Path) -> bool:
    return os.path.ismount(path)


def mount_root(runner: Runner, m: Machine, image: Path) -> None:
    """The machine's / : its own layer over the shared image (kept across boots)."""
    if mounted(m.root):
        return
    for folder in (m.upper, m.work, m.root):
        folder.mkdir(parents=True, exist_ok=True)
    os.chmod(m.base, 0o755)
    runner.run(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={image},upperdir={m.upper},workdir={m.work}", m.root])


def install_rpms(runner: Runner, m: Machine, rpms: Sequence[Path]) -> str:
    """rpm -i with dependencies and scriptlets, as Anaconda installs into /mnt/sysimage; once
    per machine disk. Returns rpm's output (the scriptlets' messages)."""
    if m.installed_marker.exists():
        return ""
    proc = runner.run(["rpm", "--root", m.root, "--dbpath", "/var/lib/rpm", "-i", "-v", *rpms],
                      env={"HOME": str(m.base), "LC_ALL": "C"})
    m.installed_marker.touch()
    return (proc.stdout + proc.stderr).decode(errors="replace")


def _loops(runner: Runner) -> list[dict[str, str]]:
    out = runner.run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"]).stdout
    return list(json.loads(out or b'{"loopdevices": []}').get("loopdevices", []))


def loops_of(runner: Runner, prefix: Path) -> list[str]:
    """Loop devices whose backing file is under `prefix`."""
    return [d["name"] for d in _loops(runner)
            if str(d.get("back-file") or "").startswith(str(prefix) + "/")]


def attach_seed(runner: Runner, iso: Path) -> str:
    """The seed ISO on a read-only loop device (reused if attached); returns MAJOR:MINOR."""
    found = [d["name"] for d in _loops(runner) if d.get("back-file") == str(iso)]
    dev = found[0] if found else runner.run(
        ["losetup", "--find", "--show", "--read-only", iso]).stdout.decode().strip()
    rdev = os.stat(dev).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def pid1(m: Machine) -> int | None:
    """Host PID of the machine's PID 1 while it runs (checked: its root is the machine's)."""
    try:
        pid = int(m.pidfile.read_text().strip())
        if os.readlink(f"/proc/{pid}/root") == str(m.root):
            return pid
    except (OSError, ValueError):
        pass
    return None


def _supervisor_pid(m: Machine) -> int | None:
    try:
        pid = int(m.supervisor_pidfile.read_text().strip())
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if b"supervise" in cmd and str(m.root).encode() in cmd else None


def power_on(m: Machine, seed_dev: str) -> None:
    """Start the machine's supervisor (it outlives this command, like the relay)."""
    if _supervisor_pid(m) is not None:
        log.info("%s: already running", m.name)
        return
    m.cgroup.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, machine_init.__file__, "supervise", "--root", str(m.root),
            "--netns", m.netns, "--cgroup", str(m.cgroup), "--pidfile", str(m.pidfile),
            "--seed-dev", seed_dev, "--bind", f"{LAB_VENV}:{LAB_VENV}"]
    with m.console.open("ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    m.supervisor_pidfile.write_text(f"{proc.pid}\n")


def wait_pid1(m: Machine, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = pid1(m)
        if pid is not None:
            return pid
        time.sleep(0.05)
    raise PghaError(f"{m.name}: the machine did not start",
                    hint=f"see {m.console}")


def exec_in(runner: Runner, m: Machine, argv: Sequence[str], check: bool = True,
            timeout: float | None = 60) -> subprocess.CompletedProcess[bytes]:
    """Run a command inside the running machine (all its namespaces, its root)."""
    pid = pid1(m)
    if pid is None:
        raise PghaError(f"{m.name}: the machine is not running", hint="pgha-build lab up")
    return runner.run(["nsenter", "-t", str(pid), "-a", "-r", "-w", *argv], check=check,
                      timeout=timeout, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                            "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0"})


def text_in(runner: Runner, m: Machine, argv: Sequence[str]) -> str:
    return exec_in(runner, m, argv, check=False).stdout.decode(errors="replace").strip()


def system_state(runner: Runner, m: Machine) -> str:
    if pid1(m) is None:
        return "down"
    return text_in(runner, m, ["systemctl", "is-system-running"]) or "unknown"


def wait_settled(runner: Runner, m: Machine, timeout: float) -> str:
    """Wait until boot is over (first boot included: pgha-firstboot is part of it)."""
    deadline = time.monotonic() + timeout
    state = "down"
    while time.monotonic() < deadline:
        state = system_state(runner, m)
        if state in SETTLED:
            return state
        time.sleep(0.5)
    raise PghaError(f"{m.name}: boot did not finish within {timeout:g} s (state {state})",
                    hint=f"pgha-build lab exec {m.name} -- systemctl list-jobs; see {m.console}")


def unit_property(runner: Runner, m: Machine, unit: str, prop: str) -> str:
    return text_in(runner, m, ["systemctl", "show", "--value", "-p", prop, unit])


def reboot(runner: Runner, m: Machine) -> int:
    """`systemctl reboot` inside; the supervisor boots it again. Returns the new PID 1."""
    old = pid1(m)
    exec_in(runner, m, ["systemctl", "reboot"], check=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pid = pid1(m)
        if pid is not None and pid != old:
            return pid
        time.sleep(0.05)
    raise PghaError(f"{m.name}: did not come back from reboot", hint=f"see {m.console}")


def crash(m: Machine) -> bool:
    """SIGKILL PID 1: the kernel kills every process of the machine (a host crash)."""
    pid = pid1(m)
    if pid is None:
        return False
    os.kill(pid, signal.SIGKILL)
    return True


def power_off(runner: Runner, m: Machine, wait: float = 10) -> None:
    """Stop the machine for good: SIGKILL its PID 1 (it ignores SIGTERM), then its
    supervisor ends; unmount its disk and remove its cgroup."""
    crash(m)
    sup = _supervisor_pid(m)
    deadline = time.monotonic() + wait
    while (sup and _supervisor_pid(m)) and time.monotonic() < deadline:
        time.sleep(0.05)
    if sup and _supervisor_pid(m):
        os.kill(sup, signal.SIGKILL)
    m.supervisor_pidfile.unlink(missing_ok=True)
    machine_init.remove_cgroup(str(m.cgroup))
    if mounted(m.root):
        runner.run(["umount", m.root])


def detach_loops(runner: Runner, lab_dir: Path) -> None:
    for dev in loops_of(runner, lab_dir):
        runner.run(["losetup", "--detach", dev], check=False)


def machines_in(lab_dir: Path, netns_of: dict[str, str]) -> list[Machine]:
    return [Machine(lab_dir / name, ns) for name, ns in netns_of.items()
            if (lab_dir / name / "upper").exists()]


def down(runner: Runner, lab_dir: Path, netns_of: dict[str, str]) -> None:
    """Every machine of the lab off, disks unmounted, seed loops detached, cgroups gone."""
    for m in machines_in(lab_dir, netns_of):
        power_off(runner, m)
    detach_loops(runner, lab_dir)
    try:
        (cgroup_parent() / "pgha-lab").rmdir()
    except (OSError, PghaError):
        pass


def leftovers(runner: Runner, lab_dir: Path, netns_of: dict[str, str]) -> list[str]:
    """Mounts, loop devices, cgroups and processes of the lab's machines still there."""
    found = [f"mount {line.split()[4]}" for line in
             Path("/proc/self/mountinfo").read_text().splitlines()
             if line.split()[4].startswith(str(lab_dir) + "/")]
    found += [f"loop device {dev}" for dev in loops_of(runner, lab_dir)]
    for ns in netns_of.values():
        for parent in CGROUP_PARENTS:
            if (parent / "pgha-lab" / ns).exists():
                found.append(f"cgroup {parent / 'pgha-lab' / ns}")
    found += [f"process {pid} (root {root})" for pid, root in _rooted_pids(lab_dir)]
    return found


def _rooted_pids(lab_dir: Path) -> list[tuple[int, str]]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                root = os.readlink(proc / "root")
            except OSError:
                continue
            if root.startswith(str(lab_dir) + "/"):
                pids.append((int(proc.name), root))
    return pids


def preflight() -> None:
    require(*TOOLS)
    cgroup_parent()
