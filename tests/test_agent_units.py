"""Import-level tests of pgha_agent's pieces: env files, the kernel command line, the
NetworkManager keyfile, seed validation messages, URL helpers, health probes, the protected-path
guard, and the systemd starter's exact commands (with a stub systemctl first in PATH)."""

from __future__ import annotations

import json
import os
import socket
import sys
import types
from pathlib import Path

import pytest
from test_agent_support import AGENT_DIR, make_root, make_seed, seed_file

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import health, readers, rootfs, seed, services, sources, system
from pgha_agent.errors import ApplyFailed, SeedInvalid


def test_env_file_parsing():
    text = (
        "# comment\n\nA=1\nB=\"two words\"\nexport C='three'\n D = spaced \n"
        'E="unbalanced\nnot a pair\n=novalue\nURL=http://x/?a=b\n'
    )
    assert services.parse_env_file(text) == {
        "A": "1",
        "B": "two words",
        "C": "three",
        "D": "spaced",
        "E": '"unbalanced',
        "URL": "http://x/?a=b",
    }


@pytest.mark.parametrize(
    "cmdline, expected",
    [
        ("ro quiet", None),
        ("ro pgha.seed=http://10.0.0.1/db1/ quiet", "http://10.0.0.1/db1/"),
        ("ds=nocloud;s=http://h/db2/", "http://h/db2/"),
        ("ds=nocloud-net;seedfrom=http://h/db3", "http://h/db3"),
        ("ds=nocloud", None),
        ("pgha.seed=file:///etc/seed", "file:///etc/seed"),
    ],
)
def test_kernel_command_line(cmdline, expected):
    assert sources.cmdline_seed(cmdline) == expected


def test_seed_url_and_redaction():
    assert readers.seed_url("http://h/db1/") == "http://h/db1/pgha/seed.json"
    assert readers.seed_url("http://h/db1") == "http://h/db1/pgha/seed.json"
    assert readers.seed_url("http://h/x/seed.json") == "http://h/x/seed.json"
    assert readers.redact("http://u:pw@h:8080/a") == "http://***@h:8080/a"
    assert readers.redact("http://h/a") == "http://h/a"


def test_keyfile_static_ipv4():
    node = make_seed()["node"]
    text = system.keyfile(node, "pgha-db1-1")
    assert "[ipv4]\nmethod=manual\naddress1=10.77.0.11/24,10.77.0.1\n" in text
    assert "[ipv6]\nmethod=ignore" in text and "[ethernet]" not in text
    assert system.keyfile(node, "pgha-db1-1") == text, "uuid must be stable per instance"


def test_keyfile_without_gateway_or_dns():
    node = dict(make_seed()["node"], gateway=None, dns=[], domain=None)
    text = system.keyfile(node, "i")
    assert "address1=10.77.0.11/24\n" in text and "dns=" not in text


def _root(tmp_path: Path) -> rootfs.Root:
    folder = tmp_path / "root"
    return rootfs.Root(str(folder if folder.exists() else make_root(folder)))


def _rejects(tmp_path, data, message):
    with pytest.raises(SeedInvalid) as err:
        seed.validate(json.dumps(data).encode(), _root(tmp_path))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_valid_seed_and_optional_fields(tmp_path):
    data = make_seed(
        generator="pgha-build 0.1.0",
        directories=[{"path": "/run/x", "owner": "root", "group": "root", "mode": "0755"}],
    )
    checked = seed.validate(json.dumps(data).encode(), _root(tmp_path))
    assert checked.instance_id == "pgha-db1-3f2a9c1e" and len(checked.directories) == 1
    assert "node db1 (10.77.0.11)" in checked.summary()


