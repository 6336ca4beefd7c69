"""The machine's "hypervisor" and its first instructions: run as a script, standard library only.

`supervise` (on the host, one long-running process per machine, started by builder.lab.machine):
boots the machine and boots it again when it reboots, like a VM with on_reboot=restart. Each boot
runs, in the node's own cgroup (so the machine's systemd sees only its own processes):

    nsenter --net=/run/netns/<netns> unshare --pid --fork --kill-child --mount --uts --cgroup \\
        --propagation private python3 machine_init.py init ...

and writes the host PID of the machine's PID 1 to --pidfile while it runs. How PID 1 ended says
what happened: SIGHUP = the machine rebooted (boot again), SIGINT = powered off, SIGKILL = killed
from outside (a host crash); anything but a reboot ends the supervisor.

`init` (inside the new namespaces, before systemd): mounts what a container manager gives its
payload (/proc with /proc/sys read-only, /sys read-only, the machine's own cgroup2 tree, a small
/dev with only the basic devices and the machine's seed disk as /dev/sr0 with its
/dev/disk/by-label/cidata link, as udev makes it in a VM, /run), bind-mounts the given host
folders, then chroots into the machine's root and executes systemd as PID 1 with
container=other. Nothing in it reaches the host's devices or kernel settings: /proc/sys and
/sys are read-only, so the roles' sysctl files are not applied to the shared kernel.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid

SYSTEMD = "/lib/systemd/systemd"
REBOOT, POWEROFF = signal.SIGHUP, signal.SIGINT
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8),
           ("urandom", 1, 9), ("tty", 5, 0))
LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx"))


def say(text):
    sys.stderr.write(f"pgha-machine: {text}\n")
    sys.stderr.flush()


def mount(*args):
    subprocess.run(["mount"] + list(args), check=True)


def _in(root, path):
    return os.path.join(root, path.lstrip("/"))


def _dev(root, seed_dev):
    dev = _in(root, "/dev")
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,noexec", "tmpfs", dev)
    for name, major, minor in DEVICES:
        os.mknod(os.path.join(dev, name), 0o666 | 0o020000, os.makedev(major, minor))
        os.chmod(os.path.join(dev, name), 0o666)
    for sub in ("pts", "shm"):
        os.mkdir(os.path.join(dev, sub))
    mount("-t", "devpts", "-o", "newinstance,ptmxmode=0666,mode=620,gid=5", "devpts",
          os.path.join(dev, "pts"))
    mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", os.path.join(dev, "shm"))
    for name, target in LINKS:
        os.symlink(target, os.path.join(dev, name))
    if seed_dev:
        major, minor = (int(x) for x in seed_dev.split(":"))
        os.mknod(os.path.join(dev, "sr0"), 0o440 | 0o060000, os.makedev(major, minor))
        os.makedirs(os.path.join(dev, "disk", "by-label"))
        os.symlink("../../sr0", os.path.join(dev, "disk", "by-label", "cidata"))


def _boot_id(root):
    """A boot ID of this boot's own, as a VM gets from its kernel (the shared kernel's would make
    every boot of every machine one boot for the journal): bind-mounted over the kernel's."""
    target = _in(root, "/proc/sys/kernel/random/boot_id")
    fd, path = tempfile.mkstemp(prefix="pgha-boot-id-")
    with os.fdopen(fd, "w") as fh:
        fh.write(str(uuid.uuid4()) + "\n")
    os.chmod(path, 0o444)
    try:
        mount("--bind", path, target)
        mount("-o", "remount,bind,ro", target)
    finally:
        os.unlink(path)


