"""What a lab runs: the user's artifacts of output/<cluster>/, copied into the lab folder.

`take` (called by `lab up`):
1. builds what is missing in output/<cluster>/, beside the user's artifacts and with the same
   steps: the RPMs for the lab's platform (output/<cluster>/debian12/specs and rpms, from the
   same sources as the user's rpms/) and, if the folder has none yet, the secrets and CA (the
   ones `build` would make there);
2. writes the folder's manifest.json and SHA256SUMS again: they list the lab's RPMs too
   (platform debian12), so the one manifest describes what the user ships and what the lab ran;
3. copies what the nodes use into the lab folder (the service users can reach it; the output
   folder may be under /root, 0700): the RPMs to <lab>/build/<cluster>/rpms/, secrets.yaml and
   pki/ beside them (0600 files in 0700 folders), and records in state.json the sha256 of
   manifest.json (`lab status` prints it) and each package's RPM.
The seeds are rendered per node from these secrets and certificates (their paths point into
the node's folder and the platform is the lab's: the identity is the user's). A running lab
keeps its copy: `lab up --nodes db2` boots db2 from what the other nodes run.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.core.context import Context, source_date_epoch
from builder.core.paths import OutputPaths
from builder.model import roles, tlsplan
from builder.model.cluster import Cluster, Node
from builder.stages import pipeline
from builder.stages.manifest import ManifestResult
from builder.stages.rpms import RpmsResult


@dataclass(frozen=True)
class Taken:
    """What the lab runs: the manifest's sha256 and path, and each package's RPM in the lab."""

    manifest: str
    manifest_path: str
    rpms: dict[str, str]

    def as_state(self) -> dict[str, Any]:
        return {"manifest_sha256": self.manifest, "manifest": self.manifest_path,
                "rpms": self.rpms}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> Taken | None:
        try:
            return cls(str(data["manifest_sha256"]), str(data["manifest"]), dict(data["rpms"]))
        except (KeyError, TypeError, ValueError):
            return None


def build(cluster: Cluster, source: Cluster, folder: OutputPaths,
          runner: Any) -> tuple[RpmsResult, ManifestResult]:
    """Steps 1 and 2: the lab platform's RPMs beside the user's, the secrets, the manifest."""
    epoch = source_date_epoch()
    ctx = Context(cluster=cluster, out=folder.for_platform(cluster.platform), runner=runner,
                  epoch=epoch)
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    tlsplan.load_secrets(folder, cluster)  # the folder's; made there only if missing
    own = Context(cluster=source, out=folder, runner=runner, epoch=epoch)
    pipeline.run_steps(own, [pipeline.MANIFEST])
    return ctx.result("rpms", RpmsResult), own.result("manifest", ManifestResult)


def _copy_tree(src: Path, dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    if src.is_dir():
        shutil.copytree(src, dest)  # copy2 keeps each file's mode (keys 0600, folders 0700)
        os.chmod(dest, 0o700)


def copy_keys(folder: OutputPaths, copy: OutputPaths) -> None:
    """secrets.yaml and pki/ of `folder` into `copy` (the lab's), as they are."""
    copy.secrets.unlink(missing_ok=True)
    if folder.secrets.is_file():
        shutil.copy2(folder.secrets, copy.secrets)
    _copy_tree(folder.pki, copy.pki)


def take(cluster: Cluster, source: Cluster, folder: OutputPaths, copy: OutputPaths,
         runner: Any) -> Taken:
    """Steps 1 to 3: build what is missing in `folder`, copy what the lab runs to `copy`."""
    rpms, manifest = build(cluster, source, folder, runner)
    copy.root.mkdir(parents=True, exist_ok=True)
    os.chmod(copy.root, 0o700)
    _copy_tree(rpms.repo, copy.rpms)
    copy_keys(folder, copy)
    files = {name: (copy.rpms / path.name).as_posix() for name, path in rpms.rpms.items()}
    return Taken(manifest.digest, str(manifest.path), files)


def node_rpms(taken: Taken, node: Node) -> list[Path]:
    """The node's RPMs as the lab copied them: pgha-common's and each of its roles'."""
    names = [roles.get(roles.COMMON).package, *(roles.get(r).package for r in node.roles)]
    return [Path(taken.rpms[n]) for n in names]


def recorded(state_file: Path) -> Taken | None:
    try:
        return Taken.from_state(json.loads(state_file.read_text()))
    except (OSError, ValueError):
        return None