def test_seed_rejections(tmp_path):
    _rejects(tmp_path, make_seed(schema_version=True), "schema_version")
    _rejects(tmp_path, make_seed(node=dict(make_seed()["node"], prefix=40)), "node.prefix")
    _rejects(tmp_path, make_seed(node=dict(make_seed()["node"], address="10.1")), "node.address")
    _rejects(tmp_path, make_seed(node=dict(make_seed()["node"], mac="zz")), "node.mac")
    _rejects(tmp_path, make_seed(roles=[]), "roles: empty")
    _rejects(tmp_path, make_seed(roles=["../db"]), "roles[0]")
    svc = {"name": "a", "user": "u", "argv": ["x"], "env_file": None}
    _rejects(tmp_path, make_seed(services=[svc, svc]), "listed twice")
    _rejects(tmp_path, make_seed(services=[dict(svc, argv=[])]), "services[0].argv: empty")
    _rejects(
        tmp_path,
        make_seed(health=[{"kind": "tcp", "host": "h", "port": 1, "service": "nope"}]),
        "'nope' is not in services",
    )
    _rejects(tmp_path, make_seed(files=[seed_file("/a/../etc/x", "x")]), "canonical")
    _rejects(tmp_path, make_seed(files=[seed_file("/etc/x", "x")] * 2), "listed twice")
    _rejects(
        tmp_path,
        make_seed(
            directories=[
                {"path": "/var/lib/pgsql/16/data/x", "owner": "a", "group": "a", "mode": "0700"}
            ]
        ),
        "inside protected directory",
    )


def test_guard_refuses_writes_in_protected_dirs(tmp_path):
    root = rootfs.Root(str(tmp_path), protected=["/var/lib/pgsql/16/data"])
    with pytest.raises(ApplyFailed):
        root.write_file("/var/lib/pgsql/16/data/postgresql.conf", b"x")
    with pytest.raises(ApplyFailed):
        root.makedirs("/var/lib/pgsql/16/data")
    assert not (tmp_path / "var/lib/pgsql/16/data").exists()
    root.write_file("/var/lib/pgsql/16/other", b"ok", 0o640)
    assert (tmp_path / "var/lib/pgsql/16/other").read_bytes() == b"ok"
    assert rootfs.inside("/a/b", "/a") and not rootfs.inside("/ab", "/a")


def test_atomic_write_replaces_and_keeps_no_temp(tmp_path):
    root = rootfs.Root(str(tmp_path))
    root.write_file("/etc/x.conf", b"one", 0o600)
    root.write_file("/etc/x.conf", b"two", 0o640)
    assert (tmp_path / "etc/x.conf").read_bytes() == b"two"
    assert (tmp_path / "etc/x.conf").stat().st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path / "etc") == ["x.conf"]


def test_health_probes():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert health.probe({"kind": "tcp", "host": "127.0.0.1", "port": port})[0]
    ok, detail = health.probe({"kind": "tcp", "host": "127.0.0.1", "port": port})
    assert not ok and detail
    ok, _ = health.probe({"kind": "http", "url": f"http://127.0.0.1:{port}/"})
    assert not ok


def test_health_wait_stops_when_the_service_dies():
    def dead():
        raise services.ServiceFailed("x exited")

    with pytest.raises(services.ServiceFailed, match="x exited"):
        health.wait("x", [{"kind": "tcp", "host": "127.0.0.1", "port": 9}], dead, 60)


@pytest.fixture
def systemctl_log(tmp_path, monkeypatch):
    """A stub systemctl first in PATH that records its argv and says `failed` to is-active."""
    log = tmp_path / "systemctl.log"
    stub = tmp_path / "bin" / "systemctl"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\necho "$*" >> {log}\n[ "$1" = is-active ] && echo failed\nexit 0\n')
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", "{}:{}".format(stub.parent, os.environ["PATH"]))
    return log


