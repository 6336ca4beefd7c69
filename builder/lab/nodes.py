"""One lab node: its folder, the role RPMs installed into it, its seed, and its first boot.

A node's folder (<lab folder>/<node>/, see builder.lab.lab) holds `root/` (what would be the machine's /:
the RPM payloads, then everything the agent writes, the data directories, logs under
root/var/log/pgha/ and pid files under root/run/pgha/) and `seed/` (its NoCloud seed folder).
The seed is rendered with root_prefix=<root>, so every path inside the configs points into the
node's folder; the agent from root/usr/libexec/pgha/ then runs with --root <root>
--services process --netns <netns>, which starts the role services inside the namespace.
The agents run with subprocess.Popen (in parallel, one per node); all else via the Runner.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.run import Runner, quote
from builder.lab.net import NodeNet
from builder.model.cluster import Node
from builder.model.platform import Layout
from builder.model.secrets import Secrets
from builder.stages import seeds

AGENT = "usr/libexec/pgha/pgha-firstboot"
# The files a real image gets from its packages' users (postgres, etcd, haproxy): copied from
# this machine, so that `rpm --root` gives the role's folders their real owners.
ACCOUNT_FILES = ("/etc/passwd", "/etc/group")


@dataclass(frozen=True)
class NodeDirs:
    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def seed(self) -> Path:
        return self.base / "seed"

    @property
    def logs(self) -> Path:
        return self.root / "var" / "log" / "pgha"

    @property
    def pids(self) -> Path:
        return self.root / "run" / "pgha"

    @property
    def installed_marker(self) -> Path:
        return self.base / ".rpms-installed"


def base_image(dirs: NodeDirs, lay: Layout) -> None:
    """What the distribution's packages give a real node before the role RPMs: the accounts
    (so `rpm --root` finds postgres, etcd, haproxy) and PostgreSQL's home folder."""
    (dirs.root / "etc").mkdir(parents=True)
    for folder in (dirs.base, dirs.root):
        os.chmod(folder, 0o755)
    for account in ACCOUNT_FILES:
        shutil.copy2(account, dirs.root / account.lstrip("/"))
    home = dirs.root / lay.pg_home.lstrip("/")
    home.mkdir(parents=True, exist_ok=True)
    shutil.chown(home, lay.postgres_user, lay.postgres_user)


def install(runner: Runner, dirs: NodeDirs, lay: Layout, rpms: list[Path]) -> None:
    """Install the role RPMs' payloads into the node's root (once)."""
    if dirs.installed_marker.exists():
        return
    shutil.rmtree(dirs.root, ignore_errors=True)
    base_image(dirs, lay)
    runner.run(["rpm", "--root", dirs.root, "-i", "--nodeps", "--noscripts",
                "--define", "_dbpath /var/lib/rpm", *rpms], env={"HOME": str(dirs.base)})
    dirs.installed_marker.touch()


def write_seed(ctx: Context, node: Node, secrets: Secrets, dirs: NodeDirs) -> None:
    """Render the node's seed with every path under its root, into its seed folder."""
    seed = seeds.render_seed(ctx, node, secrets, root_prefix=str(dirs.root),
                             peer_root=lambda name: str(NodeDirs(dirs.base.parent / name).root))
    shutil.rmtree(dirs.seed, ignore_errors=True)
    for rel, text in seeds.seed_files(ctx, node, seed).items():
        path = dirs.seed / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)
        os.chmod(path, 0o600)
    os.chmod(dirs.seed, 0o700)


def boot(python: str, dirs: NodeDirs, netns: str, timeout: float) -> subprocess.Popen[bytes]:
    """Start the node's own first-boot agent (it writes the configs, starts the services and
    waits for their health). Nodes boot in parallel: etcd needs its peers to become healthy.
    --force: a node booted before (killed, now rejoining) is applied again; the agent never
    touches an existing data directory and does not start a service that is still running."""
    agent = dirs.root / AGENT
    if not agent.is_file():
        raise PghaError(f"lab: the first-boot agent is missing at {agent}",
                        hint="the pgha-common RPM should ship it; rebuild with `pgha-build rpms`")
    argv = [python, str(agent), "--root", str(dirs.root), "--seed", str(dirs.seed),
            "--services", "process", "--netns", netns, "--force",
            "--health-timeout", str(int(timeout))]
    return start_agent(argv, dirs.base / "agent.log")


def start_agent(argv: list[str], log_file: Path,
                env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A node's first-boot agent (as a process, or inside a systemd-engine machine through
    nsenter), its output appended to log_file; runs while the caller goes on."""
    log.debug("$ %s", quote(argv))
    with log_file.open("ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)


def wait_booted(agents: dict[str, subprocess.Popen[bytes]], dirs: dict[str, NodeDirs]) -> None:
    failed = [name for name, proc in agents.items() if proc.wait() != 0]
    if failed:
        tail = (dirs[failed[0]].base / "agent.log").read_text(errors="replace").splitlines()[-8:]
        raise PghaError(f"lab: first boot failed on {', '.join(failed)}:\n  " + "\n  ".join(tail),
                        hint=f"see {dirs[failed[0]].base}/agent.log and root/var/log/pgha/")


def kill(runner: Runner, node: NodeNet, sig: int = signal.SIGKILL, wait: float = 5) -> int:
    """Send `sig` to every process in the node's namespace; with SIGKILL wait until gone."""
    from builder.lab.net import pids_in

    pids = pids_in(runner, node.netns)
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait
    while sig == signal.SIGKILL and pids_in(runner, node.netns) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(pids)
