"""Where the project's data lives (templates, roles) and where a cluster's outputs go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPECS_DIR = PROJECT_ROOT / "specs"
KICKSTART_DIR = PROJECT_ROOT / "kickstart"
ROLES_DIR = PROJECT_ROOT / "roles"
AGENT_DIR = ROLES_DIR / "common" / "agent"


@dataclass(frozen=True)
class OutputPaths:
    """The folders under output/<cluster>/; stages create what they write."""

    root: Path

    @property
    def specs(self) -> Path:
        return self.root / "specs"

    @property
    def rpms(self) -> Path:
        return self.root / "rpms"

    @property
    def kickstart(self) -> Path:
        return self.root / "kickstart"

    @property
    def seeds(self) -> Path:
        return self.root / "seeds"

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def pxe(self) -> Path:
        return self.root / "pxe"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        """Cache keys of each stage."""
        return self.root / ".state"

    @property
    def work(self) -> Path:
        """Scratch space (rpmbuild _topdir, ...)."""
        return self.root / ".work"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def sha256sums(self) -> Path:
        return self.root / "SHA256SUMS"
