"""The systemd engine's parts that run without booting a machine: the dependency stand-ins
(pgha-lab-provides) against the real role RPMs, its %pre check, how a machine's end is read,
and the agent reading a cidata device that the kernel cannot mount."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_agent_support import AGENT_DIR, make_cidata_iso, make_seed, write_seed_dir

from builder.core.context import Context
from builder.core.run import Runner
from builder.images import provides, rootfs
from builder.lab import machine_init
from builder.lab.lab import lab_cluster
from builder.model.cluster import Cluster
from builder.model.platform import layout
from builder.stages import pipeline

CLUSTER = {"name": "mu", "nodes": [
    {"name": "db1", "roles": ["db"], "address": "10.0.0.11"},
    {"name": "db2", "roles": ["db"], "address": "10.0.0.12"},
    {"name": "db3", "roles": ["db"], "address": "10.0.0.13"},
    {"name": "lb1", "roles": ["haproxy"], "address": "10.0.0.10"}]}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    out = tmp_path_factory.mktemp("machine-units")
    ctx = Context.create(lab_cluster(Cluster.model_validate(CLUSTER)), out, Runner())
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    rpms = sorted(ctx.out.rpms.glob("*.noarch.rpm"))
    extra = provides.build(Runner(), layout("debian12", 15), out / "provides")
    return rpms, extra


@pytest.mark.integration
def test_every_role_requirement_has_a_debian_stand_in(built: tuple[list[Path], Path]) -> None:
    rpms, extra = built
    assert len(rpms) == 3
    needed = provides.requirements(rpms)
    assert {"postgresql15-server", "patroni", "etcd", "haproxy", "/bin/sh"} <= needed
    assert provides.unmapped(rpms) == []
    out = subprocess.run(["rpm", "-qp", "--provides", str(extra)], capture_output=True,
                         text=True, check=True).stdout.split("\n")
    provided = {line.split()[0] for line in out if line.strip()}
    assert needed <= provided
    files = subprocess.run(["rpm", "-qpl", str(extra)], capture_output=True, text=True,
                           check=True).stdout.split()
    assert files == ["/usr/lib/systemd/system/patroni.service", "/usr/libexec/platform-python"]


def test_mapping_names_debian_packages_of_the_image() -> None:
    debs = {d for p in provides.mapping() for d in p.debian}
    essential = {"dash", "systemd-sysv"}  # in every minbase image with systemd
    assert debs - essential <= set(rootfs.PACKAGES)
    absent = [p.rhel for p in provides.mapping() if not p.debian]
    assert absent == ["firewalld", "policycoreutils-python-utils", "selinux-policy-targeted"]


@pytest.mark.integration
def test_pre_refuses_when_a_debian_package_is_missing(built: tuple[list[Path], Path],
                                                      tmp_path: Path) -> None:
    _rpms, extra = built
    pre = subprocess.run(["rpm", "-qp", "--qf", "%{PREIN}", str(extra)], capture_output=True,
                         text=True, check=True).stdout
    stub = tmp_path / "bin"
    stub.mkdir()
    query = stub / "dpkg-query"
    # A dpkg-query that knows every package but haproxy.
    query.write_text('#!/bin/sh\nfor a; do last="$a"; done\n'
                     '[ "$last" = haproxy ] && exit 1\nprintf installed\n')
    query.chmod(0o755)
    env = {"PATH": f"{stub}:/usr/bin:/bin"}
    res = subprocess.run(["sh", "-c", pre], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 1
    assert res.stderr.strip() == "pgha-lab-provides: Debian package(s) not installed: haproxy"
    query.write_text("#!/bin/sh\nprintf installed\n")
    assert subprocess.run(["sh", "-c", pre], env=env, check=False).returncode == 0


@pytest.mark.parametrize(("code", "words"), [
    (-signal.SIGHUP, "rebooted"), (-signal.SIGINT, "powered off"), (-signal.SIGKILL, "killed"),
    (128 + signal.SIGHUP, "rebooted"), (1, "exited with status 1")])
def test_how_a_machine_ended(code: int, words: str) -> None:
    assert machine_init.how_it_ended(code)[1] == words


def test_agent_reads_an_unmountable_cidata_device_with_xorriso(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.syspath_prepend(str(AGENT_DIR))
    from pgha_agent import readers
    from pgha_agent.errors import SeedUnreadable

    seed_dir = write_seed_dir(tmp_path / "seed", make_seed())
    iso = make_cidata_iso(seed_dir, tmp_path / "cidata.iso")

    def no_iso9660(device: str, options: list[str]) -> bytes:
        raise SeedUnreadable(f"mount {device}: unknown filesystem type 'iso9660'")

    monkeypatch.setattr(readers, "read_mounted", no_iso9660)
    assert readers.read_device(str(iso)) == (seed_dir / "pgha" / "seed.json").read_bytes()
    plain = tmp_path / "not-an-iso"
    plain.write_bytes(b"\0" * 40000)
    with pytest.raises(SeedUnreadable, match="unknown filesystem type"):
        readers.read_device(str(plain))
    for name in [m for m in sys.modules if m == "pgha_agent" or m.startswith("pgha_agent.")]:
        monkeypatch.delitem(sys.modules, name)
