"""Checks before anything is published: secret artifacts, secret values, digests, size limits.

Boundary: local files only (manifest entries, the files, secrets.yaml); no network. Every file
is read once, streamed: its sha256 is computed and its bytes searched for the cluster's secret
values in the same pass.
"""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.paths import OutputPaths
from builder.release.items import Item

CHUNK = 1 << 20
MIN_SECRET_LEN = 8  # shorter values match too much by chance to be checked reliably
MIN_LINE_LEN = 16  # lines of multi-line secrets (keys, certificates) checked on their own
# Keys in secrets.yaml whose values are not secret (the file also records file version, cluster
# name and user names next to the passwords); every other scalar is treated as a secret.
NOT_SECRET_KEYS = {"version", "cluster", "username", "user", "name"}


class SecretLeak(PghaError):
    """A file to publish holds a secret value, or is a secret artifact."""


class ArtifactChanged(PghaError):
    """A file no longer matches what the build recorded in manifest.json."""


class AssetTooLarge(PghaError):
    """A file is over the forge's per-asset size limit."""


_REL_PATH = re.compile(r"[A-Za-z0-9_.+~=,:@-]+(/[A-Za-z0-9_.+~=,:@-]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def entry_problem(out: OutputPaths, entry: dict[str, Any],
                  recorded: dict[str, dict[str, Any]] | None) -> str | None:
    """Why a manifest.json entry may not be published, or None. manifest.json is an input:
    its path must name a regular file under the output folder (symlinks resolved), and its
    fields (kind, host, secret, sha256) must be what the build step that made the file
    recorded (`recorded`: path -> fields, from the stages' state)."""
    rel, sha, size = entry.get("path"), entry.get("sha256"), entry.get("size")
    if (not isinstance(rel, str) or len(rel) > 1024 or not _REL_PATH.fullmatch(rel)
            or any(part in (".", "..") for part in rel.split("/"))):
        return f"its path {str(rel)[:80]!r} is not a plain path inside the output folder"
    if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        return "it has no sha256 of 64 hex digits"
    if type(size) is not int or size < 0:
        return "it has no size in bytes"
    if recorded is not None:
        rec = recorded.get(rel)
        if rec is None:
            return "no build step recorded this file"
        if any(entry.get(k) != v for k, v in rec.items() if v is not None and k != "path"):
            return "its kind, host, secret flag or sha256 differ from the build's record"
    root = out.root.resolve()
    real = (root / rel).resolve()
    if root not in real.parents:
        return f"it resolves to {real}, outside the output folder"
    try:
        if not stat.S_ISREG(real.stat().st_mode):
            return "it is not a regular file"
    except OSError:
        return "it is missing"
    return None


def secret_reason(rel: str, entry: dict[str, Any]) -> str | None:
    """Why this artifact must never be published, or None."""
    name = Path(rel).name
    if entry.get("secret"):
        return "it is marked secret in manifest.json"
    if entry.get("kind") == "seed" or rel.startswith("seeds/"):
        return "it is a node seed (identity and secrets)"
    if entry.get("kind") == "kickstart" and entry.get("host"):
        return "it is a per-host kickstart (holds that host's secrets)"
    if name in ("secrets.yaml", "secrets.yml"):
        return "it is the cluster's secrets file"
    if rel.startswith("signing/"):
        return "it is the cluster's RPM signing keyring (only rpms/RPM-GPG-KEY-pgha is public)"
    if (rel.startswith("pki/") and rel != "pki/ca.crt") or name.endswith((".key", ".pem")):
        return "it is part of the cluster's PKI (private keys; only pki/ca.crt is public)"
    return None


def secret_values(path: Path) -> list[tuple[str, bytes]]:
    """(dotted name, value) for every scalar in secrets.yaml that is long enough to check."""
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PghaError(f"cannot read {path} to check uploads against it: {exc}",
                        hint="fix or regenerate secrets.yaml; releases need it readable") from None
    found, short = [], 0
    for name, value in _leaves(data, ""):
        if len(value) < MIN_SECRET_LEN:
            short += 1
            continue
        found.append((name, value.encode()))
        lines = [ln.strip() for ln in value.splitlines()]
        found.extend((name, ln.encode()) for ln in lines[1:-1] if len(ln) >= MIN_LINE_LEN)
    if short:
        log.warning("%d secret value(s) in %s are shorter than %d characters and not checked",
                    short, path.name, MIN_SECRET_LEN)
    return found


def _leaves(data: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(data, dict):
        for key, value in data.items():
            if str(key) not in NOT_SECRET_KEYS:
                yield from _leaves(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _leaves(value, f"{prefix}[{i}]")
    elif data is not None and not isinstance(data, bool):
        yield prefix, str(data)


def scan(path: Path, secrets: list[tuple[str, bytes]]) -> tuple[str, str | None]:
    """(sha256, name of the first secret found or None), reading the file once."""
    digest = hashlib.sha256()
    keep = max((len(v) for _, v in secrets), default=1) - 1
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            window = tail + chunk
            for name, value in secrets:
                if value in window:
                    return digest.hexdigest(), name
            tail = window[-keep:] if keep else b""
    return digest.hexdigest(), None


def check_items(items: list[Item], out: OutputPaths, max_size: int) -> dict[str, str]:
    """Refuse oversize, changed or secret-bearing files; return {rel: sha256}."""
    for item in items:
        _check_size(item, max_size)
    secrets = secret_values(out.secrets)
    digests = {}
    for item in items:
        sha, leaked = scan(item.path, secrets)
        if leaked:
            raise SecretLeak(f"refusing to publish {item.rel}: it contains the value of "
                             f"'{leaked}' from {out.secrets.name}",
                             hint="find what rendered the secret into it and rebuild; "
                                  "secrets belong in seeds only")
        if item.sha256 and sha != item.sha256:
            raise ArtifactChanged(f"{item.rel} changed since the build: sha256 {sha[:12]}… "
                                  f"but manifest.json records {item.sha256[:12]}…",
                                  hint="re-run `pgha-build build` so the manifest matches what "
                                       "you publish")
        digests[item.rel] = sha
    return digests


def _check_size(item: Item, max_size: int) -> None:
    if not item.path.is_file():
        raise ArtifactChanged(f"{item.rel} is listed in manifest.json but missing",
                              hint="re-run `pgha-build build`")
    size = item.path.stat().st_size
    if item.size is not None and size != item.size:
        raise ArtifactChanged(f"{item.rel} changed since the build: {size} bytes but "
                              f"manifest.json records {item.size}",
                              hint="re-run `pgha-build build` so the manifest matches")
    if size >= max_size:
        raise AssetTooLarge(
            f"{item.rel} is {_human(size)}; release assets must be under {_human(max_size)}",
            hint="publish a compressed image (e.g. `qemu-img convert -c -O qcow2`, or xz), "
                 "or leave images out with --only and host them elsewhere")


def _human(size: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= factor:
            return f"{size / factor:.2f} {unit}"
    return f"{size} bytes"
