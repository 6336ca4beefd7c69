"""Package repositories as data: BaseOS, AppStream, PGDG <major>, PGDG common and PGDG extras.

Each repository has a URL, `gpgcheck`, a GPG key URL, `repo_gpgcheck` and an optional
`includepkgs`. `resolve()` turns the model into the one ordered list every renderer uses: the
role and host kickstarts (`url`/`repo` lines), the cloud image's build-time .repo file, the
image-builder (composer) sources, and /etc/yum.repos.d/pgha.repo on installed nodes. Where the
HA packages (haproxy, keepalived) come from is one setting, `ha_packages`: `appstream` (RHEL's
supported HAProxy 1.8) keeps PGDG extras limited to its `includepkgs` (etcd); `pgdg` adds them
to that list, so dnf takes PGDG's newer builds. Facts and sources: docs/rhel8.md.

No I/O here; the Cluster model holds a `Repos` and resolves the PGDG <major> default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from builder.model.signing import NODE_KEY_PATH
from builder.model.types import RpmName, Url

PGDG_BASE = "https://download.postgresql.org/pub/repos/yum"
PGDG_KEY = f"{PGDG_BASE}/keys/PGDG-RPM-GPG-KEY-RHEL"
REDHAT_KEY = "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-redhat-release"
HA_PACKAGES = ("haproxy", "keepalived")



class Repo(BaseModel):
    """One repository. A plain URL string in the cluster file sets only `url`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Url = Field(description="baseurl as the installer and the nodes reach it")
    gpgcheck: bool = Field(default=True, description="check package signatures")
    gpgkey: Url | None = Field(default=None, description="URL of the signing key")
    repo_gpgcheck: bool = Field(default=False, description="check the metadata signature")
    includepkgs: list[RpmName] = Field(
        default_factory=list, description="only these packages from this repository (all if empty)")
    on_nodes: bool = Field(default=True, description="kept in /etc/yum.repos.d on installed nodes")

    @model_validator(mode="after")
    def _key_when_checked(self) -> Repo:
        if (self.gpgcheck or self.repo_gpgcheck) and not self.gpgkey:
            raise ValueError("gpgcheck needs gpgkey (the URL of the signing key)")
        return self


DEFAULTS: dict[str, dict[str, Any]] = {
    "baseos": {"url": "http://mirror.pgha.lab/rhel8/BaseOS/x86_64/os/", "gpgkey": REDHAT_KEY},
    "appstream": {"url": "http://mirror.pgha.lab/rhel8/AppStream/x86_64/os/",
                  "gpgkey": REDHAT_KEY},
    "pgdg": {"gpgkey": PGDG_KEY, "repo_gpgcheck": True},
    "pgdg_common": {"url": f"{PGDG_BASE}/common/redhat/rhel-8-x86_64/", "gpgkey": PGDG_KEY,
                    "repo_gpgcheck": True},
    "pgdg_extras": {"url": f"{PGDG_BASE}/common/pgdg-rhel8-extras/redhat/rhel-8-x86_64/",
                    "gpgkey": PGDG_KEY, "repo_gpgcheck": True, "includepkgs": ["etcd"]},
}


def pgdg_url(major: int) -> str:
    return f"{PGDG_BASE}/{major}/redhat/rhel-8-x86_64/"


class Repos(BaseModel):
    """The repositories of kickstarts, images and installed nodes, plus this tool's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseos: Repo = Field(default_factory=lambda: Repo(**DEFAULTS["baseos"]))
    appstream: Repo = Field(default_factory=lambda: Repo(**DEFAULTS["appstream"]))
    pgdg: Repo | None = Field(default=None, description="default: PGDG for postgres_version")
    pgdg_common: Repo = Field(default_factory=lambda: Repo(**DEFAULTS["pgdg_common"]),
                              description="patroni, patroni-etcd and their python3.12 modules")
    pgdg_extras: Repo = Field(default_factory=lambda: Repo(**DEFAULTS["pgdg_extras"]),
                              description="etcd (and haproxy/keepalived with ha_packages: pgdg)")
    ha_packages: Literal["appstream", "pgdg"] = Field(
        default="appstream",
        description="where haproxy and keepalived come from: RHEL AppStream (1.8) or PGDG extras")
    pgha: Url = Field(default="http://10.77.0.1:8080/repo/", description="this tool's RPMs")
    mirror: Url | None = Field(
        default=None,
        description="URL of the mirror `pgha-build mirror` made (output/<cluster>/mirror/): "
                    "kickstarts, images, PXE and pgha.repo then use it alone, its keys "
                    "imported from files; the repositories above stay its sources")

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        """A repository given as a URL, or as a partial mapping, keeps its other defaults."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, default in DEFAULTS.items():
            value = out.get(name)
            if isinstance(value, str):
                value = {"url": value}
            if isinstance(value, dict):
                out[name] = {**default, **value}
        return out

    @model_validator(mode="after")
    def _ha_choice(self) -> Repos:
        clash = sorted(set(HA_PACKAGES) & set(self.pgdg_extras.includepkgs))
        if self.ha_packages == "appstream" and clash:
            raise ValueError(f"pgdg_extras.includepkgs lists {', '.join(clash)} but ha_packages "
                             "is appstream: remove them, or set ha_packages: pgdg")
        return self


