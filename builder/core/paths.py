"""Where the tool's data lives (templates, roles, the example) and where a cluster's outputs go.

The design card's layout keeps templates and role data at the top of the source tree (specs/,
kickstart/, roles/); pyproject.toml maps them into the package as builder.resources.specs,
.kickstart and .roles, beside builder/resources/ (examples/, f5/, lab/). Each is found next to
the package: a checkout's top-level folders when the package runs from a source tree, the
copies under builder/resources/ in a wheel installed anywhere (importlib.resources). The
package is always installed unzipped (pip), so the data are real folders on disk: jinja2,
rpmbuild and tar read them as files.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

PACKAGE_ROOT = Path(str(files("builder")))
RESOURCES = PACKAGE_ROOT / "resources"
_CHECKOUT = PACKAGE_ROOT.parent


def _data_dir(name: str) -> Path:
    """specs/, kickstart/ or roles/: the checkout's own top-level folder when the package runs
    from a source tree (editable install, PYTHONPATH), else the copy the wheel carries."""
    top = _CHECKOUT / name
    if (_CHECKOUT / "pyproject.toml").is_file() and top.is_dir():
        return top
    return RESOURCES / name


SPECS_DIR = _data_dir("specs")
KICKSTART_DIR = _data_dir("kickstart")
ROLES_DIR = _data_dir("roles")
AGENT_DIR = ROLES_DIR / "common" / "agent"
EXAMPLE_CLUSTER = RESOURCES / "examples" / "cluster.yaml"
# Template roots by the name templates use for them ("specs/pgha-role.spec.j2", ...).
TEMPLATE_ROOTS: dict[str, Path] = {
    "specs": SPECS_DIR, "kickstart": KICKSTART_DIR, "roles": ROLES_DIR,
    **{d.name: d for d in sorted(RESOURCES.iterdir()) if d.is_dir()},  # examples, f5, lab, ...
}
# Every folder whose files are part of the tool (the warm path's digest covers them all).
TOOL_DIRS: tuple[Path, ...] = (PACKAGE_ROOT, SPECS_DIR, KICKSTART_DIR, ROLES_DIR)


@dataclass(frozen=True)
class OutputPaths:
    """The folders under output/<cluster>/; stages create what they write.

    `platform` names artifacts built for another platform beside the cluster's own (the lab's
    debian12 RPMs): its specs, rpms, seeds, ... go under output/<cluster>/<platform>/ and its
    stage states are named "<platform>.<stage>". Secrets, PKI, the manifest and SHA256SUMS are
    the folder's, one set for both: the lab runs with the user's secrets and CA.
    """

    root: Path
    platform: str = ""

    @property
    def base(self) -> Path:
        """Where this platform's artifacts go: the root, or root/<platform>/."""
        return self.root / self.platform if self.platform else self.root

    def for_platform(self, platform: str) -> OutputPaths:
        return OutputPaths(self.root, platform)

    def stage(self, name: str) -> str:
        """A stage's state name, qualified by the platform."""
        return f"{self.platform}.{name}" if self.platform else name

    def rel(self, path: Path) -> str:
        """`path` as an artifact path: relative to the root, POSIX separators."""
        return path.relative_to(self.root).as_posix()

    @property
    def specs(self) -> Path:
        return self.base / "specs"

    @property
    def rpms(self) -> Path:
        return self.base / "rpms"

    @property
    def kickstart(self) -> Path:
        return self.base / "kickstart"

    @property
    def seeds(self) -> Path:
        return self.base / "seeds"

    @property
    def images(self) -> Path:
        return self.base / "images"

    @property
    def pxe(self) -> Path:
        return self.base / "pxe"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def state(self) -> Path:
        """Cache keys of each stage (every platform's: names say which)."""
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
