"""Stage caching and ownership: each stage keys its outputs on a hash of its inputs.

This is the per-stage cache every stage uses; `build`'s warm path (builder.core.fastpath) sits
in front of it and skips loading the stages at all when no input changed since the last build.
A state file is also the record of which step owns an output: every artifact path has exactly
one owning state (the manifest, builder.stages.manifest, enforces it).

A stage's state file (.state/<stage>.json) records its input key and each artifact with its
sha256 and the stat (size, mtime, inode) it had when recorded. The stage is up to date when the
key is the same and every artifact is intact: its stat unchanged, or, if the stat differs (a
copy, a touch), its content still has the recorded sha256. So an unchanged multi-GiB image is
never re-hashed, and a changed file is always noticed. `cached_stage` is the force /
up-to-date / write / save block every stage uses. States of stages named "work/..." record
scratch files (a base disk): they are not artifacts and stay out of manifest.json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.core.fsutil import atomic_write, sha256_file
from builder.core.paths import OutputPaths

if TYPE_CHECKING:
    from builder.core.context import Context


@dataclass(frozen=True)
class Artifact:
    kind: str  # spec, srpm, rpm, repodata, kickstart, seed, image, ...
    path: str  # relative to output/<cluster>/
    role: str | None = None
    host: str | None = None
    secret: bool = False  # holds secrets: never published
    sha256: str = ""
    platform: str | None = None  # set for artifacts built for another platform (the lab's)


def artifact(out: OutputPaths, kind: str, path: Path, **fields: Any) -> Artifact:
    """The artifact record of the file at `path` (under out.root), for out's platform."""
    return Artifact(kind, out.rel(path), platform=out.platform or None, **fields)


def input_key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _state_file(out: OutputPaths, stage: str) -> Path:
    return out.state / f"{out.stage(stage)}.json"


def _read(out: OutputPaths, stage: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(_state_file(out, stage).read_text())
        return data
    except (OSError, ValueError):
        return None


def load(out: OutputPaths, stage: str) -> tuple[str, list[Artifact]] | None:
    data = _read(out, stage)
    try:
        return data["key"], [Artifact(**a) for a in data["artifacts"]]  # type: ignore[index]
    except (KeyError, TypeError):
        return None


def stat_id(path: Path) -> list[int]:
    """What says cheaply that a file was not touched since it was recorded."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def up_to_date(out: OutputPaths, stage: str, key: str) -> bool:
    """The state records `key` and every artifact is intact (same stat, else same sha256)."""
    state = load(out, stage)
    if state is None or state[0] != key:
        return False
    stats = (_read(out, stage) or {}).get("stats") or {}
    rehashed = False
    for art in state[1]:
        path = out.root / art.path
        if not path.is_file():
            return False
        if stats.get(art.path) == stat_id(path):
            continue
        if sha256_file(path) != art.sha256:
            return False
        rehashed = True
    if rehashed:  # the same content with a new stat: record it, so the next check is cheap
        _write(out, stage, key, state[1])
    return True


def _write(out: OutputPaths, stage: str, key: str, artifacts: list[Artifact]) -> None:
    data = {"key": key, "artifacts": [asdict(a) for a in artifacts],
            "stats": {a.path: stat_id(out.root / a.path) for a in artifacts}}
    atomic_write(_state_file(out, stage), json.dumps(data, indent=1, sort_keys=True) + "\n")


def save(out: OutputPaths, stage: str, key: str, artifacts: list[Artifact]) -> list[Artifact]:
    """Record the stage's artifacts with their current sha256 and stat; return them."""
    done = [Artifact(**{**asdict(a), "sha256": sha256_file(out.root / a.path)})
            for a in artifacts]
    _write(out, stage, key, done)
    return done


def cached_stage(ctx: Context, stage: str, key: str, artifacts: list[Artifact],
                 write: Callable[[], list[Artifact] | None], fresh: str | None = None,
                 force: bool = False) -> list[Artifact]:
    """Run a cached stage: unless forced (ctx.force or `force`), an up-to-date stage says
    `fresh` (if given) and returns its recorded artifacts; otherwise its state is dropped,
    `write()` writes the artifacts (it may return them, when known only afterwards) and they
    are recorded under `key`. A failed write leaves no state, so the next run redoes it."""
    if not (ctx.force or force) and up_to_date(ctx.out, stage, key):
        if fresh:
            ctx.messages.append(fresh)
        recorded = load(ctx.out, stage)
        assert recorded is not None
        return recorded[1]
    forget(ctx.out, stage)
    written = write()
    return save(ctx.out, stage, key, artifacts if written is None else written)


def forget(out: OutputPaths, stage: str) -> None:
    _state_file(out, stage).unlink(missing_ok=True)


@dataclass(frozen=True)
class Owner:
    """One state file as the owner of its artifacts."""

    file: Path
    key: str
    artifacts: list[Artifact]
    stats: dict[str, list[int]]


def owners(out: OutputPaths) -> list[Owner]:
    """Every stage state that records artifacts (not the work/ ones), newest first."""
    found = []
    files = sorted(out.state.glob("*.json")) if out.state.is_dir() else []
    for f in sorted(files, key=lambda f: f.stat().st_mtime_ns, reverse=True):
        try:
            data = json.loads(f.read_text())
            found.append(Owner(f, data["key"], [Artifact(**a) for a in data["artifacts"]],
                               data.get("stats") or {}))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def rewrite(out: OutputPaths, owner: Owner, keep: list[Artifact], stale: bool) -> None:
    """Record only `keep` for this owner; `stale` clears its key, so the owning stage writes
    its outputs again next time it runs. An owner with nothing left is removed."""
    if not keep:
        owner.file.unlink(missing_ok=True)
        return
    data = {"key": "" if stale else owner.key, "artifacts": [asdict(a) for a in keep],
            "stats": {a.path: stat_id(out.root / a.path) for a in keep}}
    atomic_write(owner.file, json.dumps(data, indent=1, sort_keys=True) + "\n")