@dataclass(frozen=True)
class ResolvedRepo:
    """A repository as every renderer writes it. `id` is the dnf/kickstart repository id."""

    key: str
    id: str
    name: str
    url: str
    gpgcheck: bool
    gpgkey: str | None
    repo_gpgcheck: bool
    includepkgs: tuple[str, ...]
    on_nodes: bool


NAMES = {"baseos": ("BaseOS", "RHEL 8 BaseOS"), "appstream": ("AppStream", "RHEL 8 AppStream"),
         "pgdg_common": ("pgdg-common", "PGDG common (Patroni and its Python 3.12 modules)"),
         "pgdg_extras": ("pgdg-extras", "PGDG extras (etcd)")}


def pgha_repo(repos: Repos, cluster_name: str) -> ResolvedRepo:
    """This tool's own repository as the nodes keep it: signed packages and repomd.xml, checked
    against the cluster's key (docs/signing.md)."""
    return ResolvedRepo(key="pgha", id="pgha", name=f"pgha-build packages of cluster {cluster_name}",
                        url=repos.pgha, gpgcheck=True, gpgkey=f"file://{NODE_KEY_PATH}",
                        repo_gpgcheck=True, includepkgs=(), on_nodes=True)


MIRROR_ID = "pgha-mirror"
KEY_DIR = "/etc/pki/rpm-gpg"


def key_file_name(url: str) -> str:
    """The file name a key keeps in the mirror's keys/ and in /etc/pki/rpm-gpg on nodes."""
    return url.rstrip("/").rsplit("/", 1)[-1]


def mirror_repo(repos: Repos, postgres_version: int) -> ResolvedRepo:
    """The one repository of a mirror: every source's packages, checked against every source's
    key (as files on the node) and the pgha key, which also signs the mirror's repomd.xml."""
    keys: list[str] = []
    for repo in source_repos(repos, postgres_version):
        if repo.gpgkey and (repo.gpgcheck or repo.repo_gpgcheck):
            path = f"file://{KEY_DIR}/{key_file_name(repo.gpgkey)}"
            if path not in keys:
                keys.append(path)
    keys.append(f"file://{NODE_KEY_PATH}")
    assert repos.mirror is not None
    return ResolvedRepo(key="mirror", id=MIRROR_ID, name="pgha-build mirror (every package the "
                        "cluster installs)", url=repos.mirror, gpgcheck=True,
                        gpgkey=" ".join(keys), repo_gpgcheck=True, includepkgs=(),
                        on_nodes=True)


def resolve(repos: Repos, postgres_version: int) -> list[ResolvedRepo]:
    """The repositories every renderer writes: the mirror alone when `repos.mirror` is set,
    else the sources."""
    if repos.mirror:
        return [mirror_repo(repos, postgres_version)]
    return source_repos(repos, postgres_version)


def source_repos(repos: Repos, postgres_version: int) -> list[ResolvedRepo]:
    """BaseOS, AppStream, PGDG <major>, PGDG common, PGDG extras: in this order."""
    pgdg = repos.pgdg or Repo(url=pgdg_url(postgres_version), **DEFAULTS["pgdg"])
    names = {**NAMES, "pgdg": (f"pgdg{postgres_version}", f"PGDG PostgreSQL {postgres_version}")}
    out = []
    for key, repo in (("baseos", repos.baseos), ("appstream", repos.appstream), ("pgdg", pgdg),
                      ("pgdg_common", repos.pgdg_common), ("pgdg_extras", repos.pgdg_extras)):
        include = list(repo.includepkgs)
        if key == "pgdg_extras" and repos.ha_packages == "pgdg" and include:
            include += [p for p in HA_PACKAGES if p not in include]
        rid, name = names[key]
        if key == "pgdg_extras" and repos.ha_packages == "pgdg":
            name = "PGDG extras (etcd, haproxy, keepalived)"
        out.append(ResolvedRepo(key=key, id=rid, name=name, url=repo.url, gpgcheck=repo.gpgcheck,
                                gpgkey=repo.gpgkey, repo_gpgcheck=repo.repo_gpgcheck,
                                includepkgs=tuple(include), on_nodes=repo.on_nodes))
    return out