def init(args):
    root = args.root
    mount("--make-rprivate", "/")
    mount("-t", "proc", "-o", "nosuid,nodev,noexec", "proc", _in(root, "/proc"))
    for ro in ("/proc/sys", "/proc/sysrq-trigger"):
        if not os.path.exists(_in(root, ro)):
            continue
        mount("--bind", _in(root, ro), _in(root, ro))
        mount("-o", "remount,bind,ro", _in(root, ro))
    _boot_id(root)
    mount("-t", "sysfs", "-o", "ro,nosuid,nodev,noexec", "sysfs", _in(root, "/sys"))
    mount("-t", "cgroup2", "-o", "nosuid,nodev,noexec", "cgroup2", _in(root, "/sys/fs/cgroup"))
    _dev(root, args.seed_dev)
    mount("-t", "tmpfs", "-o", "mode=755,nosuid,nodev", "tmpfs", _in(root, "/run"))
    for spec in args.bind:
        src, dst = spec.split(":", 1)
        mount("--bind", src, _in(root, dst))
        mount("-o", "remount,bind,ro", _in(root, dst))
    os.chroot(root)
    os.chdir("/")
    env = {"container": "other", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    os.execve(SYSTEMD, [SYSTEMD, "--system"], env)


def _join_cgroup(cgroup):
    def preexec():
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as fh:
            fh.write(str(os.getpid()))
    return preexec


def remove_cgroup(cgroup):
    """rmdir the machine's cgroup tree, deepest first (empty once its processes are gone)."""
    for dirpath, _dirs, _files in sorted(os.walk(cgroup), key=lambda w: -len(w[0])):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _pid1(launcher, timeout=10.0):
    """The host PID of the machine's PID 1: the child of `unshare --fork`."""
    deadline = time.monotonic() + timeout
    path = f"/proc/{launcher}/task/{launcher}/children"
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                kids = fh.read().split()
        except OSError:
            return None
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    return None


def how_it_ended(code):
    """(signal or None, words) for unshare's exit: it re-raises the signal that ended PID 1."""
    sig = -code if code < 0 else (code - 128 if code > 128 else None)
    words = {REBOOT: "rebooted", POWEROFF: "powered off", signal.SIGKILL: "killed"}
    if sig in words:
        return sig, words[sig]
    return sig, f"exited with status {code}"


def boot_once(args):
    os.makedirs(args.cgroup, exist_ok=True)
    argv = ["nsenter", "--net=/run/netns/" + args.netns, "unshare", "--pid", "--fork",
            "--kill-child", "--mount", "--uts", "--cgroup", "--propagation", "private",
            sys.executable, os.path.abspath(__file__), "init", "--root", args.root]
    if args.seed_dev:
        argv += ["--seed-dev", args.seed_dev]
    for spec in args.bind:
        argv += ["--bind", spec]
    # One thread only here, so preexec_fn is safe: the machine must start in its own cgroup.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                            preexec_fn=_join_cgroup(args.cgroup))  # noqa: PLW1509
    pid1 = _pid1(proc.pid)
    if pid1 is not None:
        with open(args.pidfile + ".tmp", "w") as fh:
            fh.write(f"{pid1}\n")
        os.replace(args.pidfile + ".tmp", args.pidfile)
        say(f"booted: PID 1 is host pid {pid1}")
    code = proc.wait()
    try:
        os.unlink(args.pidfile)
    except OSError:
        pass
    remove_cgroup(args.cgroup)
    return code


def supervise(args):
    boots = 0
    while True:
        boots += 1
        say(f"boot {boots}")
        sig, words = how_it_ended(boot_once(args))
        say(f"machine {words}")
        if sig != REBOOT:
            return 0


def parser():
    p = argparse.ArgumentParser(prog="machine_init")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("init", "supervise"):
        s = sub.add_parser(name)
        s.add_argument("--root", required=True)
        s.add_argument("--seed-dev", metavar="MAJOR:MINOR")
        s.add_argument("--bind", action="append", default=[], metavar="SRC:DST")
        if name == "supervise":
            s.add_argument("--netns", required=True)
            s.add_argument("--cgroup", required=True)
            s.add_argument("--pidfile", required=True)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if args.command == "init":
        init(args)
        return 1
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
