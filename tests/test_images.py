"""Images: install sources and preflight, the build-time kickstart, virt-install's arguments and
domain XML (libvirt's test driver), KVM detection, the OVF descriptor."""

from __future__ import annotations

import dataclasses
import shutil
import xml.etree.ElementTree as ET
from collections import namedtuple
from pathlib import Path

import pytest
from test_images_support import make_tree

from builder.core.context import Context
from builder.core.errors import ConfigError, PghaError
from builder.core.run import Runner
from builder.images import imagebuild, ova, preflight, vminstall
from builder.images.stage import ImageOptions, build_images
from builder.stages import installsrc, kickstart

Usage = namedtuple("Usage", "total used free")
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJslPnSAmYU/kKRD6jsUrKoYsRzD9lF+C7sxQ1O7COLi ops@x"


def test_treeinfo_rhel8_tree_is_accepted(tmp_path: Path) -> None:
    src = installsrc.load(str(make_tree(tmp_path)))
    assert (src.name, src.version, src.arch, src.kind) == (
        "Red Hat Enterprise Linux", "8.10", "x86_64", "dir")
    assert src.kernel == "images/pxeboot/vmlinuz"
    assert src.identity["kernel"]["size"] == 700  # type: ignore[index]
    assert "AppStream" in src.variants


@pytest.mark.parametrize(("name", "version", "needle"), [
    ("Fedora", "38", "not RHEL 8"), ("Red Hat Enterprise Linux", "9.2", "not RHEL 8")])
def test_treeinfo_other_os_is_refused(tmp_path: Path, name: str, version: str,
                                      needle: str) -> None:
    with pytest.raises(installsrc.SourceError, match=needle):
        installsrc.load(str(make_tree(tmp_path, name, version)))


def _report(ctx: Context, location: str | None, free: int = 1 << 50) -> preflight.Report:
    report = preflight.Report()
    preflight.check_source(report, location, ctx.runner)
    preflight.check_disk(report, ctx.out.root, preflight.space_needed(20, ["qcow2"]),
                         disk_usage=lambda _p: Usage(free, 0, free))
    return report


def test_preflight_collects_one_line_per_problem(ctx: Context, tmp_path: Path) -> None:
    report = _report(ctx, str(tmp_path / "nowhere"), free=1 << 30)
    assert len(report.problems) == 2
    assert "does not exist" in report.problems[0] and "--install-source" in report.problems[0]
    assert "not enough disk space" in report.problems[1] and "1.0 GiB free" in report.problems[1]
    with pytest.raises(preflight.PreflightFailed) as err:
        report.raise_if_failed()
    assert err.value.problems == report.problems


def test_preflight_non_rhel_and_no_treeinfo(ctx: Context, tmp_path: Path) -> None:
    fedora = str(make_tree(tmp_path / "f", "Fedora", "38"))
    assert "not RHEL 8" in _report(ctx, fedora).problems[0]
    (tmp_path / "empty").mkdir()
    assert "no .treeinfo" in _report(ctx, str(tmp_path / "empty")).problems[0]
    assert "no install source" in _report(ctx, None).problems[0]
    assert _report(ctx, str(make_tree(tmp_path / "ok"))).problems == []


def test_preflight_missing_tool_says_which_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    report = preflight.Report()
    preflight.check_tools(report, ["virt-install"])
    assert report.problems == [("required tool 'virt-install' was not found on PATH: install it: "
                               "Debian `apt-get install virtinst`, RHEL 8 `dnf install "
                               "virt-install`")]


def _with_admin(ctx: Context, **admin: str) -> Context:
    update = ctx.cluster.admin.model_copy(update=admin)
    return dataclasses.replace(ctx, cluster=ctx.cluster.model_copy(update={"admin": update}))


def test_build_images_stops_at_preflight(ctx: Context, tmp_path: Path) -> None:
    opts = ImageOptions(role="db", install_source=str(tmp_path / "missing"), dry_run=True)
    with pytest.raises(preflight.PreflightFailed):
        build_images(_with_admin(ctx, ssh_key=KEY), opts)
    with pytest.raises(preflight.PreflightFailed):  # no key, no login on purpose: builds
        build_images(_with_admin(ctx, login="none"), opts)