def test_systemd_starter_commands(systemctl_log):
    starter = services.make("systemd", types.SimpleNamespace())
    starter.prepare()
    starter.disable("postgresql-16")
    starter.start({"name": "etcd"})
    with pytest.raises(services.ServiceFailed, match="journalctl -u patroni.service"):
        starter.check({"name": "patroni"})
    assert systemctl_log.read_text().splitlines() == [
        "daemon-reload",
        "disable --now postgresql-16.service",
        "enable etcd.service",
        "start --no-block --job-mode=ignore-dependencies etcd.service",
        "is-active patroni.service",
    ]


def test_process_starter_netns_prefix(tmp_path):
    starter = services.ProcessStarter(rootfs.Root(str(tmp_path)), netns="pgha-db1")
    svc = {"name": "etcd", "argv": ["/usr/bin/etcd"], "user": "etcd"}
    account = types.SimpleNamespace(pw_uid=102, pw_gid=105, pw_name="etcd")
    argv, preexec = starter._argv(svc, account)
    assert argv == [
        "ip",
        "netns",
        "exec",
        "pgha-db1",
        "setpriv",
        "--reuid=102",
        "--regid=105",
        "--init-groups",
        "--",
        "/usr/bin/etcd",
    ]
    assert preexec is None
    assert starter._argv(svc, None) == (["ip", "netns", "exec", "pgha-db1", "/usr/bin/etcd"], None)


def test_process_starter_env_file_under_root_or_already_rooted(tmp_path):
    root = rootfs.Root(str(tmp_path))
    root.write_file("/etc/etcd/etcd.conf", b"ETCD_NAME=db1\n")
    starter = services.ProcessStarter(root)
    me = types.SimpleNamespace(pw_dir="/", pw_name="me")
    for env_file in ("/etc/etcd/etcd.conf", str(tmp_path / "etc/etcd/etcd.conf")):
        env = starter._env({"name": "etcd", "env_file": env_file}, me)
        assert env["ETCD_NAME"] == "db1" and env["USER"] == "me"


def test_syslog_handler_when_live(tmp_path, monkeypatch):
    from pgha_agent import log

    devlog = str(tmp_path / "log")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(devlog)
    sock.settimeout(5)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    try:
        log.setup(False, live=True, devlog=devlog)
        log.LOG.info("hello journal")
        message = sock.recv(4096)
        assert b"pgha-firstboot[" in message and message.endswith(b"hello journal\x00")
        log.setup(False, live=False, devlog=devlog)
        assert len(log.LOG.handlers) == 1, "no syslog when --root is not /"
    finally:
        sock.close()
        log.setup(False, live=False)


@pytest.fixture
def fake_cidata(tmp_path, monkeypatch):
    """Stub blkid/mount/umount first in PATH: a `cidata` device whose "mount" copies a seed."""
    seed_src = tmp_path / "device-content"
    (seed_src / "pgha").mkdir(parents=True)
    (seed_src / "pgha" / "seed.json").write_text('{"from": "device"}')
    log = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stubs = {
        "blkid": '[ "$2" = cidata ] && echo /dev/sr0 && exit 0\nexit 2\n',
        "mount": f'cp -r {seed_src}/. "$4"/\n',
        "umount": 'rm -rf "$1"/*\n',
    }
    for name, body in stubs.items():
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n{body}')
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    return log


def test_cidata_device_is_mounted_read_only_and_unmounted(fake_cidata):
    found = sources._from_device(rootfs.Root("/"))
    assert found.data == b'{"from": "device"}'
    assert found.origin == "block device /dev/sr0 (label cidata)"
    calls = fake_cidata.read_text().splitlines()
    assert calls[0] == "blkid -L cidata"
    assert calls[1].startswith("mount -o ro /dev/sr0 /")
    mountpoint = calls[1].split()[-1]
    assert calls[2] == f"umount {mountpoint}"
    assert not os.path.exists(mountpoint), "the temporary mount point was left behind"


def test_devices_are_not_probed_under_another_root(fake_cidata, tmp_path):
    assert sources._from_device(rootfs.Root(str(tmp_path))) is None
    assert not fake_cidata.exists()
