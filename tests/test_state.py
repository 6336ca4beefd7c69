"""The one cache scheme of every stage (builder.core.state): key + recorded stat, sha256 only
when the stat differs; cached_stage is the force / up-to-date / write / save block."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builder.core import fsutil, state
from builder.core.context import Context
from builder.core.state import Artifact, cached_stage


class Writer:
    """A stage's write step: writes `text` to out/<rel>, counts its calls."""

    def __init__(self, ctx: Context, rel: str, text: str = "v1") -> None:
        self.ctx, self.path, self.text, self.calls = ctx, ctx.out.root / rel, text, 0

    def __call__(self) -> None:
        self.calls += 1
        fsutil.atomic_write(self.path, self.text)


def run(ctx: Context, write: Writer, key: str = "k1", stage: str = "demo") -> list[Artifact]:
    art = Artifact("demo", write.path.relative_to(ctx.out.root).as_posix())
    return cached_stage(ctx, stage, key, [art], write, fresh="demo: up to date")


def test_written_once_then_reused_with_its_sha256(ctx: Context) -> None:
    write = Writer(ctx, "demo/a.txt")
    first = run(ctx, write)
    assert write.calls == 1 and first[0].sha256 == fsutil.sha256_bytes(b"v1")
    assert run(ctx, write) == first and write.calls == 1
    assert ctx.messages == ["demo: up to date"]
    assert run(ctx, write, key="k2")[0].sha256 == first[0].sha256 and write.calls == 2


def test_a_touched_file_is_rehashed_once_then_its_new_stat_recorded(
        ctx: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    write = Writer(ctx, "demo/a.txt")
    run(ctx, write)
    st = write.path.stat()
    os.utime(write.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    hashed: list[Path] = []
    real = state.sha256_file
    monkeypatch.setattr(state, "sha256_file", lambda p: hashed.append(p) or real(p))
    run(ctx, write)
    assert write.calls == 1 and hashed == [write.path]  # same content: reused
    run(ctx, write)
    assert hashed == [write.path]  # the new stat was recorded: no second hash


def test_changed_or_missing_files_and_force_rewrite(ctx: Context) -> None:
    write = Writer(ctx, "demo/a.txt")
    run(ctx, write)
    write.path.write_text("edited by hand")
    run(ctx, write)
    assert write.calls == 2 and write.path.read_text() == "v1"
    write.path.unlink()
    run(ctx, write)
    assert write.calls == 3
    ctx.force = True
    run(ctx, write)
    assert write.calls == 4


def test_a_failed_write_leaves_no_state(ctx: Context) -> None:
    write = Writer(ctx, "demo/a.txt")
    run(ctx, write)

    def fail() -> None:
        raise OSError("disk full")

    art = Artifact("demo", "demo/a.txt")
    with pytest.raises(OSError):
        cached_stage(ctx, "demo", "k2", [art], fail)
    assert state.load(ctx.out, "demo") is None
    run(ctx, write, key="k2")
    assert write.calls == 2


def test_work_states_stay_out_of_the_manifest(ctx: Context) -> None:
    run(ctx, Writer(ctx, "demo/a.txt"))
    run(ctx, Writer(ctx, ".work/base.qcow2"), stage="work/image-base-db")
    assert [a.path for o in state.owners(ctx.out) for a in o.artifacts] == ["demo/a.txt"]
    recorded = json.loads((ctx.out.state / "work" / "image-base-db.json").read_text())
    assert recorded["key"] == "k1" and ".work/base.qcow2" in recorded["stats"]
