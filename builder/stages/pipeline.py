"""The build as a flat, ordered list of named steps sharing one Context.

Each command runs a prefix or a subset of these steps; `build` runs them all. Steps are cached
on their inputs, so re-running is cheap. Each step returns its typed result (SpecsResult,
RpmsResult, ...), which run_steps puts on the Context under the step's name; later steps read
it there (`ctx.result("rpms", RpmsResult)`) instead of rebuilding file names.

The `rpms` step is subprocess work (rpmbuild, createrepo_c): when more steps follow it, it runs
in a thread while the Python steps after it (kickstart, seeds, monitoring) run, so a cold
build costs about the longer of the two rather than their sum. A later step that asks for its
result waits for it, and `manifest` (which reads every step's state) waits for it too. Its
messages keep their place in the list.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from builder.core.context import Context
from builder.core.log import log, step

Step = tuple[str, Callable[[Context], Any]]


def _lazy(module: str, func: str) -> Callable[[Context], Any]:
    """The step function `func` of builder.stages.<module>, imported when the step runs: the
    rpmbuilds start before the modules of the steps after them (pykickstart, cryptography,
    the F5 planner) are loaded, and that loading overlaps them."""
    def run(ctx: Context) -> Any:
        return getattr(importlib.import_module(f"builder.stages.{module}"), func)(ctx)

    run.__qualname__ = run.__name__ = func
    return run


SPECS: Step = ("specs", _lazy("specs", "write_specs"))
RPMS: Step = ("rpms", _lazy("rpms", "build_rpms"))
KICKSTART: Step = ("kickstart", _lazy("kickstart", "write_kickstarts"))
SEEDS: Step = ("seeds", _lazy("seeds", "write_seeds"))
F5: Step = ("f5", _lazy("f5", "write_f5"))  # only with load_balancer.kind: f5
MONITORING: Step = ("monitoring", _lazy("monitoring_stage", "write_monitoring"))  # if enabled
MANIFEST: Step = ("manifest", _lazy("manifest", "write_manifest"))

BUILD: list[Step] = [SPECS, RPMS, KICKSTART, SEEDS, F5, MONITORING, MANIFEST]


# Steps that wait on child processes, run in the background when other steps follow them.
BACKGROUND = frozenset({"rpms"})
# Steps that read what every earlier step recorded: the background steps finish first.
BARRIERS = frozenset({"manifest"})


def _timed(name: str, func: Callable[[Context], Any], ctx: Context) -> Any:
    with step(name):
        return func(ctx)


def run_steps(ctx: Context, steps: list[Step]) -> None:
    """Run the steps in order on ctx; then log the messages they left, in step order."""
    pending: list[tuple[int, Future[Any], Context]] = []  # (message index, result, sub-context)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="step") as pool:
        for i, (name, func) in enumerate(steps):
            if name in BARRIERS:
                for _, future, _ in pending:
                    future.result()
            if name in BACKGROUND and i < len(steps) - 1:
                sub = dataclasses.replace(ctx, messages=[])  # the same results, runner, paths
                future = pool.submit(_timed, name, func, sub)
                pending.append((len(ctx.messages), future, sub))
                ctx.put(name, future)
                continue
            ctx.put(name, _timed(name, func, ctx))
        for _, future, _ in pending:
            future.result()
    for index, _, sub in reversed(pending):
        ctx.messages[index:index] = sub.messages
    for message in ctx.messages:
        log.info("%s", message)
