"""manifest.json and SHA256SUMS: every artifact the stages recorded, with size and sha256.

Artifacts that hold secrets (seeds, per-host kickstarts) are listed with `"secret": true` so a
publisher can refuse them, and are left out of SHA256SUMS, which is meant to be published.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from builder import __version__
from builder.core.context import Context
from builder.core.fsutil import atomic_write
from builder.core.state import Artifact, all_artifacts
from builder.model.cluster import SCHEMA_VERSION

MANIFEST_VERSION = 1


def write_manifest(ctx: Context) -> list[Artifact]:
    arts = {}
    for art in all_artifacts(ctx.out):
        path = ctx.out.root / art.path
        if path.is_file():
            arts[art.path] = art
    entries = []
    for rel in sorted(arts):
        art = arts[rel]
        entry = {k: v for k, v in asdict(art).items() if v is not None}
        entry["size"] = (ctx.out.root / rel).stat().st_size
        entries.append(entry)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "model_schema_version": SCHEMA_VERSION,
        "tool": f"pgha-build {__version__}",
        "cluster": ctx.cluster.name,
        "platform": ctx.cluster.platform,
        "postgres_version": ctx.cluster.postgres_version,
        "source_date_epoch": ctx.epoch,
        "artifacts": entries,
    }
    atomic_write(ctx.out.manifest, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sums = "".join(f"{e['sha256']}  {e['path']}\n" for e in entries if not e["secret"])
    atomic_write(ctx.out.sha256sums, sums)
    ctx.messages.append(f"manifest: {len(entries)} artifact(s) in {ctx.out.manifest}")
    return [Artifact(**{k: v for k, v in e.items() if k != "size"}) for e in entries]
