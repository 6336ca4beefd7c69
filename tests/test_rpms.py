"""The role RPMs, built for real with rpmbuild and inspected with rpm, rpmlint, createrepo_c."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core.context import Context
from builder.model import loading as config
from builder.stages import pipeline
from builder.stages.lint import lint_rpms

pytestmark = pytest.mark.integration


def rpm_q(path: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(path)], capture_output=True, text=True,
                          check=True).stdout


def rpm_of(ctx: Context, name: str) -> Path:
    (path,) = ctx.out.rpms.glob(f"{name}-[0-9]*.noarch.rpm")
    return path


def test_packages_and_names(built: Context) -> None:
    names = sorted(p.name for p in built.out.rpms.glob("*.rpm"))
    assert names == [
        "pgha-common-0.1.0-1.el8.noarch.rpm", "pgha-common-0.1.0-1.el8.src.rpm",
        "pgha-role-backup-0.1.0-1.el8.noarch.rpm", "pgha-role-backup-0.1.0-1.el8.src.rpm",
        "pgha-role-db-0.1.0-1.el8.noarch.rpm", "pgha-role-db-0.1.0-1.el8.src.rpm",
        "pgha-role-haproxy-0.1.0-1.el8.noarch.rpm", "pgha-role-haproxy-0.1.0-1.el8.src.rpm",
    ]


@pytest.mark.parametrize("name", ["pgha-common", "pgha-role-db", "pgha-role-haproxy",
                                  "pgha-role-backup"])
def test_rhel8_installable_headers(built: Context, name: str) -> None:
    qf = "%{PAYLOADCOMPRESSOR} %{ARCH} %{RELEASE} %{BUILDHOST} %{BUILDTIME}\n"
    comp, arch, release, host, btime = rpm_q(rpm_of(built, name), "--qf", qf).split()
    assert comp in ("xz", "gzip") and arch == "noarch" and release.endswith(".el8")
    assert host == "pgha-build" and int(btime) == built.epoch


def test_db_requires_real_rhel8_packages(built: Context) -> None:
    reqs = rpm_q(rpm_of(built, "pgha-role-db"), "--requires")
    for pkg in ("postgresql16-server", "postgresql16-contrib", "patroni", "patroni-etcd", "etcd",
                "pgha-common = 0.1.0"):
        assert pkg in reqs, reqs
    assert "haproxy" in rpm_q(rpm_of(built, "pgha-role-haproxy"), "--requires")
    assert "pgbackrest" in reqs
    backup = rpm_q(rpm_of(built, "pgha-role-backup"), "--requires")
    assert "pgbackrest" in backup


def test_backup_role_ships_timers_enabled_by_preset(built: Context) -> None:
    files = rpm_q(rpm_of(built, "pgha-role-backup"), "-l").splitlines()
    for unit in ("pgha-backup@.service", "pgha-backup-full.timer", "pgha-backup-diff.timer",
                 "pgha-backup-init.timer", "pgbackrest.service.d/50-pgha.conf"):
        assert f"/usr/lib/systemd/system/{unit}" in files
    assert "/usr/libexec/pgha/pgha-backup" in files
    scripts = rpm_q(rpm_of(built, "pgha-role-backup"), "--scripts")
    assert "preset pgha-backup-full.timer pgha-backup-diff.timer pgha-backup-init.timer" in scripts


def test_files_modes_and_owners(built: Context) -> None:
    qf = "[%{FILEMODES:perms} %{FILEUSERNAME} %{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]"
    rows = {line.split()[-1]: line.split() for line in
            rpm_q(rpm_of(built, "pgha-role-db"), "--qf", qf).splitlines()}
    assert rows["/etc/patroni"][:3] == ["drwxr-x---", "postgres", "postgres"]
    assert rows["/etc/pgha/roles.d/db"][:3] == ["-rw-r--r--", "root", "root"]
    assert "c" in rows["/etc/security/limits.d/90-pgha-postgres.conf"][3]
    for path in ("/usr/lib/systemd/system/patroni.service.d/50-pgha.conf",
                 "/usr/lib/systemd/system/etcd.service.d/50-pgha.conf",
                 "/usr/lib/firewalld/services/pgha-postgresql.xml",
                 "/usr/lib/sysctl.d/90-pgha-db.conf"):
        assert path in rows
    common = rpm_q(rpm_of(built, "pgha-common"), "-l")
    assert "/usr/lib/systemd/system/pgha-firstboot.service" in common


def test_scriptlets_have_no_unexpanded_macros(built: Context) -> None:
    for name in ("pgha-common", "pgha-role-db", "pgha-role-haproxy"):
        scripts = rpm_q(rpm_of(built, name), "--scripts")
        assert "%" not in scripts.replace("%{", ""), scripts
        assert "%systemd" not in scripts and "%{" not in scripts
    common = rpm_q(rpm_of(built, "pgha-common"), "--scripts")
    assert "systemctl --no-reload preset pgha-firstboot.service" in common
    haproxy = rpm_q(rpm_of(built, "pgha-role-haproxy"), "--scripts")
    assert "semanage boolean $pgha_reload -m --on haproxy_connect_any" in haproxy
    assert "setsebool -P" not in haproxy.replace("(setsebool -P does", "")


def test_scriptlet_runs_with_stub_systemctl(built: Context, tmp_path: Path) -> None:
    """Run the common package's %post with a stub systemctl first in PATH, as rpm would."""
    post = rpm_q(rpm_of(built, "pgha-common"), "--qf", "%{POSTIN}")
    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "calls"
    (stub / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    (stub / "systemctl").chmod(0o755)
    script = post.replace("/usr/bin/systemctl", str(stub / "systemctl"))
    subprocess.run(["sh", "-c", script, "post", "1"], check=True)
    assert log.read_text().split() == ["--no-reload", "preset", "pgha-firstboot.service"]
    log.unlink()
    subprocess.run(["sh", "-c", script, "post", "2"], check=True)  # upgrade: no preset
    assert not log.exists()


def test_install_into_folder(built: Context, tmp_path: Path) -> None:
    root = tmp_path / "root"
    rpms = [rpm_of(built, n) for n in ("pgha-common", "pgha-role-db")]
    subprocess.run(["rpm", "--root", str(root), "--dbpath", str(root / "rpmdb"), "-i",
                    "--nodeps", "--noscripts", *map(str, rpms)], check=True,
                   capture_output=True, env={**os.environ, "HOME": str(tmp_path)})
    assert (root / "etc/pgha/roles.d/db").read_text() == "db\n"
    dropin = root / "usr/lib/systemd/system/patroni.service.d/50-pgha.conf"
    assert "After=network-online.target etcd.service pgha-firstboot.service" in dropin.read_text()
    xml = (root / "usr/lib/firewalld/services/pgha-postgresql.xml").read_text()
    assert 'port="5432"' in xml and 'port="8008"' not in xml
    xml = (root / "usr/lib/firewalld/services/pgha-patroni.xml").read_text()
    assert 'port="8008"' in xml
    assert oct((root / "etc/patroni").stat().st_mode & 0o777) == "0o750"
    # watchdog fencing: softdog loaded at boot, /dev/watchdog given to Patroni's user
    modules = (root / "usr/lib/modules-load.d/pgha-softdog.conf").read_text().splitlines()
    assert [ln for ln in modules if ln and not ln.startswith("#")] == ["softdog"]
    rules = (root / "usr/lib/udev/rules.d/90-pgha-watchdog.rules").read_text().splitlines()
    assert [ln for ln in rules if ln and not ln.startswith("#")] == [
        'KERNEL=="watchdog", OWNER="postgres", GROUP="postgres", MODE="0600"']


def test_repository_metadata_lists_packages(built: Context) -> None:
    import gzip

    (primary,) = (built.out.rpms / "repodata").glob("*-primary.xml.gz")
    text = gzip.decompress(primary.read_bytes()).decode()
    for name in ("pgha-common", "pgha-role-db", "pgha-role-haproxy"):
        assert f"<name>{name}</name>" in text


def test_rpmlint_has_no_errors(built: Context) -> None:
    assert ", 0 errors" in lint_rpms(built)


def test_rpmlint_catches_errors(built: Context, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The lint step is not a rubber stamp: a package with an error fails it."""
    from builder.core.errors import ValidationFailed
    from builder.stages import lint
    from builder.stages.rpms import RpmsResult

    bad = Context.create(built.cluster, tmp_path)
    bad.out.rpms.mkdir(parents=True)
    copied = Path(shutil.copy(rpm_of(built, "pgha-role-db"), bad.out.rpms))
    bad.put("rpms", RpmsResult({"pgha-role-db": copied}, {}, bad.out.rpms, []))
    (tmp_path / "rpmlint.toml").write_text('ValidLicenses = ["GPL-2.0-only"]\n')
    monkeypatch.setattr(lint, "SPECS_DIR", tmp_path)
    with pytest.raises(ValidationFailed, match="error"):
        lint_rpms(bad)


def test_reproducible_and_cached(built: Context, tmp_path: Path) -> None:
    again = Context.create(config.load(None), tmp_path, RecordingRunner())
    pipeline.run_steps(again, pipeline.BUILD)
    for rpm in built.out.rpms.glob("*.rpm"):
        assert (again.out.rpms / rpm.name).read_bytes() == rpm.read_bytes(), rpm.name
    runner = RecordingRunner()
    warm = Context.create(config.load(None), tmp_path, runner)
    pipeline.run_steps(warm, pipeline.BUILD)
    assert runner.ran("rpmbuild") == 0 and runner.ran("createrepo_c") == 0
    assert "rpms: up to date, rpmbuild not run" in warm.messages


def test_changed_input_rebuilds_only_what_changed(tmp_path: Path) -> None:
    runner = RecordingRunner()
    ctx = Context.create(config.load(None), tmp_path, runner)
    pipeline.run_steps(ctx, pipeline.BUILD)
    assert runner.ran("rpmbuild") == 4
    changed = config.from_data({"load_balancer": {"stats_port": 7001}})
    runner2 = RecordingRunner()
    pipeline.run_steps(Context.create(changed, tmp_path, runner2), pipeline.BUILD)
    assert runner2.ran("rpmbuild") == 1  # only pgha-role-haproxy carries that port
    assert runner2.ran("createrepo_c") == 1


def test_manifest_and_sha256sums(built: Context) -> None:
    import json

    manifest = json.loads(built.out.manifest.read_text())
    kinds = {a["kind"] for a in manifest["artifacts"]}
    assert {"rpm", "srpm", "spec", "kickstart", "repodata"} <= kinds
    for art in manifest["artifacts"]:
        assert art["size"] == (built.out.root / art["path"]).stat().st_size
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=built.out.root, check=True)


_SEEN: list[tuple[str, int, int]] = []


class _TopdirRunner(RecordingRunner):
    """Records the mode and owner of rpmbuild's _topdir while rpmbuild runs (in _SEEN)."""

    def run(self, argv, **kwargs):  # type: ignore[no-untyped-def]
        args = [str(a) for a in argv]
        if Path(args[0]).name == "rpmbuild":
            top = Path(args[args.index("--define") + 1].removeprefix("_topdir "))
            st = top.lstat()
            _SEEN.append((str(top), st.st_mode & 0o7777, st.st_uid))
        return super().run(argv, **kwargs)


def test_rpmbuild_topdir_is_private_and_unpredictable(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """No fixed name in /tmp (a planted symlink there once truncated a root-owned file) and no
    lock to wait on: each build gets a fresh 0700 mkdtemp folder, removed afterwards."""
    import tempfile

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    runner = _TopdirRunner()
    _SEEN.clear()
    ctx = Context.create(config.load(None), tmp_path / "out", runner, force=True)
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    assert len(_SEEN) == 4
    assert len({top for top, _, _ in _SEEN}) == 4
    for top, mode, uid in _SEEN:
        assert Path(top).parent == tmp and Path(top).name.startswith("pgha-rpmbuild-")
        assert mode == 0o700 and uid == os.getuid()
    assert list(tmp.iterdir()) == []
