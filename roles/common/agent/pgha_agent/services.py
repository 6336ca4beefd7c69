"""Starting the role's services: the `systemd` starter (a node) and the `process` starter
(tests and the local lab).

Boundary: a starter knows how to prepare, disable, start and check one service; the order of
services and the health waits belong to apply.py. Both starters are idempotent.

systemd: `systemctl enable UNIT` then `systemctl start --no-block
--job-mode=ignore-dependencies UNIT`. The role units are ordered After=pgha-firstboot.service
(so nothing starts on boot before the seed is applied), and this agent is a oneshot that is
still activating while it waits for health: a normal start job would wait for the agent to
finish and deadlock. ignore-dependencies starts the unit now; the agent itself keeps the order.

process: runs `argv` as `user` in its own session (working directory /), with a clean
environment (PATH, HOME, USER, LOGNAME, SHELL, LANG) plus the KEY=VALUE lines of `env_file`
(nothing inherited: no PGPASSWORD),
output appended to <root>/var/log/pgha/<name>.log, pid in <root>/run/pgha/<name>.pid. As root it
drops to the user (setgid, initgroups, setuid); otherwise it runs as the current user. With
--netns NAME the argv is prefixed with `ip netns exec NAME` (and, as root, `setpriv` drops
privileges after entering the namespace, since `ip netns exec` itself needs root).
"""

import os
import pwd
import signal
import subprocess

from pgha_agent import run
from pgha_agent.envfile import parse_env_file
from pgha_agent.errors import ApplyFailed, ServiceFailed
from pgha_agent.log import LOG
from pgha_agent.rootfs import read_regular

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LOG_DIR = "/var/log/pgha"
RUN_DIR = "/run/pgha"


def unit_name(name):
    return name if "." in name else name + ".service"


class SystemdStarter(object):
    name = "systemd"

    def prepare(self):
        run.run(["systemctl", "daemon-reload"])

    def disable(self, name):
        result = run.run(["systemctl", "disable", "--now", unit_name(name)], check=False)
        if result.returncode == 0:
            LOG.info("disabled %s", unit_name(name))
        else:
            LOG.info("not disabling %s: %s", unit_name(name),
                     (result.stderr.strip().splitlines() or ["not installed"])[-1])

    def start(self, svc):
        unit = unit_name(svc["name"])
        run.run(["systemctl", "enable", unit])
        run.run(["systemctl", "start", "--no-block", "--job-mode=ignore-dependencies", unit])
        LOG.info("%s: enabled and started", unit)

    def running(self, svc):
        unit = unit_name(svc["name"])
        return run.run(["systemctl", "is-active", unit], check=False).stdout.strip() == "active"

    def reload(self, svc):
        """`systemctl reload` (the unit's ExecReload sends the signal the seed names)."""
        unit = unit_name(svc["name"])
        run.run(["systemctl", "reload", unit])
        LOG.info("%s: reloaded (new configuration and certificates)", unit)

    def check(self, svc):
        unit = unit_name(svc["name"])
        state = run.run(["systemctl", "is-active", unit], check=False).stdout.strip()
        if state == "failed":
            raise ServiceFailed("{} failed to start: see journalctl -u {}".format(unit, unit))


def clean_env(account):
    return {"PATH": CLEAN_PATH, "HOME": account.pw_dir or "/", "USER": account.pw_name,
            "LOGNAME": account.pw_name, "SHELL": "/bin/sh", "LANG": "C.UTF-8"}


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/{}/stat".format(pid)) as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def is_service(pid, argv):
    """True if process `pid` runs argv[0] (as its program or, for an interpreter, its
    script): what a PID file names must be the service before it gets a signal."""
    try:
        with open("/proc/{}/cmdline".format(pid), "rb") as fh:
            cmdline = fh.read().split(b"\0")
    except OSError:
        return False
    want = os.path.basename(argv[0]).encode() if argv else b""
    return bool(want) and any(os.path.basename(a) == want for a in cmdline[:2])


def _drop_to(account):
    def preexec():
        os.setgid(account.pw_gid)
        os.initgroups(account.pw_name, account.pw_gid)
        os.setuid(account.pw_uid)
    return preexec


