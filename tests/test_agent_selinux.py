"""pgha-firstboot restores SELinux labels of what it wrote, on a live node with SELinux on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parent.parent / "roles" / "common" / "agent"
sys.path.insert(0, str(AGENT))

from pgha_agent import system


class LiveRoot:
    live = True


class FolderRoot:
    live = False


def stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


@pytest.fixture
def stubs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    stub(bin_dir, "restorecon", f'echo "$@" >> {calls}')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir, calls


def test_labels_restored_when_selinux_enabled(stubs: tuple[Path, Path]) -> None:
    bin_dir, calls = stubs
    stub(bin_dir, "selinuxenabled", "exit 0")
    system.restore_selinux_labels(LiveRoot(), ["/etc/patroni/patroni.yml", "/etc/patroni"])
    assert calls.read_text().split() == ["-F", "/etc/patroni", "/etc/patroni/patroni.yml"]


def test_nothing_when_selinux_disabled_or_not_live(stubs: tuple[Path, Path]) -> None:
    bin_dir, calls = stubs
    stub(bin_dir, "selinuxenabled", "exit 1")
    system.restore_selinux_labels(LiveRoot(), ["/etc/x"])
    stub(bin_dir, "selinuxenabled", "exit 0")
    system.restore_selinux_labels(FolderRoot(), ["/etc/x"])
    assert not calls.exists()
