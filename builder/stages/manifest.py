"""manifest.json and SHA256SUMS: exactly this output folder's artifacts, each with its sha256.

Every artifact has one owner, the state of the step that wrote it (builder.core.state): a
kickstart written by `kickstart --role db` and by `build` is the same owner, kickstart-db. The
manifest step, the last of every command that writes artifacts:
1. collects every owner's artifacts; a path two owners claim (a state left by an older
   version) stays with the newest owner;
2. removes what the current cluster no longer produces, the file and its record, with a log
   line: artifacts of a host that is no longer a node, of a role no node has, F5 files when
   the load balancer is not an F5, monitoring files when monitoring is off; the CA certificate only leaves the manifest (pki/ is the
   cluster's key store, never deleted here);
3. forgets records of files that are gone, and re-hashes a file whose stat changed: changed
   content (an edit outside pgha-build) is listed as it is now, with a warning, and its owner
   writes it again on its next run;
4. writes manifest.json (every artifact) and SHA256SUMS (those without secrets, which seeds and
   host kickstarts hold: a publisher refuses them), so `sha256sum -c SHA256SUMS` passes.
Files of the folder that are not artifacts: .state/ and .work/ (bookkeeping), secrets.yaml,
pki/ and serve.key (the key store: passwords, CA and certificates, the seed tokens' key), the
lab link, manifest.json and SHA256SUMS themselves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from builder import __version__
from builder.core.context import Context
from builder.core.fsutil import atomic_write, sha256_file
from builder.core.log import log
from builder.core.state import Artifact, Owner, owners, rewrite, stat_id
from builder.model import roles
from builder.model.cluster import SCHEMA_VERSION, Cluster

MANIFEST_VERSION = 2
NOT_ARTIFACTS = (".state", ".work", "secrets.yaml", "pki", "serve.key", "signing", "lab", "manifest.json",
                 "SHA256SUMS")


@dataclass(frozen=True)
class ManifestResult:
    """The `manifest` step's result: the manifest file, its sha256 and what it lists."""

    path: Path
    digest: str
    artifacts: list[Artifact]


def produced(cluster: Cluster, art: Artifact) -> bool:
    """Whether the cluster still produces this artifact (its host, roles and kind exist)."""
    if art.host is not None and art.host not in {n.name for n in cluster.nodes}:
        return False
    used = {roles.COMMON} | {r for n in cluster.nodes for r in n.roles}
    if art.role is not None and not set(art.role.split(",")) <= used:
        return False
    if art.kind == "f5":
        return cluster.load_balancer.kind == "f5"
    if art.kind == "monitoring":
        return cluster.monitoring.enabled
    if art.kind == "ca-cert":
        return cluster.tls.enabled
    return True


def _check(ctx: Context, owner: Owner, art: Artifact) -> tuple[Artifact | None, bool]:
    """The artifact as it is on disk now (None if gone), and whether its record changed."""
    path = ctx.out.root / art.path
    if not path.is_file():
        log.info("manifest: %s is gone, no longer listed", art.path)
        return None, True
    if owner.stats.get(art.path) == stat_id(path):
        return art, False
    digest = sha256_file(path)
    if digest == art.sha256:
        return art, False
    log.warning("manifest: %s was changed outside pgha-build; listed as it is now", art.path)
    return replace(art, sha256=digest), True


def _prune(ctx: Context, owner: Owner, claimed: set[str]) -> list[Artifact]:
    """The owner's artifacts that stay; its record and the removed files updated."""
    keep, changed = [], False
    for art in owner.artifacts:
        if art.path in claimed:
            changed = True
            continue
        if not produced(ctx.cluster, art):
            if art.kind != "ca-cert":
                (ctx.out.root / art.path).unlink(missing_ok=True)
                log.info("manifest: removed %s (the cluster no longer produces it)", art.path)
            changed = True
            continue
        now, differs = _check(ctx, owner, art)
        changed = changed or differs
        if now is not None:
            keep.append(now)
    if changed:
        rewrite(ctx.out, owner, keep, stale=True)
    return keep


def collect(ctx: Context) -> list[Artifact]:
    """Every artifact of the folder, each once, after pruning (steps 1-3 above)."""
    found: dict[str, Artifact] = {}
    for owner in owners(ctx.out):  # newest first: an older claim on a path is dropped
        for art in _prune(ctx, owner, set(found)):
            found[art.path] = art
    return [found[p] for p in sorted(found)]


def write_manifest(ctx: Context) -> ManifestResult:
    """The `manifest` step: manifest.json and SHA256SUMS of the whole output folder."""
    entries = []
    arts = collect(ctx)
    for art in arts:
        entry = {k: v for k, v in asdict(art).items() if v is not None}
        entry["size"] = (ctx.out.root / art.path).stat().st_size
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
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    atomic_write(ctx.out.manifest, text)
    sums = "".join(f"{a.sha256}  {a.path}\n" for a in arts if not a.secret)
    atomic_write(ctx.out.sha256sums, sums)
    ctx.messages.append(f"manifest: {len(entries)} artifact(s) in {ctx.out.manifest}")
    return ManifestResult(ctx.out.manifest, hashlib.sha256(text.encode()).hexdigest(), arts)


def digest(path: Path) -> str | None:
    """The sha256 of a manifest.json (what `lab status` reports), None when there is none."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