class ProcessStarter(object):
    name = "process"

    def __init__(self, root, netns=None):
        self.root = root
        self.netns = netns
        self.procs = {}

    def prepare(self):
        self.root.makedirs(LOG_DIR, 0o755)
        self.root.makedirs(RUN_DIR, 0o755)

    def disable(self, name):
        LOG.debug("process starter: nothing to disable for %s", name)

    def _account(self, user):
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.getuid())
            if user != me.pw_name:
                LOG.debug("not root: running as %s instead of %s", me.pw_name, user)
            return me, None
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise ServiceFailed("cannot start as user {}: no such user".format(user))
        return account, account

    def _argv(self, svc, drop):
        argv = list(svc["argv"])
        if self.netns is None:
            return argv, (_drop_to(drop) if drop else None)
        prefix = ["ip", "netns", "exec", self.netns]
        if drop is not None:
            prefix += ["setpriv", "--reuid={}".format(drop.pw_uid),
                       "--regid={}".format(drop.pw_gid), "--init-groups", "--"]
        return prefix + argv, None

    def _env_path(self, env_file):
        """env_file is a node path (under --root); one already inside --root is used as is
        (seeds rendered with a root prefix, as the lab does)."""
        path = self.root.path(env_file)
        base = self.root.base.rstrip("/") + "/"
        if not os.path.exists(path) and env_file.startswith(base) and not self.root.live:
            return env_file
        return path

    def _env(self, svc, account):
        env = clean_env(account)
        if svc.get("env_file"):
            path = self._env_path(svc["env_file"])
            try:
                data = read_regular(path, svc["env_file"])
                env.update(parse_env_file(data.decode("utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise ServiceFailed("{}: cannot read env_file {}: {}".format(
                    svc["name"], svc["env_file"], getattr(exc, "strerror", None) or exc))
            except ApplyFailed as exc:
                raise ServiceFailed("{}: {}".format(svc["name"], exc))
        return env

    def _running(self, svc):
        """The pid in the service's PID file if that process is alive and is the service (its
        command is the seed's argv[0]): a stale or planted PID file never gets a signal."""
        name = svc["name"]
        pidfile = "{}/{}.pid".format(RUN_DIR, name)
        try:
            data = self.root.read_file(pidfile)
            if data is None:
                return None
            pid = int(data.strip())
        except (ApplyFailed, ValueError):
            LOG.warning("%s: ignoring PID file %s (not a plain file holding a number)", name,
                        pidfile)
            return None
        if pid <= 1 or not pid_alive(pid):
            return None
        if not is_service(pid, svc["argv"]):
            LOG.warning("%s: PID file %s names pid %d, which is another program: ignoring it",
                        name, pidfile, pid)
            return None
        return pid

    def running(self, svc):
        return self._running(svc) is not None

    def reload(self, svc):
        """Send the service's reload signal (SIGHUP, SIGUSR2) to its process."""
        name = svc["name"]
        pid = self._running(svc)
        if pid is None:
            return
        sig = getattr(signal, "SIG" + svc["reload"])
        try:
            os.kill(pid, sig)
        except OSError as exc:
            raise ServiceFailed("{}: cannot signal pid {}: {}".format(name, pid, exc.strerror))
        LOG.info("%s: reloaded with SIG%s (pid %d)", name, svc["reload"], pid)

    def start(self, svc):
        name = svc["name"]
        pid = self._running(svc)
        if pid is not None:
            LOG.info("%s: already running (pid %d), not starting another", name, pid)
            self.procs[name] = pid
            return
        account, drop = self._account(svc["user"])
        argv, preexec = self._argv(svc, drop)
        logpath = "{}/{}.log".format(LOG_DIR, name)
        try:
            with self.root.open_append(logpath) as logfh:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logfh,
                                        stderr=subprocess.STDOUT, env=self._env(svc, account),
                                        cwd="/", preexec_fn=preexec,
                                        start_new_session=True, close_fds=True)
        except OSError as exc:
            raise ServiceFailed("{}: cannot start {}: {}".format(name, argv[0], exc.strerror))
        self.procs[name] = proc
        self.root.write_file("{}/{}.pid".format(RUN_DIR, name), "{}\n".format(proc.pid).encode())
        LOG.info("%s: started as %s, pid %d: %s (log %s/%s.log)", name, account.pw_name,
                 proc.pid, run.quote(argv), LOG_DIR, name)

    def check(self, svc):
        name = svc["name"]
        proc = self.procs.get(name)
        if isinstance(proc, subprocess.Popen):
            code = proc.poll()
            if code is not None:
                raise ServiceFailed("{} exited with status {}: see {}/{}.log".format(
                    name, code, LOG_DIR, name))
        elif isinstance(proc, int) and not pid_alive(proc):
            raise ServiceFailed("{} (pid {}) is gone: see {}/{}.log".format(
                name, proc, LOG_DIR, name))


def make(kind, root, netns=None):
    if kind == "systemd":
        if netns:
            raise ApplyFailed("--netns works with --services process only")
        return SystemdStarter()
    return ProcessStarter(root, netns)
