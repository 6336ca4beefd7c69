"""The vm engine's parts that need no VM: QEMU's command line, the tap names, the guest agent
protocol against a socket that answers as qemu-ga does, the debian12 backend's plan, and the
CLI's choices. The VM boots themselves are in tests/test_lab_vm.py."""

from __future__ import annotations

import base64
import json
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.context import Context
from builder.images import backends, common, debianimage, preflight, rootfs
from builder.lab import lab as labmod
from builder.lab import net, qemu
from builder.model.cluster import Cluster

DATA = {"name": "vmu", "network": {"cidr": "10.90.7.0/24", "gateway": "10.90.7.1"},
        "nodes": [*({"name": f"db{i}", "roles": ["db"], "address": f"10.90.7.1{i}"}
                    for i in (1, 2, 3)),
                  {"name": "lb1", "roles": ["haproxy"], "address": "10.90.7.10"}],
        "patroni": {"watchdog": "required"}, "admin": {"login": "none"}}


def _boot(tmp_path: Path) -> qemu.Boot:
    return qemu.Boot(tmp_path / "db.qcow2", tmp_path / "db.vmlinuz", tmp_path / "db.initrd",
                     tmp_path / "db1-cidata.iso")


def test_qemu_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHA_LAB_ACCEL", raising=False)
    monkeypatch.setenv("PGHA_LAB_VM_MEMORY", "640")
    vm = qemu.Vm(tmp_path / "db1", "pvmu-db1")
    argv = qemu.argv(vm, _boot(tmp_path), "db1")
    text = " ".join(argv)
    assert argv[0] == "qemu-system-x86_64"
    assert "-accel tcg" in text and "-smp 1" in text and "-m 640" in text
    assert f"file={vm.disk},if=virtio,format=qcow2" in text
    assert f"file={tmp_path / 'db1-cidata.iso'},media=cdrom" in text and "readonly=on" in text
    assert "tap,id=net0,ifname=pvmu-db1,script=no,downscript=no" in text
    assert f"mac={qemu.mac('db1')}" in text and qemu.mac("db1") != qemu.mac("db2")
    assert "i6300esb" in text and "org.qemu.guest_agent.0" in text
    assert argv[argv.index("-append") + 1].startswith("root=/dev/vda ")
    assert "-daemonize" in argv and str(vm.pidfile) in argv


def test_kvm_only_when_asked_and_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHA_LAB_ACCEL", "kvm")
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: False)
    assert qemu.accel() == "tcg"
    monkeypatch.setattr(qemu.os, "access", lambda path, mode: path == "/dev/kvm")
    assert qemu.accel() == "kvm"
    monkeypatch.setenv("PGHA_LAB_VM_MEMORY", "lots")
    with pytest.raises(Exception, match="PGHA_LAB_VM_MEMORY"):
        qemu.memory_mib()


def test_taps_are_named_for_the_cluster_and_the_watchdog_kept_on_vm() -> None:
    cluster = Cluster.model_validate(DATA)
    lnet = net.LabNet.of(cluster)
    assert [n.tap for n in lnet.nodes] == ["pvmu-db1", "pvmu-db2", "pvmu-db3", "pvmu-lb1"]
    assert all(len(n.tap) <= net.IFNAMSIZ for n in lnet.nodes)
    assert labmod.lab_cluster(cluster).patroni.watchdog == "off"
    assert labmod.lab_cluster(cluster, engine="vm").patroni.watchdog == "required"


