"""SELinux booleans that hold on every image path.

- The haproxy role's %post (read from the built RPM) stores haproxy_connect_any with
  `semanage boolean -N` when SELinux is off (image builds), without -N when it is on, and fails
  visibly when semanage fails; Requires(post) names what it runs.
- pgha-firstboot checks the booleans before HAProxy starts (getsebool, semanage -l -C), turns
  one on that is off, and stops with one line when that does not work.
Stub getsebool/semanage/selinuxenabled record their calls and keep the boolean's running and
stored state in files; `semanage boolean -l -C` prints "NAME (RUNNING , STORED) text" as
seobject.booleanRecords.list does.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_rpms import rpm_of, rpm_q

from builder.core.context import Context
from builder.core.paths import AGENT_DIR

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import selinux
from pgha_agent.errors import ApplyFailed

BOOL = "haproxy_connect_any"


def stub(bin_dir: Path, name: str, body: str) -> Path:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


class Tools:
    """Stub SELinux tools: calls in `calls`, the boolean's runtime/stored state in files."""

    def __init__(self, tmp: Path, enabled: bool, active: str, stored: str, fix_works: bool):
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.calls = tmp / "calls"
        self.active, self.stored = tmp / "active", tmp / "stored"
        self.active.write_text(active)
        self.stored.write_text(stored)
        rec = f'echo "$(basename "$0") $*" >> {self.calls}'
        stub(self.bin, "selinuxenabled", f"{rec}\nexit {0 if enabled else 1}")
        stub(self.bin, "getsebool", f'{rec}\necho "$1 --> $(cat {self.active})"')
        fix = (f'echo on > {self.stored}; [ "$2" = "-N" ] || echo on > {self.active}'
               if fix_works else 'echo "ValueError: SELinux policy is not managed" >&2; exit 1')
        stub(self.bin, "semanage", f"""{rec}
if [ "$2" = "-l" ]; then
  echo "SELinux boolean                State  Default Description"
  [ -s {self.stored} ] && [ "$(cat {self.stored})" != none ] && \\
    echo "{BOOL}            ($(cat {self.active})   ,   $(cat {self.stored}))  Allow haproxy"
  exit 0
fi
{fix}""")

    def log(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []


class LiveRoot:
    live = True


class FolderRoot:
    live = False


@pytest.fixture
def path_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    return monkeypatch


def tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kw: object) -> Tools:
    t = Tools(tmp_path, **kw)  # type: ignore[arg-type]
    monkeypatch.setenv("PATH", f"{t.bin}{os.pathsep}{os.environ['PATH']}")
    return t


def test_agent_leaves_a_boolean_that_is_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = tools(tmp_path, monkeypatch, enabled=True, active="on", stored="on", fix_works=True)
    selinux.ensure_booleans(LiveRoot(), [BOOL])
    assert t.log() == ["selinuxenabled ", f"getsebool {BOOL}", "semanage boolean -l -C"]


