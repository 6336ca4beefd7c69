"""Local stand-ins for the RHEL 8 and PGDG repositories, for the depsolve gate's tests and bench.

Small noarch packages with the real names, versions and the real Requires/Provides (as
/work/shared/RHEL8.md and docs/rhel8.md record them, from pgdg-packaging/pgdg-rpms
rpm/redhat/main/common/patroni/main/patroni.spec and RHEL 8 AppStream), built with rpmbuild (one
spec per repository, one subpackage per package) and indexed with createrepo_c. Payloads are
empty: only the dependency data matters to dnf.

python3.12-dns sits in AppStream here so that the complete set resolves; whether RHEL 8.10
really provides it is unknown (PGDG builds it for EL-9 only): the gate against the live mirrors
answers that (docs/rhel8.md).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

Pkg = tuple[str, str, str, list[str], list[str]]  # name, version, release, provides, requires

PY = "python(abi) = 3.12"
PATRONI_EVR = "4.1.5-4PGDG.rhel8"

REPOS: dict[str, list[Pkg]] = {
    "baseos": [
        ("bash", "4.4.20", "5.el8", ["/bin/sh"], []),
        ("platform-python", "3.6.8", "62.el8", ["/usr/libexec/platform-python"], []),
        ("systemd", "239", "82.el8", [], ["/bin/sh"]),
        ("firewalld", "0.9.11", "9.el8", [], ["systemd"]),
        ("policycoreutils", "2.9", "26.el8", [], []),
        ("selinux-policy-targeted", "3.14.3", "139.el8", [], ["policycoreutils"]),
        ("policycoreutils-python-utils", "2.9", "26.el8", ["/usr/sbin/semanage"],
         ["policycoreutils"]),
        ("chrony", "4.5", "2.el8", [], ["systemd"]),
        ("openssl-libs", "1.1.1k", "12.el8", [], []),
        ("lz4-libs", "1.8.3", "3.el8", [], []),
        ("libzstd", "1.4.4", "1.el8", [], []),
    ],
    "appstream": [
        ("python3.12", "3.12.8", "1.el8", [PY, "/usr/bin/python3.12"], []),
        ("python3.12-pyyaml", "6.0.1", "2.el8", [], [PY]),
        ("python3.12-cryptography", "41.0.7", "1.el8", [], [PY]),
        ("python3.12-urllib3", "1.26.19", "1.el8", [], [PY]),
        ("python3.12-psycopg2", "2.9.6", "2.el8", [], [PY]),
        ("python3.12-dns", "2.6.1", "1.el8", [], [PY]),  # believed, not verified: see above
        ("haproxy", "1.8.27", "5.el8", [], ["systemd"]),
        ("keepalived", "2.1.5", "11.el8", [], ["systemd"]),
        ("libssh2", "1.9.0", "5.el8", [], []),  # believed, not verified: see docs/backup.md
    ],
    "pgdg": [
        ("postgresql16-libs", "16.10", "1PGDG.rhel8", ["postgresql-libs = 16"], []),
        ("postgresql16", "16.10", "1PGDG.rhel8", [], ["postgresql16-libs = 16.10-1PGDG.rhel8"]),
        ("postgresql16-server", "16.10", "1PGDG.rhel8", [],
         ["postgresql16 = 16.10-1PGDG.rhel8", "postgresql16-libs = 16.10-1PGDG.rhel8",
          "/bin/sh"]),
        ("postgresql16-contrib", "16.10", "1PGDG.rhel8", [],
         ["postgresql16 = 16.10-1PGDG.rhel8"]),
    ],
    "pgdg_common": [
        ("patroni", "4.1.5", "4PGDG.rhel8", [],
         ["/usr/bin/python3.12", PY, "python3.12-six", "python3.12-dateutil",
          "python3.12-systemd", "python3-ydiff < 1.5", "python3-ydiff >= 1.4.2",
          "python3.12-click >= 8.1.7", "python3.12-cryptography >= 1.4",
          "python3.12-prettytable", "python3.12-psutil", "python3.12-psycopg2",
          "python3.12-pyyaml", "python3.12-urllib3 >= 1.19.1", "python3.12-wcwidth"]),
        ("patroni-etcd", "4.1.5", "4PGDG.rhel8", [],
         [f"patroni = {PATRONI_EVR}", "python3.12-etcd >= 0.4.3", "python3.12-dns"]),
        ("python3-ydiff", "1.4.2", "1PGDG.rhel8", [], []),
        # pgdg-rpms rpm/redhat/main/common/pgbackrest/main/pgbackrest.spec (EL-8 branch); it
        # also creates the postgres user (sysusers) on a node without PostgreSQL.
        ("pgbackrest", "2.57.0", "3PGDG.rhel8", [],
         ["postgresql-libs", "openssl-libs >= 1.1.1k", "lz4-libs", "libzstd", "libssh2",
          "systemd"]),
        ("python3.12-click", "8.1.7", "1PGDG.rhel8", [], [PY]),
        ("python3.12-prettytable", "3.10.0", "1PGDG.rhel8", [], [PY, "python3.12-wcwidth"]),
        ("python3.12-psutil", "5.9.8", "1PGDG.rhel8", [], [PY]),
        ("python3.12-six", "1.16.0", "1PGDG.rhel8", [], [PY]),
        ("python3.12-dateutil", "2.9.0", "1PGDG.rhel8", [], [PY, "python3.12-six"]),
        ("python3.12-wcwidth", "0.2.13", "1PGDG.rhel8", [], [PY]),
        ("python3.12-systemd", "235", "1PGDG.rhel8", [], [PY]),
        ("python3.12-etcd", "0.4.5", "1PGDG.rhel8", [],
         [PY, "python3.12-dns", "python3.12-urllib3"]),
    ],
    "pgdg_extras": [
        ("etcd", "3.6.5", "1PGDG.rhel8", [], ["/bin/sh"]),
        ("haproxy", "3.2.4", "1PGDG.rhel8", [], ["systemd"]),
        ("keepalived", "2.3.4", "1PGDG.rhel8", [], ["systemd"]),
    ],
}


def spec_text(repo: str, packages: list[Pkg]) -> str:
    lines = [f"Name: fixture-{repo.replace('_', '-')}", "Version: 1", "Release: 1",
             "Summary: RHEL 8 repository stand-in", "License: MIT", "BuildArch: noarch",
             "%description", "stand-in packages: names and dependencies only"]
    for name, version, release, provides, requires in packages:
        lines += ["", f"%package -n {name}", f"Version: {version}", f"Release: {release}",
                  f"Summary: stand-in for {name}"]
        lines += [f"Provides: {p}" for p in provides] + [f"Requires: {r}" for r in requires]
        lines += [f"%description -n {name}", f"stand-in for {name}", f"%files -n {name}"]
    return "\n".join(lines) + "\n"


def build_repo(dest: Path, repo: str, work: Path, omit: frozenset[str] = frozenset()) -> Path:
    """Build one repository's packages into dest and index it; `omit` leaves packages out."""
    top = work / f"top-{repo}"
    spec = work / f"{repo}.spec"
    spec.write_text(spec_text(repo, [p for p in REPOS[repo] if p[0] not in omit]))
    subprocess.run(["rpmbuild", "--define", f"_topdir {top}", "--define", "_buildhost fixture",
                    "-bb", str(spec)], check=True, capture_output=True)
    dest.mkdir(parents=True, exist_ok=True)
    for rpm in (top / "RPMS" / "noarch").glob("*.rpm"):
        shutil.copy2(rpm, dest / rpm.name)
    subprocess.run(["createrepo_c", "-q", str(dest)], check=True, capture_output=True)
    return dest


def build_all(dest: Path) -> dict[str, Path]:
    """Every repository under dest/<key>/ (key as in builder.model.repos: baseos, ...)."""
    work = dest / ".work"
    work.mkdir(parents=True, exist_ok=True)
    return {repo: build_repo(dest / repo, repo, work) for repo in REPOS}


def without(source: Path, dest: Path, *names: str) -> Path:
    """A copy of a built repository without the named packages, re-indexed."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("repodata"))
    for name in names:
        for rpm in dest.glob(f"{name}-[0-9]*.rpm"):
            rpm.unlink()
    subprocess.run(["createrepo_c", "-q", str(dest)], check=True, capture_output=True)
    return dest


def cluster_repos(paths: dict[str, Path]) -> dict[str, object]:
    """The `repos:` mapping of a cluster file pointing at local repositories."""
    return {key: path.resolve().as_uri() + "/" for key, path in paths.items()}
