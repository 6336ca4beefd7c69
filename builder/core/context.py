"""The one context every pipeline step shares: the model, output paths, the runner, options,
and the typed results of the steps that ran (`put` by the pipeline, `result` by later steps)."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from builder.core.errors import PghaError
from builder.core.paths import OutputPaths
from builder.core.run import Runner

if TYPE_CHECKING:  # the model sits above core: the Context only carries it
    from builder.model.cluster import Cluster

# Build time stamped into artifacts when SOURCE_DATE_EPOCH is not set (2026-01-01T00:00:00Z):
# a fixed value, so that unchanged inputs give byte-identical outputs.
DEFAULT_EPOCH = 1767225600
T = TypeVar("T")


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return DEFAULT_EPOCH
    try:
        epoch = int(value)
    except ValueError:
        raise PghaError(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds",
                        hint="unset it or set it to e.g. $(git log -1 --format=%ct)") from None
    if epoch < 0 or epoch > time.time() + 86400 * 365 * 50:
        raise PghaError(f"SOURCE_DATE_EPOCH={value} is out of range")
    return epoch


@dataclass
class Context:
    cluster: Cluster
    out: OutputPaths
    runner: Runner = field(default_factory=Runner)
    epoch: int = DEFAULT_EPOCH
    force: bool = False
    messages: list[str] = field(default_factory=list)
    results: dict[str, object] = field(default_factory=dict)

    def put(self, step: str, result: object) -> None:
        """Record what `step` produced, for the steps after it (a Future while the step still
        runs in the background: builder.stages.pipeline)."""
        self.results[step] = result

    def result(self, step: str, kind: type[T]) -> T:
        """What `step` produced in this run, as its typed result (waiting for a step that
        runs in the background)."""
        value = self.results.get(step)
        if isinstance(value, Future):
            value = value.result()
        if not isinstance(value, kind):
            raise PghaError(f"internal error: the {step} step has not run before this one",
                            hint="run the steps in pipeline order (builder.stages.pipeline)")
        return value

    @classmethod
    def create(cls, cluster: Cluster, output_dir: Path, runner: Runner | None = None,
               force: bool = False) -> Context:
        return cls(cluster=cluster, out=OutputPaths(output_dir.resolve() / cluster.name),
                   runner=runner or Runner(), epoch=source_date_epoch(), force=force)