def test_agent_turns_on_a_boolean_the_build_did_not_store(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    t = tools(tmp_path, monkeypatch, enabled=True, active="off", stored="none", fix_works=True)
    selinux.ensure_booleans(LiveRoot(), [BOOL])
    assert f"semanage boolean -m --on {BOOL}" in t.log()
    assert (t.active.read_text().strip(), t.stored.read_text().strip()) == ("on", "on")


def test_agent_stores_a_boolean_that_is_only_on_until_reboot(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`setsebool` without -P: running on, stored off; `semanage -l -C` shows (on , off)."""
    t = tools(tmp_path, monkeypatch, enabled=True, active="on", stored="off", fix_works=True)
    selinux.ensure_booleans(LiveRoot(), [BOOL])
    assert f"semanage boolean -m --on {BOOL}" in t.log()
    assert t.stored.read_text().strip() == "on"


def test_agent_stops_with_one_line_when_it_cannot_fix_it(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tools(tmp_path, monkeypatch, enabled=True, active="off", stored="none", fix_works=False)
    with pytest.raises(ApplyFailed) as err:
        selinux.ensure_booleans(LiveRoot(), [BOOL])
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"selinux boolean {BOOL} is off and could not be turned on")
    # the real reasons (policy/modules/kernel/corenetwork.te.in): 6000, 7000 and 5432; 8008 is
    # http_port_t, which haproxy_t may reach without the boolean
    assert all(p in message for p in ("6000", "7000", "5432", "postgresql_port_t"))
    assert "8008" not in message and f"semanage boolean -m --on {BOOL}" in message


def test_agent_checks_nothing_with_selinux_off_or_under_another_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t = tools(tmp_path, monkeypatch, enabled=False, active="off", stored="none", fix_works=False)
    selinux.ensure_booleans(LiveRoot(), [BOOL])
    selinux.ensure_booleans(FolderRoot(), [BOOL])
    assert t.log() == ["selinuxenabled "]


def test_seed_of_a_load_balancer_carries_its_booleans(built: Context) -> None:
    import json

    lb = json.loads((built.out.seeds / "lb1" / "pgha" / "seed.json").read_text())
    db = json.loads((built.out.seeds / "db1" / "pgha" / "seed.json").read_text())
    assert lb["selinux_booleans"] == [BOOL] and db["selinux_booleans"] == []


def run_post(built: Context, t: Tools, policy: bool = True) -> subprocess.CompletedProcess[str]:
    """The built %post with stub tools, and a stand-in /etc/selinux/config when `policy`."""
    post = rpm_q(rpm_of(built, "pgha-role-haproxy"), "--qf", "%{POSTIN}")
    config = t.bin.parent / "selinux-config"
    if policy:
        config.write_text("SELINUX=enforcing\nSELINUXTYPE=targeted\n")
    post = post.replace("/etc/selinux/config", str(config))
    for tool in ("selinuxenabled", "semanage"):
        post = post.replace(f"/usr/sbin/{tool}", str(t.bin / tool))
    for absent in ("/usr/lib/systemd/systemd-sysctl", "/usr/bin/firewall-cmd",
                   "/usr/bin/systemctl"):
        post = post.replace(absent, str(stub(t.bin, Path(absent).name, "exit 0")))
    return subprocess.run(["sh", "-c", post, "post", "1"], capture_output=True, text=True,
                          check=False)


@pytest.mark.parametrize(("enabled", "semanage_args"), [
    (False, f"semanage boolean -N -m --on {BOOL}"), (True, f"semanage boolean -m --on {BOOL}")])
def test_post_stores_the_boolean_with_selinux_off_or_on(built: Context, tmp_path: Path,
                                                       enabled: bool, semanage_args: str) -> None:
    t = Tools(tmp_path, enabled=enabled, active="off", stored="none", fix_works=True)
    proc = run_post(built, t)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in t.log() if c.startswith("semanage")] == [semanage_args]
    assert t.stored.read_text().strip() == "on"


def test_post_fails_visibly_when_semanage_fails(built: Context, tmp_path: Path) -> None:
    t = Tools(tmp_path, enabled=False, active="off", stored="none", fix_works=False)
    proc = run_post(built, t)
    assert proc.returncode == 1
    assert f"could not store SELinux boolean {BOOL}" in proc.stderr


def test_post_without_any_selinux_policy_stores_nothing(built: Context, tmp_path: Path) -> None:
    """No /etc/selinux/config (not RHEL: Requires(post) brings the policy there)."""
    t = Tools(tmp_path, enabled=False, active="off", stored="none", fix_works=False)
    proc = run_post(built, t, policy=False)
    assert proc.returncode == 0 and "no SELinux policy on this system" in proc.stdout
    assert not any(c.startswith("semanage") for c in t.log())


def test_requires_post_names_what_post_runs(built: Context) -> None:
    rows = rpm_q(rpm_of(built, "pgha-role-haproxy"), "--qf",
                 "[%{REQUIRENAME} %{REQUIREFLAGS:deptype}\n]").splitlines()
    assert "policycoreutils-python-utils post" in rows
    assert "selinux-policy-targeted post" in rows
    db = rpm_q(rpm_of(built, "pgha-role-db"), "--requires")
    assert "policycoreutils-python-utils" not in db  # no booleans, no semanage


def test_apply_checks_booleans_before_any_service_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    from pgha_agent import apply

    order: list[str] = []
    for name in ("set_hostname", "configure_network", "restore_selinux_labels", "open_firewall"):
        monkeypatch.setattr(apply.system, name, lambda *a, **k: None)
    for name in ("report_protected", "make_directories", "write_files", "write_marker"):
        monkeypatch.setattr(apply, name, lambda *a, **k: None)
    monkeypatch.setattr(apply.preflight, "check", lambda *a, **k: None)
    monkeypatch.setattr(apply.selinux, "ensure_booleans",
                        lambda root, names: order.append(f"booleans {','.join(names)}"))
    monkeypatch.setattr(apply, "start_services", lambda *a, **k: order.append("services"))
    seed = type("S", (), {"protected_dirs": [], "selinux_booleans": [BOOL], "node": {},
                          "instance_id": "i", "directories": [], "files": [],
                          "firewall_services": [], "firewall_rules": []})()
    apply.apply(LiveRoot(), seed, None, "test")
    assert order == [f"booleans {BOOL}", "services"]