def _fake_qga(path: Path, replies: list[dict[str, object]], seen: list[dict[str, object]]
              ) -> threading.Thread:
    """A unix socket server that answers like qemu-ga: one JSON line per request."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def serve() -> None:
        while replies:
            conn, _ = server.accept()
            with conn, conn.makefile("rwb") as stream:
                for line in stream:
                    msg = json.loads(line)
                    seen.append(msg)
                    if msg["execute"] == "guest-sync":
                        reply: dict[str, object] = {"return": msg["arguments"]["id"]}
                    else:
                        reply = replies.pop(0)
                    stream.write(json.dumps(reply).encode() + b"\n")
                    stream.flush()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_guest_exec_follows_the_guest_agent_protocol(tmp_path: Path) -> None:
    vm = qemu.Vm(tmp_path, "pvmu-db1")
    out = base64.b64encode(b"running\n").decode()
    replies: list[dict[str, object]] = [
        {"return": {"pid": 42}}, {"return": {"exited": False}},
        {"return": {"exited": True, "exitcode": 0, "out-data": out}}]
    seen: list[dict[str, object]] = []
    thread = _fake_qga(vm.qga, replies, seen)
    assert qemu.guest_exec(vm, ["systemctl", "is-system-running"]) == (0, "running\n", "")
    thread.join(5)
    calls = [m for m in seen if m["execute"] != "guest-sync"]
    assert calls[0] == {"execute": "guest-exec", "arguments": {
        "path": "systemctl", "arg": ["is-system-running"], "capture-output": True}}
    assert calls[1:] == [{"execute": "guest-exec-status", "arguments": {"pid": 42}}] * 2


def test_guest_agent_error_is_one_line(tmp_path: Path) -> None:
    vm = qemu.Vm(tmp_path, "pvmu-db1")
    _fake_qga(vm.qga, [{"error": {"class": "GenericError", "desc": "no such file"}}], [])
    with pytest.raises(Exception, match="guest-exec.*no such file"):
        qemu.guest_exec(vm, ["/nonexistent"])
    assert not qemu.guest_ready(qemu.Vm(tmp_path / "none", "x"))


def test_vm_tree_adds_a_kernel_and_the_machine_tree_keeps_its_key() -> None:
    assert set(rootfs.PACKAGES) < set(rootfs.VM_PACKAGES)
    assert {"linux-image-cloud-amd64", "network-manager", "firewalld",
            "qemu-guest-agent"} <= set(rootfs.VM_PACKAGES)
    assert rootfs.key() != rootfs.key(rootfs.VM_PACKAGES)
    assert rootfs.key() == rootfs.key(rootfs.PACKAGES)


def test_debian12_backend_refuses_another_platform(tmp_path: Path) -> None:
    ctx = Context.create(Cluster.model_validate(DATA), tmp_path)
    report = preflight.Report()
    backend = backends.get("debian12")
    backend.check(report, ctx, common.ImageOptions(role="db", backend="debian12"))
    assert any("needs the cluster on platform debian12" in p for p in report.problems)
    assert backend.platform == "debian12" and not backend.depsolve
    argv = debianimage.mke2fs_argv(Path("/t"), Path("/r.raw"), 20)
    assert argv[:1] == ["mke2fs"] and "-d" in argv and argv[-1] == "20G"


def test_images_dry_run_for_the_lab_platform(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(json.dumps(DATA))
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "c.yaml"), "-o", str(tmp_path / "o"),
                                      "images", "--role", "db", "--backend", "debian12",
                                      "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "debootstrap --variant=minbase" in result.output
    assert "mke2fs" in result.output and "qemu-img convert" in result.output
    assert "/debian12/images/vmu-db.qcow2" in result.output or "vmu-db.qcow2" in result.output
    assert not (tmp_path / "o" / "vmu" / "debian12" / "images").exists()


def test_lab_up_offers_the_vm_engine() -> None:
    result = CliRunner().invoke(cli, ["lab", "up", "--help"])
    assert "vm: each node a QEMU" in " ".join(result.output.split())


def test_debian12_plan_keys_on_what_goes_into_the_disk(tmp_path: Path) -> None:
    """The plan's inputs (its cache key) name the Debian tree, the stand-ins RPM, the venv and
    the emulation drop-in; it publishes a kernel and an initramfs beside the images."""
    cluster = labmod.lab_cluster(Cluster.model_validate(DATA), engine="vm")
    ctx = Context.create(cluster, tmp_path)
    plan = debianimage.plan(ctx, common.ImageOptions(role="db", backend="debian12"),
                            preflight.Report())
    assert plan.inputs["rootfs"] == rootfs.key(rootfs.VM_PACKAGES)
    assert plan.inputs["files"] == debianimage.SLOW_START
    assert set(plan.boot_files) == {"vmlinuz", "initrd"}
    assert all(p.parent == common.work_dir(ctx, "db") for p in plan.boot_files.values())
    assert [c[0] for c in plan.commands] == ["debootstrap", "mount", "rpm", "mke2fs",
                                             "qemu-img"]
