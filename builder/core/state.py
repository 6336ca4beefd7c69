"""Stage caching: each stage keys its outputs on a hash of its inputs.

A stage is up to date when its state file records the same key and every artifact it recorded
still exists with the recorded sha256. The state also feeds manifest.json.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from builder.core.fsutil import atomic_write, sha256_file
from builder.core.paths import OutputPaths


@dataclass(frozen=True)
class Artifact:
    kind: str  # spec, srpm, rpm, repodata, kickstart, seed, image, ...
    path: str  # relative to output/<cluster>/
    role: str | None = None
    host: str | None = None
    secret: bool = False  # holds secrets: never published
    sha256: str = ""


def input_key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def _state_file(out: OutputPaths, stage: str) -> Path:
    return out.state / f"{stage}.json"


def load(out: OutputPaths, stage: str) -> tuple[str, list[Artifact]] | None:
    try:
        data = json.loads(_state_file(out, stage).read_text())
        return data["key"], [Artifact(**a) for a in data["artifacts"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def up_to_date(out: OutputPaths, stage: str, key: str) -> bool:
    state = load(out, stage)
    if state is None or state[0] != key:
        return False
    for art in state[1]:
        path = out.root / art.path
        if not path.is_file() or sha256_file(path) != art.sha256:
            return False
    return True


def save(out: OutputPaths, stage: str, key: str, artifacts: list[Artifact]) -> list[Artifact]:
    """Record the stage's artifacts with their current sha256; return them."""
    done = [Artifact(**{**asdict(a), "sha256": sha256_file(out.root / a.path)})
            for a in artifacts]
    data = {"key": key, "artifacts": [asdict(a) for a in done]}
    atomic_write(_state_file(out, stage), json.dumps(data, indent=1, sort_keys=True) + "\n")
    return done


def forget(out: OutputPaths, stage: str) -> None:
    _state_file(out, stage).unlink(missing_ok=True)


def all_artifacts(out: OutputPaths) -> list[Artifact]:
    arts: list[Artifact] = []
    if out.state.is_dir():
        for f in sorted(out.state.glob("*.json")):
            state = load(out, f.stem)
            if state:
                arts.extend(state[1])
    return arts
