"""The step runner: the `rpms` step runs in the background while the steps after it run, its
result and its messages arrive where they belong, and a failure in it is raised."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.model.cluster import Cluster
from builder.stages import pipeline


def _ctx(tmp_path: Path, cluster: Cluster) -> Context:
    return Context.create(cluster, tmp_path)


def test_background_step_overlaps_the_next_ones_and_keeps_message_order(
        tmp_path: Path, cluster: Cluster) -> None:
    started = threading.Event()
    seen: dict[str, object] = {}

    def slow(ctx: Context) -> str:
        seen["thread"] = threading.current_thread().name
        started.set()
        time.sleep(0.3)
        ctx.messages.append("rpms: built")
        return "rpms-result"

    def python_step(ctx: Context) -> None:
        seen["overlapped"] = started.wait(5)  # runs while the background step is still busy
        ctx.messages.append("kickstart: wrote")

    def reader(ctx: Context) -> None:
        seen["result"] = ctx.result("rpms", str)  # waits for the background step
        ctx.messages.append("seeds: wrote")

    ctx = _ctx(tmp_path, cluster)
    ctx.messages.append("specs: wrote")
    pipeline.run_steps(ctx, [("rpms", slow), ("kickstart", python_step), ("seeds", reader)])
    assert seen["overlapped"] is True
    assert seen["result"] == "rpms-result"
    assert str(seen["thread"]).startswith("step")
    assert ctx.messages == ["specs: wrote", "rpms: built", "kickstart: wrote", "seeds: wrote"]
    assert ctx.result("rpms", str) == "rpms-result"


def test_manifest_waits_for_the_background_step(tmp_path: Path, cluster: Cluster) -> None:
    done: list[str] = []

    def slow(ctx: Context) -> None:
        time.sleep(0.2)
        done.append("rpms")

    def manifest(ctx: Context) -> None:
        done.append("manifest")

    pipeline.run_steps(_ctx(tmp_path, cluster), [("rpms", slow), ("manifest", manifest)])
    assert done == ["rpms", "manifest"]


def test_last_step_runs_in_the_foreground(tmp_path: Path, cluster: Cluster) -> None:
    names: list[str] = []
    pipeline.run_steps(_ctx(tmp_path, cluster),
                       [("rpms", lambda c: names.append(threading.current_thread().name))])
    assert names == [threading.current_thread().name]


def test_a_failing_background_step_is_raised(tmp_path: Path, cluster: Cluster) -> None:
    def broken(ctx: Context) -> None:
        raise PghaError("rpmbuild failed")

    after: list[str] = []
    with pytest.raises(PghaError, match="rpmbuild failed"):
        pipeline.run_steps(_ctx(tmp_path, cluster),
                           [("rpms", broken), ("kickstart", lambda c: after.append("ran"))])
    assert after == ["ran"]


def test_steps_import_their_module_only_when_they_run() -> None:
    """Loading the pipeline does not load the stages after `rpms` (pykickstart, cryptography,
    the F5 planner): a cold build starts rpmbuild first."""
    import subprocess
    import sys

    code = ("import sys; import builder.stages.pipeline; "
            "print(sorted(m for m in sys.modules if m.startswith(('builder.stages.', "
            "'pykickstart', 'cryptography'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    for module in ("builder.stages.seeds", "builder.stages.f5", "builder.stages.kickstart",
                   "builder.stages.monitoring_stage", "pykickstart", "cryptography"):
        assert f"'{module}" not in out, (module, out)
