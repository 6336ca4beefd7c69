"""Role RPMs on upgrade (issue 20), built for real with rpmbuild: build N (release 1) and N+1
(release 2, the patroni drop-in and limits.conf changed), then

- the upgrade's scriptlets, run as rpm runs them (%pre with $1=2, the new files, %posttrans)
  with a stub systemctl and the paths moved into a folder: exactly the service whose files
  changed is try-restarted (patroni, not etcd); a fresh install restarts nothing; %post,
  %preun and %postun follow Fedora's semantics on upgrade (no preset, no disable);
- `rpm -U` into a folder: the operator's edit of a %config(noreplace) file is kept, the
  package's new version lands beside it as .rpmnew."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from builder.core.context import Context
from builder.model.cluster import Cluster
from builder.model.roles import Role
from builder.stages import pipeline, specs

pytestmark = pytest.mark.integration

PATRONI_DROPIN = "/usr/lib/systemd/system/patroni.service.d/50-pgha.conf"
LIMITS = "/etc/security/limits.d/90-pgha-postgres.conf"


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """rpms/ of build N and of build N+1 (same output folder, as an operator's next build)."""
    out = tmp_path_factory.mktemp("upgrade")
    original = specs._role_files

    def changed(role: Role, context: dict[str, Any]) -> list[specs.FileEntry]:
        files = original(role, context)
        return [dataclasses.replace(f, content=f.content + b"# N+1\n")
                if f.dest in (PATRONI_DROPIN, LIMITS) else f for f in files]

    found: dict[int, Path] = {}
    for release in (1, 2):
        with pytest.MonkeyPatch.context() as mp:
            if release == 2:
                mp.setattr(specs, "_role_files", changed)
            ctx = Context.create(Cluster(release=release), out)
            pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
        # The rpms stage keeps only the current build: keep each one, as a repository of
        # every published release does (a rollback needs the old packages).
        found[release] = Path(shutil.copytree(ctx.out.rpms, out / f"release-{release}"))
    return found


def _rpm(rpms: Path, name: str, release: int) -> Path:
    (path,) = rpms.glob(f"{name}-[0-9]*-{release}.el8.noarch.rpm")
    return path


def _script(rpm: Path, tag: str, tmp: Path) -> str:
    text = subprocess.run(["rpm", "-qp", "--qf", f"%{{{tag}}}", str(rpm)], capture_output=True,
                          text=True, check=True).stdout
    return (text.replace("/usr/bin/systemctl", str(tmp / "bin" / "systemctl"))
            .replace("/usr/lib/systemd/system", str(tmp / "root/usr/lib/systemd/system"))
            .replace("/var/lib/rpm-state", str(tmp / "root/var/lib/rpm-state")))


def _run(script: str, arg: str) -> None:
    if script != "(none)":  # the package has no such scriptlet
        subprocess.run(["sh", "-c", script, "scriptlet", arg], check=True)


def _unpack(rpm: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
    subprocess.run(["cpio", "-idmu", "--quiet"], input=payload, cwd=dest, check=True)


def _stub(tmp: Path) -> Path:
    (tmp / "bin").mkdir(parents=True, exist_ok=True)
    log = tmp / "calls"
    (tmp / "bin" / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (tmp / "bin" / "systemctl").chmod(0o755)
    return log


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_upgrade_restarts_exactly_the_service_whose_files_changed(
        builds: dict[int, Path], tmp_path: Path) -> None:
    log = _stub(tmp_path)
    old, new = _rpm(builds[1], "pgha-role-db", 1), _rpm(builds[2], "pgha-role-db", 2)
    _unpack(old, tmp_path / "root")  # build N installed
    _run(_script(new, "PREIN", tmp_path), "2")  # rpm -U: the new package's %pre, $1=2
    _unpack(new, tmp_path / "root")  # its files replace the old ones
    _run(_script(new, "POSTIN", tmp_path), "2")
    _run(_script(old, "PREUN", tmp_path), "1")  # the old package's erase, upgrade: $1=1
    _run(_script(old, "POSTUN", tmp_path), "1")
    _run(_script(new, "POSTTRANS", tmp_path), "0")
    calls = _calls(log)
    assert "try-restart patroni.service" in calls
    assert [c for c in calls if "restart" in c] == ["try-restart patroni.service"], calls
    assert not any("preset" in c or "disable" in c for c in calls), calls
    assert not list((tmp_path / "root/var/lib/rpm-state/pgha").iterdir())  # note removed


def test_unchanged_files_restart_nothing_and_fresh_installs_neither(
        builds: dict[int, Path], tmp_path: Path) -> None:
    log = _stub(tmp_path)
    old, new = (_rpm(builds[1], "pgha-role-haproxy", 1), _rpm(builds[2], "pgha-role-haproxy", 2))
    _unpack(old, tmp_path / "root")
    _run(_script(new, "PREIN", tmp_path), "2")
    _unpack(new, tmp_path / "root")
    _run(_script(new, "POSTTRANS", tmp_path), "0")
    assert _calls(log) == ["daemon-reload"]  # same drop-ins: haproxy and keepalived keep running
    log.unlink()
    fresh = tmp_path / "fresh"
    _stub(fresh)
    _run(_script(new, "PREIN", fresh), "1")  # a first install
    _run(_script(new, "POSTTRANS", fresh), "0")
    assert _calls(fresh / "calls") == []


def test_config_noreplace_keeps_the_operators_edit(builds: dict[int, Path],
                                                   tmp_path: Path) -> None:
    root = tmp_path / "root"
    rpm = ["rpm", "--root", str(root), "--nodeps", "--noscripts", "--define",
           "_dbpath /var/lib/rpm"]
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    subprocess.run([*rpm, "-i", str(_rpm(builds[1], "pgha-role-db", 1))], check=True, env=env)
    limits = root / LIMITS.lstrip("/")
    limits.write_text(limits.read_text() + "postgres soft nofile 200000  # the operator's\n")
    subprocess.run([*rpm, "-U", str(_rpm(builds[2], "pgha-role-db", 2))], check=True, env=env)
    assert "# the operator's" in limits.read_text()
    assert limits.with_name(limits.name + ".rpmnew").read_text().endswith("# N+1\n")
    dropin = root / PATRONI_DROPIN.lstrip("/")
    assert dropin.read_text().endswith("# N+1\n")  # not config: replaced
    query = subprocess.run(["rpm", "--root", str(root), "--define", "_dbpath /var/lib/rpm", "-q",
                            "pgha-role-db"], capture_output=True, text=True, env=env,
                           check=True).stdout
    assert query.strip().endswith("-2.el8.noarch")
