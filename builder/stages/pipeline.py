"""The build as a flat, ordered list of named steps sharing one Context.

Each command runs a prefix or a subset of these steps; `build` runs them all. Steps are cached
on their inputs, so re-running is cheap. Each step returns its typed result (SpecsResult,
RpmsResult, ...), which run_steps puts on the Context under the step's name; later steps read
it there (`ctx.result("rpms", RpmsResult)`) instead of rebuilding file names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from builder.core.context import Context
from builder.core.log import log, step
from builder.stages.f5 import write_f5
from builder.stages.kickstart import write_kickstarts
from builder.stages.manifest import write_manifest
from builder.stages.monitoring_stage import write_monitoring
from builder.stages.rpms import build_rpms
from builder.stages.seeds import write_seeds
from builder.stages.specs import write_specs

Step = tuple[str, Callable[[Context], Any]]

SPECS: Step = ("specs", write_specs)
RPMS: Step = ("rpms", build_rpms)
KICKSTART: Step = ("kickstart", write_kickstarts)
SEEDS: Step = ("seeds", write_seeds)
F5: Step = ("f5", write_f5)  # only with load_balancer.kind: f5
MONITORING: Step = ("monitoring", write_monitoring)  # only with monitoring.enabled
MANIFEST: Step = ("manifest", write_manifest)

BUILD: list[Step] = [SPECS, RPMS, KICKSTART, SEEDS, F5, MONITORING, MANIFEST]


def run_steps(ctx: Context, steps: list[Step]) -> None:
    for name, func in steps:
        with step(name):
            ctx.put(name, func(ctx))
    for message in ctx.messages:
        log.info("%s", message)
