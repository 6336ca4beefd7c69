"""Publish a build to a forge release: what is published, checks before upload, re-run safety.

Boundary: reads output/<cluster>/manifest.json (and secrets.yaml, only to check uploads against
it), decides per asset whether to upload, skip or replace, and drives a builder.release.forge.Forge.
Nothing is uploaded before every check passed: manifest digests, secrets, size and count limits.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from builder.core import state
from builder.core.errors import PghaError
from builder.core.httpclient import ApiError
from builder.core.log import log
from builder.core.paths import OutputPaths
from builder.release.checks import check_items, entry_problem, secret_reason
from builder.release.forge import Forge, Release, RemoteAsset, UsageError
from builder.release.items import Item

PUBLISHED_KINDS = {"rpm", "srpm", "kickstart", "image", "ca-cert", "gpgkey"}
MAX_ASSET_SIZE = 2 * 1024**3  # GitHub: each asset must be under 2 GiB
MAX_ASSETS = 1000  # GitHub: at most 1000 assets per release
TMP_SUFFIX = ".pgha-tmp"


class ReleaseError(PghaError):
    """A release cannot be done safely as asked."""


@dataclass
class Action:
    op: str  # "upload", "skip" or "replace"
    item: Item
    remote: RemoteAsset | None = None  # the asset there now (stale, or to be replaced)
    why: str = ""


@dataclass
class Options:
    tag: str
    notes: str | None = None
    draft: bool = False
    prerelease: bool = False
    replace: bool = False
    dry_run: bool = False
    only: tuple[str, ...] = ()
    max_asset_size: int = MAX_ASSET_SIZE
    max_assets: int = MAX_ASSETS
    progress: bool = True


@dataclass
class Result:
    release_url: str = ""
    created: bool = False
    done: list[tuple[str, str]] = field(default_factory=list)  # (op, asset name)

    def count(self, op: str) -> int:
        return sum(1 for o, _ in self.done if o == op)


def read_manifest(out: OutputPaths) -> dict[str, Any]:
    try:
        data = json.loads(out.manifest.read_text())
    except FileNotFoundError:
        raise ReleaseError(f"no build to release: {out.manifest} does not exist",
                           hint="run `pgha-build build` first (with the same -c and -o)") from None
    except (OSError, ValueError) as exc:
        raise ReleaseError(f"cannot read {out.manifest}: {exc}",
                           hint="re-run `pgha-build build` to rewrite it") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise ReleaseError(f"{out.manifest} has no artifact list",
                           hint="re-run `pgha-build build` to rewrite it")
    return data


def collect(out: OutputPaths, only: tuple[str, ...] = ()) -> list[Item]:
    """The publishable artifacts (all, or those named in `only`); secrets are refused."""
    entries = {str(e.get("path")): e for e in read_manifest(out)["artifacts"]
               if isinstance(e, dict)}
    recorded = {a.path: asdict(a) for o in state.owners(out) for a in o.artifacts}
    for rel, entry in sorted(entries.items()):
        problem = entry_problem(out, entry, recorded)
        if problem and entry.get("kind") in PUBLISHED_KINDS and not secret_reason(rel, entry):
            raise ReleaseError(f"manifest.json entry {rel[:80]!r} is refused: {problem}",
                               hint="re-run `pgha-build build` to rewrite manifest.json")
    extras = [Item("SHA256SUMS", "SHA256SUMS", out.sha256sums, "", None),
              Item("manifest.json", "manifest.json", out.manifest, "", None)]
    items = [_item(out, e) for rel, e in sorted(entries.items())
             if e.get("kind") in PUBLISHED_KINDS and not secret_reason(rel, e)] + extras
    if only:
        items = [_pick(name, items, entries) for name in only]
    names: dict[str, str] = {}
    for item in items:
        if item.name in names and names[item.name] != item.rel:
            raise ReleaseError(f"two artifacts would get the asset name {item.name}: "
                               f"{names[item.name]} and {item.rel}",
                               hint="rename one of them; release assets have no folders")
        names[item.name] = item.rel
    return list({i.rel: i for i in items}.values())


def _item(out: OutputPaths, entry: dict[str, Any]) -> Item:
    rel = str(entry["path"])
    size = entry.get("size")
    return Item(Path(rel).name, rel, out.root / rel, str(entry.get("sha256") or ""),
                int(size) if size is not None else None)


def _pick(name: str, items: list[Item], entries: dict[str, dict[str, Any]]) -> Item:
    """The item asked for by path or asset name; a secret is refused, by name too."""
    clean = name.removeprefix("./")
    for rel, entry in entries.items():
        if clean in (rel, Path(rel).name):
            reason = secret_reason(rel, entry)
            if reason:
                raise ReleaseError(f"refusing to publish {rel}: {reason}",
                                   hint="secrets never go on a release; ship seeds out of band")
    reason = secret_reason(clean, {})
    if reason:
        raise ReleaseError(f"refusing to publish {clean}: {reason}",
                           hint="secrets never go on a release; ship seeds out of band")
    for item in items:
        if clean in (item.rel, item.name):
            return item
    raise UsageError(f"{name} is not a publishable artifact of this build",
                     hint="publishable: RPMs, SRPMs, role kickstarts, images, SHA256SUMS, "
                          "manifest.json (see manifest.json for the paths)")


def plan(forge: Forge, items: list[Item], remote: list[RemoteAsset], digests: dict[str, str],
         opts: Options) -> list[Action]:
    """Upload, skip or replace for each item; differing assets without --replace are an error."""
    by_name = {a.name: a for a in remote}
    actions = [_decide(forge, item, by_name.get(item.name), digests[item.rel])
               for item in items]
    conflicts = [a for a in actions if a.op == "replace"]
    if conflicts and not opts.replace:
        first = conflicts[0]
        more = f" (and {len(conflicts) - 1} more)" if len(conflicts) > 1 else ""
        raise ReleaseError(f"asset {first.item.name} on release {opts.tag} differs from the "
                           f"build: {first.why}{more}",
                           hint="pass --replace to swap it in safely, or release a new tag")
    final = {a.name for a in remote if not a.name.endswith(TMP_SUFFIX)} | {i.name for i in items}
    needed = len(final) + (1 if conflicts else 0)
    if needed > opts.max_assets:
        raise ReleaseError(f"release {opts.tag} would hold {needed} assets; the limit is "
                           f"{opts.max_assets} per release",
                           hint="delete old assets from the release, or publish with --only")
    return actions


def _decide(forge: Forge, item: Item, remote: RemoteAsset | None, sha: str) -> Action:
    size = item.path.stat().st_size
    if remote is None:
        return Action("upload", item, why="new")
    if remote.state != "uploaded":
        return Action("upload", item, remote, why=f"previous upload left it '{remote.state}'")
    if remote.size != size:
        return Action("replace", item, remote, why=f"size {remote.size} != {size}")
    remote_sha = remote.sha256
    if remote_sha is None:
        log.info("%s: the forge gives no digest; downloading it to compare", item.name)
        remote_sha = forge.download_sha256(remote)
    if remote_sha != sha:
        return Action("replace", item, remote, why=f"sha256 {remote_sha[:12]}… != {sha[:12]}…")
    return Action("skip", item, remote, why="same size and sha256")


def find_or_create(forge: Forge, opts: Options, result: Result) -> Release | None:
    release = forge.find_release(opts.tag)
    if release is None:
        if opts.dry_run:
            log.info("would create release %s on %s", opts.tag, forge.repo)
            return None
        release = forge.create_release(opts.tag, opts.notes or "", opts.draft, opts.prerelease)
        result.created = True
        log.info("created release %s (%s)", opts.tag, "draft" if release.draft else "published")
    elif opts.notes is not None and release.body != opts.notes:
        if opts.dry_run:
            log.info("would update the notes of release %s", opts.tag)
        else:
            forge.update_notes(release, opts.notes)
    result.release_url = release.html_url
    return release


def publish(forge: Forge, out: OutputPaths, opts: Options) -> Result:
    """The whole release: collect, check everything, then create, upload, skip, replace."""
    items = collect(out, opts.only)
    digests = check_items(items, out, opts.max_asset_size)
    result = Result()
    release = find_or_create(forge, opts, result)
    remote = forge.list_assets(release) if release else []
    actions = plan(forge, items, remote, digests, opts)
    for action in actions:
        if opts.dry_run:
            verb = {"upload": "would upload", "skip": "would skip",
                    "replace": "would replace"}[action.op]
            log.info("%s %s (%s)", verb, action.item.name, action.why)
        elif release is not None:
            _execute(forge, release, action, digests[action.item.rel], opts.progress)
        result.done.append((action.op, action.item.name))
    return result


def _execute(forge: Forge, release: Release, action: Action, sha: str, progress: bool) -> None:
    item = action.item
    if action.op == "skip":
        log.info("skipped %s (%s)", item.name, action.why)
        return
    if action.op == "upload":
        if action.remote is not None:  # a broken leftover ("starter"): safe to delete
            forge.delete_asset(release, action.remote)
        _upload(forge, release, item, item.name, sha, progress)
        log.info("uploaded %s", item.name)
        return
    assert action.remote is not None
    tmp_name = item.name + TMP_SUFFIX
    for stale in forge.list_assets(release):
        if stale.name == tmp_name:
            forge.delete_asset(release, stale)
    new = _upload(forge, release, item, tmp_name, sha, progress)
    forge.delete_asset(release, action.remote)
    forge.rename_asset(release, new, item.name, sha)
    log.info("replaced %s (%s)", item.name, action.why)


def _upload(forge: Forge, release: Release, item: Item, name: str, sha: str,
            progress: bool) -> RemoteAsset:
    """Upload once; recover from a 422 left by an earlier attempt whose answer was lost."""
    bar = ProgressLine(name, item.path.stat().st_size, progress)
    try:
        return forge.upload(release, item.path, name, item.content_type, sha, bar.update)
    except ApiError as err:
        if err.status != 422:
            raise
        there = next((a for a in forge.list_assets(release) if a.name == name), None)
        if there is None:
            raise
        if there.state == "uploaded" and there.size == bar.total and there.sha256 == sha:
            return there  # the earlier attempt did arrive
        if there.state == "uploaded":
            raise ReleaseError(f"asset {name} appeared on the release while uploading",
                               hint="is another release job running? re-run when it is done")
        forge.delete_asset(release, there)
        return forge.upload(release, item.path, name, item.content_type, sha, bar.update)
    finally:
        bar.finish()


class ProgressLine:
    """A one-line progress display on stderr (only on a terminal, and not with -q)."""

    def __init__(self, name: str, total: int, enabled: bool,
                 write: Callable[[str], object] | None = None) -> None:
        self.name, self.total = name, total
        self.enabled = enabled and sys.stderr.isatty()
        self.write = write or sys.stderr.write
        self.last = -1

    def update(self, done: int) -> None:
        pct = 100 * done // self.total if self.total else 100
        if self.enabled and pct != self.last:
            self.last = pct
            self.write(f"\r  {self.name}  {pct:3d}%  {done / 2**20:.1f}/"
                       f"{self.total / 2**20:.1f} MiB")

    def finish(self) -> None:
        if self.enabled and self.last >= 0:
            self.write("\n")
