"""Rolling restart through Patroni's REST API: replicas first (POST /restart, then wait until
each streams again with lag 0 and the cluster can fail over), then one switchover (POST
/switchover), then the old primary (a replica by then). The only write outage is the
switchover's; reads keep a replica all along (one replica restarts at a time).

Every step starts only when the cluster is failover-ready, so a failure stops the rollout with
the cluster able to fail over, and the error says where it stopped. `plan` gives the same
steps as text (with the patronictl commands an operator would type on a db node).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from builder.core import agentmod
from builder.core.errors import PghaError
from builder.ops.target import Target

Say = Callable[[str], None]


@dataclass(frozen=True)
class Step:
    kind: str  # "restart" or "switchover"
    node: str
    why: str

    def text(self, scope: str, config: str) -> str:
        """The step, and the patronictl command that does it on a db node."""
        if self.kind == "switchover":
            return (f"switch over from {self.node} (writes pause once)\n"
                    f"    patronictl -c {config} switchover {scope} --leader {self.node} --force")
        return (f"restart PostgreSQL on {self.node} ({self.why})\n"
                f"    patronictl -c {config} restart {scope} {self.node} --force")


def view(target: Target) -> dict[str, Any]:
    """The freshest /cluster: the view whose leader has the highest timeline."""
    views = []
    for name in target.members:
        code, body = target.call(name, "GET", "/cluster", timeout=2)
        if code == 200 and isinstance(body, dict):
            views.append(body)
    if not views:
        raise PghaError("no Patroni member answers GET /cluster",
                        hint="check that the cluster runs and that Patroni's REST port is reachable")
    return max(views, key=lambda v: max([int(m.get("timeline") or 0) for m in v["members"]
                                         if m.get("role") == "leader"] or [-1]))


def leader(v: dict[str, Any]) -> str | None:
    return next((str(m["name"]) for m in v.get("members", []) if m.get("role") == "leader"),
                None)


def pending(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Members with a pending restart -> the parameters that wait for it."""
    return {str(m["name"]): dict(m.get("pending_restart_reason") or {})
            for m in v.get("members", []) if m.get("pending_restart")}


def readiness(v: dict[str, Any], config: dict[str, Any], members: list[str]) -> tuple[bool, str]:
    """The first-boot agent's definition: every member there, replicas streaming, a quorum or
    synchronous standby registered in those modes."""
    ready, reason = agentmod.standalone("readiness").evaluate(v, config, members)
    return bool(ready), str(reason)


def plan(v: dict[str, Any], everything: bool = False) -> list[Step]:
    """Replicas (pending ones, or all) in name order, then, if the leader needs it, one
    switchover and the old leader."""
    lead = leader(v)
    if lead is None:
        raise PghaError("the cluster has no leader", hint="see `patronictl list`")
    waiting = pending(v)
    names = sorted(str(m["name"]) for m in v["members"])
    todo = [n for n in names if everything or n in waiting]
    why = {n: ("pending: " + ", ".join(sorted(waiting[n]))) if waiting.get(n) else
           ("pending restart" if n in waiting else "asked for") for n in names}
    steps = [Step("restart", n, why[n]) for n in todo if n != lead]
    if lead in todo:
        steps += [Step("switchover", lead, "leader restarts last"), Step("restart", lead, why[lead])]
    return steps


def wait_ready(target: Target, timeout: float, say: Say, after: str = "",
               node: str | None = None) -> dict[str, Any]:
    """Until the cluster can fail over, every replica is within maximum_lag_on_failover (the
    lag Patroni itself accepts for a failover; on a cluster taking writes Patroni's lag,
    sampled every loop_wait, is rarely exactly 0) and (if given) `node` streams with no pending
    restart; returns the view. On timeout: one error naming the reason."""
    deadline = time.monotonic() + timeout
    reason = "no answer yet"
    while time.monotonic() < deadline:
        try:
            v = view(target)
            _name, config = target.first("GET", "/config", timeout=2)
            ready, reason = readiness(v, config, list(target.members))
        except PghaError as err:
            ready, reason = False, err.message
            v, config = {}, {}
        if ready:
            limit = int(config.get("maximum_lag_on_failover", 1048576))
            lagging = [m["name"] for m in v["members"] if m.get("role") != "leader"
                       and not (isinstance(m.get("lag"), int) and m["lag"] <= limit)]
            mine: dict[str, Any] = next(
                (m for m in v["members"] if m.get("name") == node), {}) if node else {}
            if lagging:
                reason = "lag on " + ", ".join(lagging)
            elif node and mine.get("pending_restart") and mine.get("role") != "leader":
                reason = f"{node} still has a pending restart"
            else:
                return v
        time.sleep(0.25)
    raise PghaError(f"stopped{' after ' + after if after else ''}: the cluster did not become "
                    f"failover-ready within {timeout:.0f}s ({reason})",
                    hint="nothing further was changed; see `patronictl list` on a db node, fix "
                         "the cause, and run the same command again (done steps are skipped)")


def execute(target: Target, steps: list[Step], say: Say, timeout: float = 120) -> list[dict]:
    """Run the steps, each only from a failover-ready cluster; returns timings per step."""
    done: list[dict[str, Any]] = []
    wait_ready(target, timeout, say)
    for step in steps:
        t0 = time.monotonic()
        if step.kind == "switchover":
            switchover(target, step.node, timeout)
        else:
            _restart(target, step.node)
        v = wait_ready(target, timeout, say, after=f"{step.kind} of {step.node}",
                       node=step.node if step.kind == "restart" else None)
        took = time.monotonic() - t0
        say(f"{step.kind} {step.node}: done in {took:.1f}s, leader {leader(v)}, failover-ready")
        done.append({"step": step.kind, "node": step.node, "seconds": round(took, 2),
                     "leader": leader(v)})
    return done


def _restart(target: Target, node: str) -> None:
    code, answer = target.call(node, "POST", "/restart", {}, timeout=120)
    if code != 200:
        raise PghaError(f"Patroni on {node} refused the restart ({code}): {answer}",
                        hint="the cluster was left failover-ready; see `patronictl list`")


def switchover(target: Target, old: str, timeout: float) -> None:
    """POST /switchover on the leader (Patroni picks the candidate); waits for the new leader."""
    code, answer = target.call(old, "POST", "/switchover", {"leader": old}, timeout=timeout)
    if code != 200:
        raise PghaError(f"switchover from {old} refused ({code}): {answer}",
                        hint="the cluster was left failover-ready with leader " + old)
    deadline = time.monotonic() + timeout
    while leader(view(target)) in (None, old):
        if time.monotonic() > deadline:
            raise PghaError(f"no new leader {timeout:.0f}s after the switchover from {old}")
        time.sleep(0.2)
