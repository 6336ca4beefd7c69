"""`lab upgrade`: the rolling upgrade plan of builder.ops.upgrade executed in the lab (process
engine), to the build of the cluster file's `release`.

Per node, as the plan says for a real one: the new RPMs replace the old in the node's root
(`rpm -U`, what `dnf upgrade` does to the payload), then the node's services restart: Patroni
on a db node always (new binaries), any other service only when its files changed (the spec's
%posttrans rule); the node's agent starts them again from its seed and waits for its health
and the cluster's failover readiness. A node that does not come back is rolled back at once
(`rpm -U --oldpackage` of the previous release, restarted) and the rollout stops there with the
cluster failover-ready on the old release. Every build's RPMs are kept in
<lab>/releases/<release>/ for that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core.errors import PghaError
from builder.lab import artifacts, changes, nodes
from builder.lab.lab import PYTHON, Lab, engine_of
from builder.model import roles
from builder.model.cluster import Node
from builder.ops import rolling
from builder.ops import upgrade as plan_mod
from builder.stages import specs
from builder.stages.rpms import DIST


def installed_release(lab: Lab, name: str) -> int:
    """The release of pgha-common in the node's root (its rpm database)."""
    proc = lab.runner.run(["rpm", "--root", str(lab.node_dirs(name).root), "--define",
                           "_dbpath /var/lib/rpm", "-q", "--qf", "%{RELEASE}", "pgha-common"],
                          env={"HOME": str(lab.node_dirs(name).base)})
    match = re.match(r"(\d+)", proc.stdout.decode())
    if not match:
        raise PghaError(f"cannot tell which release {name} runs", hint="see `lab status`")
    return int(match.group(1))


def keep(lab: Lab, release: int, fresh: bool = False) -> Path:
    """<lab>/releases/<release>/: that build's RPMs (copied from the build's rpms folder once,
    or again when `fresh`: the build just made)."""
    folder = lab.dir / "releases" / str(release)
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    if not folder.is_dir():
        found = sorted(lab.ctx.out.rpms.glob(f"*-{release}.el8.noarch.rpm"))
        if not found:
            raise PghaError(f"the RPMs of release {release} are gone from {lab.ctx.out.rpms}",
                            hint="a rollback needs them: bring the lab up again")
        folder.mkdir(parents=True)
        for rpm in found:
            shutil.copy2(rpm, folder / rpm.name)
    return folder


def run(lab: Lab, say: rolling.Say, timeout: float = 120) -> list[dict[str, Any]]:
    """Build the cluster file's release, then upgrade node by node (the plan's order)."""
    if engine_of(lab) != "process":
        raise PghaError("lab upgrade runs on the process engine",
                        hint="pgha-build lab up --engine process")
    old, new = installed_release(lab, lab.db_nodes[0].name), lab.cluster.release
    if new <= old:
        raise PghaError(f"the lab runs release {old}; the cluster file says release {new}",
                        hint=f"set `release: {old + 1}` in the cluster file for the new build")
    old_dir = keep(lab, old)
    # The new build, as `lab up` takes one: built into output/<cluster>/ beside the user's
    # artifacts (listed in its manifest), copied into the lab folder.
    taken = artifacts.take(lab.cluster, lab.source or lab.cluster, lab.output, lab.ctx.out,
                           lab.runner)
    new_dir = keep(lab, new, fresh=True)
    tgt = changes.target(lab)
    leader = rolling.leader(rolling.wait_ready(tgt, timeout, say))
    assert leader is not None
    done = []
    for step in plan_mod.plan(lab.cluster, leader):
        t0 = time.monotonic()
        if step.kind == "switchover":
            rolling.switchover(tgt, step.node, timeout)
            rolling.wait_ready(tgt, timeout, say, after=f"the switchover from {step.node}")
        else:
            _upgrade_node(lab, step.node, new_dir, old_dir, (old, new), timeout, say)
        took = round(time.monotonic() - t0, 2)
        say(f"{step.kind} {step.node}: done in {took:.1f}s")
        done.append({"step": step.kind, "node": step.node, "seconds": took})
    state = json.loads(lab.state_file.read_text())
    lab.state_file.write_text(json.dumps({**state, **taken.as_state()}, indent=2) + "\n")
    return done


def _upgrade_node(lab: Lab, name: str, new_dir: Path, old_dir: Path, releases: tuple[int, int],
                  timeout: float, say: rolling.Say) -> None:
    node = lab.cluster.node(name)
    db = any(roles.get(r).postgres for r in node.roles)
    tgt = changes.target(lab)
    if db:
        rolling.wait_ready(tgt, timeout, say)
    restart = _install(lab, name, new_dir, releases[1], db)
    try:
        _restart(lab, name, restart, timeout)
        if db:
            rolling.wait_ready(tgt, timeout, say, after=f"the upgrade of {name}", node=name)
    except PghaError as err:
        say(f"{name} did not come back on release {releases[1]}: {err.message}; rolling back")
        _install(lab, name, old_dir, releases[0], db, "--oldpackage")
        _restart(lab, name, restart, timeout)
        if db:
            rolling.wait_ready(tgt, timeout, say, after=f"the rollback of {name}")
        raise PghaError(f"upgrade stopped at {name}: it did not start on release {releases[1]} "
                        f"({err.message}); {name} was rolled back to release {releases[0]} and "
                        f"the cluster is failover-ready on it", hint="nodes before it in the plan "
                        f"run release {releases[1]}; fix the build and run `lab upgrade` again, "
                        "or roll those back too (docs/changes.md)") from None


def _install(lab: Lab, name: str, folder: Path, release: int, db: bool,
             *flags: str) -> list[str]:
    """rpm -U the release's RPMs into the node's root; returns the services to restart."""
    node = lab.cluster.node(name)
    dirs = lab.node_dirs(name)
    watched = {svc: files for r in node.roles
               for svc, files in specs.plan(lab.ctx, roles.get(r)).restart_on.items()}
    before = {svc: _read(dirs.root, files) for svc, files in watched.items()}
    lab.runner.run(["rpm", "--root", str(dirs.root), "-U", "--nodeps", "--noscripts", *flags,
                    "--define", "_dbpath /var/lib/rpm",
                    *map(str, _rpms(folder, node, release))],
                   env={"HOME": str(dirs.base)})
    changed = [svc for svc, files in watched.items() if _read(dirs.root, files) != before[svc]]
    return sorted(set(changed) | ({"patroni"} if db else set()))


def _rpms(folder: Path, node: Node, release: int) -> list[Path]:
    names = [roles.get(roles.COMMON).package, *(roles.get(r).package for r in node.roles)]
    return [folder / f"{n}-{__version__}-{release}{DIST}.noarch.rpm" for n in names]


def _read(root: Path, files: list[str]) -> bytes:
    return b"".join((root / f.lstrip("/")).read_bytes() if (root / f.lstrip("/")).exists()
                    else b"" for f in files)


def _restart(lab: Lab, name: str, services: list[str], timeout: float) -> None:
    """Stop the services (SIGTERM: Patroni stops its PostgreSQL first), then the node's agent
    starts what is not running from its seed and waits for health (lab up --nodes does the
    same)."""
    dirs = lab.node_dirs(name)
    for svc in services:
        _stop(dirs.pids / f"{svc}.pid", timeout)
    agent = nodes.boot(PYTHON, dirs, lab.net.node(name).netns, timeout)
    nodes.wait_booted({name: agent}, {name: dirs})


def _stop(pidfile: Path, timeout: float) -> None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return  # not running
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)