def test_build_images_refuses_an_image_nobody_can_log_in_to(ctx: Context, tmp_path: Path) -> None:
    opts = ImageOptions(role="db", install_source=str(tmp_path / "missing"), dry_run=True)
    with pytest.raises(ConfigError) as err:
        build_images(ctx, opts)  # the default cluster: no admin.ssh_key
    assert not isinstance(err.value, preflight.PreflightFailed)
    assert err.value.message == ("images: admin.ssh_key is not set: nobody could log in to a "
                                 "node built from this image")
    assert "admin.ssh_key" in (err.value.hint or "") and "admin.login: none" in (err.value.hint
                                                                                  or "")


def test_kvm_status(tmp_path: Path) -> None:
    usable, line = vminstall.kvm_status(tmp_path / "kvm")
    assert not usable and "/dev/kvm is missing" in line
    (tmp_path / "kvm").write_text("")  # a regular file does not answer KVM_GET_API_VERSION
    usable, line = vminstall.kvm_status(tmp_path / "kvm")
    assert not usable and "not usable" in line


def test_build_kickstart_points_at_the_http_server(ctx: Context, tmp_path: Path) -> None:
    src = installsrc.load(str(make_tree(tmp_path)))
    repo, install = imagebuild.guest_urls(src, "192.168.122.1", 8090)
    text = imagebuild.build_kickstart(ctx, "db", src, repo, install)
    assert 'repo --name="pgha" --baseurl=http://192.168.122.1:8090/repo/' in text
    assert "url --url=http://192.168.122.1:8090/install/" in text
    assert "repo --name=AppStream" not in text  # from the tree's .treeinfo
    assert "hostonly=\"no\"" in text
    assert kickstart.validate(text, "db.ks") == []


def test_build_kickstart_for_an_iso_installs_from_cdrom(ctx: Context, tmp_path: Path) -> None:
    src = dataclasses.replace(installsrc.load(str(make_tree(tmp_path))), kind="iso")
    repo, install = imagebuild.guest_urls(src, "10.0.2.2", 8090)
    text = imagebuild.build_kickstart(ctx, "haproxy", src, repo, install)
    assert "\ncdrom\n" in text and "url --url" not in text


def test_ovf_descriptor_is_valid_ovf_1_0() -> None:
    m = ova.Machine("pgha-db", vcpus=2, memory_mib=2048, capacity_bytes=20 << 30)
    root = ET.fromstring(ova.descriptor(m, "pgha-db-disk1.vmdk", 1234))
    ns = {"ovf": ova.OVF, "rasd": ova.RASD}
    assert root.tag == f"{{{ova.OVF}}}Envelope"
    assert root.find("ovf:References/ovf:File", ns).get(f"{{{ova.OVF}}}size") == "1234"
    disk = root.find("ovf:DiskSection/ovf:Disk", ns)
    assert disk.get(f"{{{ova.OVF}}}capacity") == str(20 << 30)
    assert disk.get(f"{{{ova.OVF}}}format").endswith("#streamOptimized")
    items = root.findall("ovf:VirtualSystem/ovf:VirtualHardwareSection/ovf:Item", ns)
    kinds = {i.find("rasd:ResourceType", ns).text: i for i in items}
    assert set(kinds) == {"3", "4", "5", "17", "10"}  # CPU, memory, IDE, disk, NIC
    assert kinds["3"].find("rasd:VirtualQuantity", ns).text == "2"
    assert kinds["4"].find("rasd:VirtualQuantity", ns).text == "2048"
    for item in items:  # RASD children in the schema's (alphabetical) order
        names = [c.tag.split("}")[1] for c in item]
        assert names == sorted(names)


