"""Running tools: every command that runs to completion goes through Runner.run.

In builder/ processes are started here and in seven other places only, each for a reason:
- builder/lab/hostpath.py: subprocess.Popen of the lab's relay, which must outlive the command
  (own session, pid file);
- builder/lab/nodes.py: subprocess.Popen of each lab node's first-boot agent, all at once (one
  per node, waited for together; with the systemd engine, a changed seed's agent run inside
  a machine through nsenter); the agents start the node's services;
- builder/cli/lab_cmds.py: os.execve of psql (`lab psql`), so the terminal is psql's, and
  subprocess.run of `lab exec`'s command, whose exit status and terminal are the user's;
- builder/lab/machine.py: subprocess.Popen of each systemd-engine machine's supervisor, which
  must outlive the command (own session, pid file);
- builder/lab/machine_init.py: that supervisor (a script: subprocess.Popen of each boot, which
  it waits for) and, inside the machine's namespaces, `mount` runs and os.execve of systemd;
- builder/lab/monitor.py: subprocess.Popen of the lab's Prometheus (`lab up --monitoring`),
  which must outlive the command (own session, pid file);
- builder/lab/preflight.py: subprocess.run of quick probes with a timeout (`ip netns list`, the
  Patroni venv's python), whose failure is a preflight line, not a ToolFailed.

argv lists only (never a shell); each command is logged in copy-pasteable form at debug level;
a missing tool raises ToolMissing naming the Debian and RHEL packages that provide it; a non-zero
exit raises ToolFailed with the command and the tail of stderr.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.errors import ToolFailed, ToolMissing
from builder.core.log import log

# tool -> (Debian package, RHEL 8 package)
TOOL_PACKAGES: dict[str, tuple[str, str]] = {
    "rpmbuild": ("rpm", "rpm-build"),
    "rpm": ("rpm", "rpm"),
    "rpm2cpio": ("rpm", "rpm"),
    "rpmsign": ("rpm", "rpm-sign"),
    "gpg": ("gpg gpg-agent", "gnupg2"),
    "createrepo_c": ("createrepo-c", "createrepo_c"),
    "rpmlint": ("rpmlint", "rpmlint"),
    "xorriso": ("xorriso", "xorriso"),
    "qemu-img": ("qemu-utils", "qemu-img"),
    "virt-install": ("virtinst", "virt-install"),
    "virt-customize": ("guestfs-tools", "guestfs-tools"),
    "virsh": ("libvirt-clients", "libvirt-client"),
    "grub-mknetdir": ("grub-efi-amd64-bin", "grub2-tools-extra"),
    "haproxy": ("haproxy", "haproxy"),
    "prometheus": ("prometheus", "prometheus2 (prometheus-rpm)"),
    "promtool": ("prometheus", "prometheus2 (prometheus-rpm)"),
    "etcd": ("etcd-server", "etcd"),
    "patroni": ("pip install 'patroni[etcd3]'", "patroni patroni-etcd"),
    "ip": ("iproute2", "iproute"),
    "cpio": ("cpio", "cpio"),
    "dnf": ("dnf", "dnf"),
}

STDERR_TAIL_LINES = 15


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def missing_tool_error(tool: str) -> ToolMissing:
    deb, rhel = TOOL_PACKAGES.get(tool, (tool, tool))
    return ToolMissing(
        f"required tool '{tool}' was not found on PATH",
        hint=f"install it: Debian `apt-get install {deb}`, RHEL 8 `dnf install {rhel}`"
        if not deb.startswith("pip")
        else f"install it: `{deb}` (RHEL 8: `dnf install {rhel}`)",
    )


def require(*tools: str) -> None:
    """Preflight: raise ToolMissing for the first tool not on PATH."""
    for tool in tools:
        if shutil.which(tool) is None:
            raise missing_tool_error(tool)


@dataclass
class Runner:
    """Runs external commands. Tests may subclass to record argv."""

    extra_env: dict[str, str] = field(default_factory=dict)

    def run(
        self,
        argv: Sequence[str | Path],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        input: bytes | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        args = [str(a) for a in argv]
        full_env = dict(os.environ)
        full_env.update(self.extra_env)
        if env:
            full_env.update(env)
        prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        log.debug("$ %s%s%s", f"(cd {shlex.quote(str(cwd))} && " if cwd else "",
                  (prefix + " ") if prefix else "", quote(args) + (")" if cwd else ""))
        try:
            proc = subprocess.run(
                args, cwd=cwd, env=full_env, input=input, capture_output=True, check=False,
                timeout=timeout,
            )
        except FileNotFoundError as exc:
            raise missing_tool_error(args[0]) from exc
        except subprocess.TimeoutExpired:
            raise ToolFailed(f"{Path(args[0]).name} did not finish within {timeout:g} s and was "
                             f"stopped: {quote(args)}", argv=args, stderr_tail="") from None
        if check and proc.returncode != 0:
            tail = "\n".join(
                proc.stderr.decode(errors="replace").strip().splitlines()[-STDERR_TAIL_LINES:]
            )
            if not tail:
                tail = "\n".join(proc.stdout.decode(errors="replace").strip().splitlines()[-5:])
            raise ToolFailed(
                f"{Path(args[0]).name} failed with exit code {proc.returncode}: {quote(args)}",
                argv=args,
                stderr_tail=tail,
            )
        return proc
