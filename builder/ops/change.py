"""`pgha-build config [--apply]` and `lab config [--apply]`, one flow: print the difference
between the cluster file's dynamic settings and the running cluster's, PATCH it, then restart
the members that report a pending restart one at a time (ops.rolling)."""

from __future__ import annotations

import time
from typing import Any

from builder.model.cluster import Cluster
from builder.model.platform import layout
from builder.ops import dynconf, rolling
from builder.ops.target import Target


def run(cluster: Cluster, target: Target, say: rolling.Say, apply: bool = False,
        restart: bool = True, timeout: float = 120,
        restart_command: str = "pgha-build restart --rolling") -> dict[str, Any]:
    d, _current = dynconf.diff(cluster, target)
    for line in dynconf.report(d):
        say(line)
    result: dict[str, Any] = {"changes": [c.key for c in d.changes], "applied": False,
                              "restarts": []}
    if not d.changes:
        return result
    if not apply:
        say("not applied: run again with --apply (PATCH /config"
            + (", then a rolling restart for " + ", ".join(d.restart_keys()) if
               d.restart_keys() else "") + ")")
        return result
    new = dynconf.apply(target, d)
    result["applied"] = True
    say(f"applied with PATCH /config ({len(d.changes)} change(s)); Patroni reloads every member "
        f"within loop_wait ({new.get('loop_wait', '?')}s)")
    if not d.restart_keys():
        return result
    view = wait_pending(target, d.restart_keys(), float(new.get("loop_wait", 10)) * 2 + 10)
    steps = rolling.plan(view)
    if not restart:
        say(plan_text(cluster, steps, "pending restart", restart_command))
        return result
    say(f"rolling restart for {', '.join(d.restart_keys())}: "
        + ", then ".join(f"{s.kind} {s.node}" for s in steps))
    result["restarts"] = rolling.execute(target, steps, say, timeout)
    return result


def wait_pending(target: Target, keys: list[str], timeout: float) -> dict[str, Any]:
    """The /cluster view once every member reports the restart-needing keys as pending (or
    the timeout passed: a member already running the new value has nothing pending)."""
    deadline = time.monotonic() + timeout
    while True:
        view = rolling.view(target)
        waiting = rolling.pending(view)
        if all(set(keys) <= set(waiting.get(str(m["name"]), {})) for m in view["members"]):
            return view
        if time.monotonic() > deadline:
            return view
        time.sleep(0.5)


def plan_text(cluster: Cluster, steps: list[rolling.Step], what: str,
              command: str = "pgha-build restart --rolling") -> str:
    config = layout(cluster.platform, cluster.postgres_version).patroni_config
    if not steps:
        return f"no member has a {what}: nothing to restart"
    lines = [(f"rolling restart plan ({what}); before each step the cluster must be "
              "failover-ready (`patronictl list`: replicas streaming, lag 0):")]
    lines += [f"  {i}. {s.text(cluster.name, config)}" for i, s in enumerate(steps, 1)]
    lines.append(f"  or all of it from here: {command}")
    return "\n".join(lines)
