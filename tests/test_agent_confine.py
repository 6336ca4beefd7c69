"""pgha-firstboot stays inside --root and outside protected directories, and checks everything
before its first write: each hostile seed or planted tree below is refused with one line and
leaves the tree exactly as it was (run for real, as a subprocess)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from test_agent_support import (
    AGENT_DIR,
    AS_ROOT,
    listing,
    make_root,
    make_seed,
    run_agent,
    seed_file,
    write_seed_dir,
)

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import seed as agent_seed
from pgha_agent.errors import SeedInvalid

EXIT_BAD_SEED, EXIT_APPLY = 4, 5


def _run(tmp_path: Path, seed: dict, root: Path | None = None) -> tuple[int, str, Path]:
    root = root or make_root(tmp_path / "root")
    folder = write_seed_dir(tmp_path / "seed", seed)
    before = listing(tmp_path)
    res = run_agent("--root", root, "--seed", folder, "--services", "process")
    assert listing(tmp_path) == before, "a refused seed changed the tree"
    lines = [ln for ln in res.stderr.splitlines() if "ERROR" in ln or "error" in ln.lower()]
    assert "Traceback" not in res.stderr
    return res.returncode, "\n".join(lines), root


def test_non_canonical_path_into_pgdata_is_refused(tmp_path: Path) -> None:
    seed = make_seed(files=[seed_file("//var/lib/pgsql/16/data/x", "x")])
    code, err, _ = _run(tmp_path, seed)
    assert code == EXIT_BAD_SEED and "must be canonical" in err


def test_symlink_planted_under_root_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_root(tmp_path / "root")
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "patroni").symlink_to(outside)
    code, err, _ = _run(tmp_path, make_seed(), root)
    assert code == EXIT_APPLY and "/etc/patroni is a symlink" in err
    assert not list(outside.iterdir())


def test_symlink_at_the_file_itself_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    root = make_root(tmp_path / "root")
    (root / "etc" / "etcd").mkdir(parents=True)
    (root / "etc" / "etcd" / "etcd.conf").symlink_to(victim)
    code, err, _ = _run(tmp_path, make_seed(), root)
    assert code == EXIT_APPLY and "/etc/etcd/etcd.conf is a symlink" in err
    assert victim.read_text() == "keep\n"


def test_symlinked_protected_dir_is_compared_by_real_path(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    data = root / "var/lib/pgsql/16/data"
    real = root / "srv/pgdata"
    real.parent.mkdir(parents=True)
    data.rename(real)
    data.symlink_to(real)
    seed = make_seed(files=[seed_file("/srv/pgdata/postgresql.auto.conf", "x")])
    code, err, _ = _run(tmp_path, seed, root)
    assert code == EXIT_APPLY and "inside protected directory /srv/pgdata" in err


def test_huge_owner_fails_before_any_write(tmp_path: Path) -> None:
    seed = make_seed()
    seed["files"].append(seed_file("/etc/pgha-test/x", "x", "0600", "99999999999", "root"))
    code, err, _ = _run(tmp_path, seed)
    assert code == EXIT_BAD_SEED and "out of range" in err


@pytest.mark.skipif(not AS_ROOT, reason="owners are resolved only when running as root")
def test_unknown_owner_fails_before_any_write(tmp_path: Path) -> None:
    seed = make_seed()
    seed["files"].append(seed_file("/etc/pgha-test/x", "x", "0600", "no-such-user-x", "root"))
    code, err, _ = _run(tmp_path, seed)
    assert code == EXIT_APPLY and "user no-such-user-x does not exist" in err


def test_file_and_directory_on_the_same_path(tmp_path: Path) -> None:
    seed = make_seed(directories=[{"path": "/etc/patroni/patroni.yml", "owner": "root",
                                   "group": "root", "mode": "0755"}])
    code, err, _ = _run(tmp_path, seed)
    assert code == EXIT_BAD_SEED and "also listed in directories" in err
    seed = make_seed(files=[seed_file("/etc/a", "x"), seed_file("/etc/a/b", "y")])
    code, err, _ = _run(tmp_path / "2", seed)
    assert code == EXIT_BAD_SEED and "/etc/a is a file, but /etc/a/b needs it" in err


def test_file_on_disk_where_a_directory_must_go(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    (root / "etc/patroni").write_text("not a folder\n")
    code, err, _ = _run(tmp_path, make_seed(), root)
    assert code == EXIT_APPLY and "/etc/patroni is not a directory" in err


def test_directory_on_disk_where_a_file_must_go(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    (root / "etc/etcd/etcd.conf").mkdir(parents=True)
    code, err, _ = _run(tmp_path, make_seed(), root)
    assert code == EXIT_APPLY and "a directory or special file is where the file must go" in err


def test_setuid_needs_explicit_permission(tmp_path: Path) -> None:
    seed = make_seed()
    seed["files"].append(seed_file("/usr/local/bin/x", "#!/bin/sh\n", "4755"))
    code, err, _ = _run(tmp_path, seed)
    assert code == EXIT_BAD_SEED and "setuid, setgid or sticky" in err
    seed["files"][-1]["special_bits"] = True
    agent_seed.validate(json.dumps(seed).encode(), _FakeRoot())


def test_no_narrowing_above_a_protected_directory(tmp_path: Path) -> None:
    root = make_root(tmp_path / "root")
    os.chmod(root / "var/lib/pgsql", 0o755)
    seed = make_seed(directories=[{"path": "/var/lib/pgsql", "owner": "root", "group": "root",
                                   "mode": "0700"}])
    code, err, _ = _run(tmp_path, seed, root)
    assert code == EXIT_APPLY and "would narrow its mode 0755" in err


def test_lone_surrogate_content_is_a_seed_error() -> None:
    seed = make_seed()
    seed["files"][0]["content"] = "\ud800"
    with pytest.raises(SeedInvalid, match="not encodable"):
        agent_seed.validate(json.dumps(seed).encode(), _FakeRoot())


class _FakeRoot:
    """Only what seed.validate asks: is a role marker present."""

    def exists(self, node_path: str) -> bool:
        return True


def test_writes_never_follow_a_symlink_even_without_preflight(tmp_path: Path) -> None:
    """The openat walk itself (what a race after preflight meets): O_NOFOLLOW per component."""
    from pgha_agent import rootfs
    from pgha_agent.errors import ApplyFailed

    outside = tmp_path / "outside"
    outside.mkdir()
    root_dir = tmp_path / "root"
    (root_dir / "etc").mkdir(parents=True)
    (root_dir / "etc" / "link").symlink_to(outside)
    (root_dir / "etc" / "file").symlink_to(outside / "f")
    root = rootfs.Root(str(root_dir))
    for call in (lambda: root.write_file("/etc/link/x", b"x"),
                 lambda: root.ensure_dir("/etc/link/d", 0o755),
                 lambda: root.makedirs("/etc/link", 0o700)):
        with pytest.raises(ApplyFailed, match="symlinks are never followed"):
            call()
    root.write_file("/etc/file", b"replaced\n")  # the link itself is replaced, not written through
    assert not (outside / "f").exists() and (root_dir / "etc/file").read_text() == "replaced\n"
    assert not list(outside.iterdir())


def test_service_log_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    from pgha_agent import rootfs
    from pgha_agent.errors import ApplyFailed

    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "root/var/log/pgha").mkdir(parents=True)
    (tmp_path / "root/var/log/pgha/web.log").symlink_to(victim)
    root = rootfs.Root(str(tmp_path / "root"))
    with pytest.raises(ApplyFailed, match="cannot open /var/log/pgha/web.log"):
        root.open_append("/var/log/pgha/web.log")
    with root.open_append("/var/log/pgha/db.log") as fh:
        fh.write(b"x\n")
    assert victim.read_text() == "keep\n"
    assert (tmp_path / "root/var/log/pgha/db.log").read_bytes() == b"x\n"
