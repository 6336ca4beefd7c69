"""One local file to publish: what builder.release.publish plans and builder.release.checks
checks (both import it; neither imports the other's caller)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPES = {".rpm": "application/x-rpm", ".ks": "text/plain", ".json": "application/json",
                 ".iso": "application/x-iso9660-image", ".qcow2": "application/octet-stream",
                 ".xz": "application/x-xz", ".gz": "application/gzip",
                 ".zst": "application/zstd", ".tar": "application/x-tar"}


@dataclass(frozen=True)
class Item:
    """One local file to publish."""

    name: str  # asset name on the release
    rel: str  # path relative to output/<cluster>/
    path: Path
    sha256: str  # from manifest.json ("" for manifest.json and SHA256SUMS: computed)
    size: int | None  # from manifest.json

    @property
    def content_type(self) -> str:
        if self.name == "SHA256SUMS":
            return "text/plain"
        return CONTENT_TYPES.get(self.path.suffix, "application/octet-stream")