@pytest.mark.integration
def test_virt_install_parses_and_prints_domain_xml(ctx: Context, tmp_path: Path) -> None:
    """virt-install's real argument parsing and domain XML, through libvirt's test driver."""
    if not shutil.which("virt-install"):
        pytest.fail("virt-install is required: apt-get install virtinst")
    src = installsrc.load(str(make_tree(tmp_path / "tree")))
    repo, install = imagebuild.guest_urls(src, "192.168.122.1", 8090)
    ks = tmp_path / "db.ks"
    ks.write_text(imagebuild.build_kickstart(ctx, "db", src, repo, install))
    spec = imagebuild.vm_spec(ctx, "db", src, ks, True, (f"inst.stage2={install}",))
    spec = dataclasses.replace(spec, connect="test:///default", virt_type=None)
    spec.disk.parent.mkdir(parents=True)
    Runner().run(["qemu-img", "create", "-f", "qcow2", str(spec.disk), "20G"])  # as plan() does
    env = {"HOME": str(tmp_path)}  # virt-install writes $HOME/.cache/virt-manager
    out = Runner().run(vminstall.virt_install_argv(spec, dry_run=True), env=env).stdout.decode()
    install_xml = ET.fromstring(out[: out.index("</domain>") + len("</domain>")])
    cmdline = install_xml.findtext("os/cmdline")
    assert "inst.ks=file:/db.ks" in cmdline and "console=ttyS0,115200n8" in cmdline
    assert "inst.stage2=http://192.168.122.1:8090/install/" in cmdline
    assert install_xml.findtext("os/kernel") and install_xml.findtext("os/initrd")
    assert install_xml.findtext("memory") == str(2048 * 1024)
    assert install_xml.findtext("vcpu") == "2"
    assert install_xml.find("devices/disk/source").get("file") == str(spec.disk)
    assert install_xml.find("devices/disk/target").get("bus") == "virtio"
    serial = install_xml.find("devices/serial")
    assert serial.get("type") == "file"
    assert serial.find("source").get("path") == str(spec.console_log)
    assert install_xml.findtext("on_reboot") == "destroy"  # --noreboot


@pytest.mark.integration
def test_virt_install_rejects_a_bad_option(tmp_path: Path) -> None:
    argv = ["virt-install", "--connect", "test:///default", "--name", "x", "--memory", "lots",
            "--dry-run", "--print-xml"]
    with pytest.raises(PghaError):
        Runner().run(argv, env={"HOME": str(tmp_path)})


@pytest.mark.integration
def test_cli_images_dry_run_and_preflight_exit_code(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from builder.cli import cli

    tree = make_tree(tmp_path / "tree")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"admin:\n  ssh_key: {KEY}\n")
    base = ["-c", str(cfg), "-o", str(tmp_path / "out"), "images", "--role", "db", "--dry-run"]
    ok = CliRunner().invoke(cli, [*base, "--install-source", str(tree), "--format", "qcow2,ova"])
    assert ok.exit_code == 0, ok.output
    assert "virt-install --connect qemu:///system" in ok.output
    assert "--initrd-inject" in ok.output and "subformat=streamOptimized" in ok.output
    assert not (tmp_path / "out" / "pgha" / "images").exists()
    bad = CliRunner().invoke(cli, [*base, "--install-source", str(tmp_path / "nowhere")])
    assert bad.exit_code == 2
    assert "does not exist" in bad.output
    fmt = CliRunner().invoke(cli, [*base, "--install-source", str(tree), "--format", "qcow3"])
    assert fmt.exit_code == 2 and "unknown image format" in fmt.output


@pytest.mark.parametrize("admin", [None, "login: none", "login: none\n  ssh_key: KEY"])
def test_cli_images_asks_for_a_way_in(tmp_path: Path, admin: str | None) -> None:
    """No admin.ssh_key: one line naming the fix, exit 2, no image or blueprint written;
    admin.login: none builds on purpose; both at once is a cluster file error. `build` and
    `check` of the default cluster are unaffected (tests/test_cli.py, the README's first line)."""
    from click.testing import CliRunner

    from builder.cli import cli

    tree = make_tree(tmp_path / "tree")
    args = ["-o", str(tmp_path / "out")]
    if admin is not None:
        (tmp_path / "c.yaml").write_text("admin:\n  " + admin.replace("KEY", KEY) + "\n")
        args += ["-c", str(tmp_path / "c.yaml")]
    res = CliRunner().invoke(cli, [*args, "images", "--role", "db", "--dry-run", "--blueprint",
                                   "--install-source", str(tree)])
    if admin is None:
        assert res.exit_code == 2
        lines = res.output.strip().splitlines()
        assert lines[0] == ("error: images: admin.ssh_key is not set: nobody could log in to a "
                            "node built from this image")
        assert lines[1].startswith("hint: set admin.ssh_key") and len(lines) == 2
        assert not list((tmp_path / "out").rglob("*.blueprint.toml"))
        assert not (tmp_path / "out" / "pgha" / "images").exists()
    elif "ssh_key" in admin:
        assert res.exit_code == 2 and "admin.login" in res.output
        assert "remove one of them" in res.output
    else:
        assert res.exit_code == 0, res.output
        assert "virt-install --connect qemu:///system" in res.output
