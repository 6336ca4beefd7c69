"""Where the tool's data lives (templates, roles, the example) and where a cluster's outputs go.

The data ships inside the package, in builder/resources/, and is found with importlib.resources,
so an installed wheel works from any folder. The package is always installed unzipped (pip),
so the resources are real folders on disk: jinja2, rpmbuild and tar read them as files.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

RESOURCES = Path(str(files("builder").joinpath("resources")))
PACKAGE_ROOT = RESOURCES.parent
SPECS_DIR = RESOURCES / "specs"
ROLES_DIR = RESOURCES / "roles"
AGENT_DIR = ROLES_DIR / "common" / "agent"
EXAMPLE_CLUSTER = RESOURCES / "examples" / "cluster.yaml"


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
    def pki(self) -> Path:
        """The cluster CA (ca.crt public, ca.key 0600) and the certificates it issued."""
        return self.root / "pki"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def sha256sums(self) -> Path:
        return self.root / "SHA256SUMS"
