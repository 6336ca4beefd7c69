"""The warm path of `pgha-build build`: skip everything when no input changed.

The digest covers the cluster file, SOURCE_DATE_EPOCH, the tool's version and every file of the
tool itself (the builder package and its data: specs/, kickstart/, roles/). The index under the output
folder maps a digest to the files the last full build left (path, size, mtime). When the
digest matches and every recorded file is still as it was, nothing needs doing: this module
imports only the standard library, so the check costs milliseconds, not the ~0.5 s of loading
the model, templates and validators. Any doubt means a full (still per-stage cached) build.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from builder import __version__
from builder.core.paths import TOOL_DIRS

INDEX_NAME = ".build-index.json"
MAX_CLUSTER_BYTES = 1024 * 1024  # as builder.model.yamlfile.MAX_BYTES


def _cluster_bytes(cluster_file: Path) -> bytes | None:
    """The cluster file's bytes, or None for anything but a readable regular file of at most
    1 MiB (the full path then reports it: a FIFO must never block here)."""
    try:
        info = os.stat(cluster_file)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_CLUSTER_BYTES:
            return None
        return cluster_file.read_bytes()
    except OSError:
        return None


def input_digest(cluster_file: Path | None, command: str) -> str | None:
    """The digest of every input, or None when the cluster file cannot be read as one."""
    h = hashlib.sha256()
    h.update(f"{__version__}\0{command}\0{os.environ.get('SOURCE_DATE_EPOCH', '')}\0".encode())
    data = _cluster_bytes(cluster_file) if cluster_file else b"<built-in default>"
    if data is None:
        return None
    h.update(data)
    for top in TOOL_DIRS:
        for path in sorted(top.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                h.update(f"{top.name}/{path.relative_to(top)}".encode() + b"\0")
                h.update(path.read_bytes())
    return h.hexdigest()


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _entry_ok(output: Path, entry: object) -> bool:
    """An index entry as record() writes it, for a folder directly under `output`."""
    if not isinstance(entry, dict) or not isinstance(entry.get("root"), str):
        return False
    files = entry.get("files")
    if not isinstance(files, dict) or not all(
            isinstance(rel, str) and not rel.startswith("/") and ".." not in rel.split("/")
            and isinstance(st, list) and len(st) == 2
            and all(type(v) is int for v in st) for rel, st in files.items()):
        return False
    try:
        return Path(entry["root"]).parent.resolve() == output.resolve()
    except (OSError, RuntimeError):
        return False


def read_index(output: Path) -> dict[str, dict]:
    """The index's well-formed entries; a file that does not parse (empty, truncated, a list,
    a planted entry for a folder elsewhere) counts as no index: the next build rewrites it."""
    try:
        data = json.loads((output / INDEX_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {d: e for d, e in data.items() if isinstance(d, str) and _entry_ok(output, e)}


def fresh(output: Path, digest: str) -> Path | None:
    """The cluster output folder if the last build with this digest is intact, else None."""
    entry = read_index(output).get(digest)
    if entry is None:
        return None
    root = Path(entry["root"])
    try:
        for rel, recorded in entry["files"].items():
            if _stat(root / rel) != recorded:
                return None
    except OSError:
        return None
    return root


def record(output: Path, digest: str, root: Path) -> None:
    """Remember what this build left: the manifest's artifacts, manifest, sums, secrets."""
    from builder.core.fsutil import atomic_write

    manifest = json.loads((root / "manifest.json").read_text())
    rels = [a["path"] for a in manifest["artifacts"]]
    rels += [p for p in ("manifest.json", "SHA256SUMS", "secrets.yaml") if (root / p).exists()]
    index_file = output / INDEX_NAME
    index = {d: e for d, e in read_index(output).items() if e["root"] != str(root)}
    index[digest] = {"root": str(root), "files": {r: _stat(root / r) for r in rels}}
    atomic_write(index_file, json.dumps(index, indent=1, sort_keys=True) + "\n")
