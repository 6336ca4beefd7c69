"""Image formats and caching with the real qemu-img: a real small qcow2 goes through the
cloud-image backend (virt-customize stubbed: libguestfs needs a kernel and minutes here) and is
converted into every format, each checked with `qemu-img info` and `qemu-img check`; the OVA's
member order, descriptor and digests; manifest.json and SHA256SUMS; cache hits and misses."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from builder.core.context import Context
from builder.core.fsutil import sha256_file
from builder.core.run import Runner
from builder.images import cloudimage, ova
from builder.images import formats as imageformats
from builder.images.stage import ImageOptions, build_images
from builder.stages.manifest import write_manifest
from builder.stages.rpms import RpmsResult

pytestmark = pytest.mark.integration
GIB = 1 << 30
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJslPnSAmYU/kKRD6jsUrKoYsRzD9lF+C7sxQ1O7COLi ops@x"


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The default cluster with the smallest image disk (10 GiB) and an admin key (images
    refuse to build without a way in)."""
    image = ctx.cluster.image.model_copy(update={"disk_gb": 10})
    admin = ctx.cluster.admin.model_copy(update={"ssh_key": KEY})
    return dataclasses.replace(ctx, cluster=ctx.cluster.model_copy(
        update={"image": image, "admin": admin}))


@pytest.fixture
def cloud_qcow2(tmp_path: Path) -> Path:
    """A real qcow2 of 64 MiB with 4 MiB of data in it."""
    if not shutil.which("qemu-img"):
        pytest.fail("qemu-img is required: apt-get install qemu-utils")
    raw = tmp_path / "disk.raw"
    with raw.open("wb") as fh:
        fh.truncate(64 << 20)
        fh.seek(1 << 20)
        fh.write(hashlib.sha256(b"pgha").digest() * (4 << 20 >> 5))
    out = tmp_path / "rhel-8-kvm.qcow2"
    Runner().run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)])
    return out


@pytest.fixture
def stub_customize(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """virt-customize first in PATH: records its argv and succeeds."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "virt-customize.log"
    script = bindir / "virt-customize"
    script.write_text(f'#!/bin/sh\necho "$LIBGUESTFS_BACKEND $*" >> {log}\n')
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.fixture
def role_rpm(ctx: Context) -> Path:
    ctx.out.rpms.mkdir(parents=True)
    rpm = ctx.out.rpms / "pgha-role-db-0.1.0-1.el8.noarch.rpm"
    rpm.write_bytes(b"not really an rpm")
    ctx.put("rpms", RpmsResult({"pgha-role-db": rpm}, {}, ctx.out.rpms, []))  # the rpms step's
    return rpm


def _opts(cloud: Path, formats: tuple[str, ...]) -> ImageOptions:
    return ImageOptions(role="db", formats=formats, backend="cloud-image",  # type: ignore[arg-type]
                        cloud_image=str(cloud), depsolve=False)  # the gate: test_depsolve


CACHED = ("qcow2", "vmdk", "vhdx", "ova")  # raw: below (hashing 10 GiB of holes takes minutes)


def test_formats_cache_and_manifest(ctx: Context, cloud_qcow2: Path, stub_customize: Path,
                                         role_rpm: Path) -> None:
    start = time.monotonic()
    result = build_images(ctx, _opts(cloud_qcow2, CACHED))
    print(f"\nfirst build {time.monotonic() - start:.1f}s, per format: "
          + ", ".join(f"{f} {s:.2f}s" for f, s in result.built.items()))
    assert sorted(result.built) == sorted(CACHED) and result.reused == []
    calls = stub_customize.read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("direct -a ")
    assert "install pgha-role-db" in calls[0] and "--selinux-relabel" in calls[0]
    size = 10 * GIB  # image.disk_gb after `qemu-img resize`
    for fmt in ("qcow2", "vmdk", "vhdx"):
        path = ctx.out.images / f"pgha-db.{fmt}"
        info = imageformats.info(ctx.runner, path, fmt)
        assert (info["format"], info["virtual-size"]) == (fmt, size)
        if fmt in imageformats.CHECKABLE:
            Runner().run(["qemu-img", "check", "-f", fmt, str(path)])
    qinfo = imageformats.info(ctx.runner, ctx.out.images / "pgha-db.qcow2", "qcow2")
    assert qinfo["format-specific"]["data"]["compression-type"] == "zlib"  # type: ignore[index]
    _check_ova(ctx.out.images / "pgha-db.ova", tmp=ctx.out.root / "ova-x", size=size)

    write_manifest(ctx)
    manifest = json.loads(ctx.out.manifest.read_text())
    images = {a["path"]: a for a in manifest["artifacts"] if a["kind"] == "image"}
    assert sorted(images) == sorted(f"images/pgha-db.{f}" for f in CACHED)
    sums = ctx.out.sha256sums.read_text()
    for rel, art in images.items():
        assert art["sha256"] == sha256_file(ctx.out.root / rel)
        assert f"{art['sha256']}  {rel}\n" in sums

    again = build_images(ctx, _opts(cloud_qcow2, CACHED))
    assert again.built == {} and sorted(again.reused) == sorted(CACHED)
    assert any("up to date (inputs unchanged), reused" in m for m in ctx.messages)
    assert len(stub_customize.read_text().splitlines()) == 1

    with (ctx.out.images / "pgha-db.vhdx").open("ab") as fh:  # a damaged image is rebuilt
        fh.write(b"x")
    repaired = build_images(ctx, _opts(cloud_qcow2, CACHED))
    assert list(repaired.built) == ["vhdx"]

    role_rpm.write_bytes(b"a new build of the role rpm")  # an input changed: rebuilt
    changed = build_images(ctx, _opts(cloud_qcow2, ("qcow2",)))
    assert list(changed.built) == ["qcow2"]
    assert len(stub_customize.read_text().splitlines()) == 2


def test_raw_conversion(cloud_qcow2: Path, tmp_path: Path) -> None:
    dest = tmp_path / "x.raw"
    imageformats.of("raw").convert(Runner(), cloud_qcow2, dest)
    info = imageformats.info(Runner(), dest, "raw")
    assert (info["format"], info["virtual-size"]) == ("raw", 64 << 20)
    assert dest.stat().st_blocks * 512 < 64 << 20  # sparse


def _check_ova(path: Path, tmp: Path, size: int) -> None:
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["pgha-db.ovf", "pgha-db-disk1.vmdk", "pgha-db.mf"]
        assert all(m.mtime == members[0].mtime and m.uid == 0 for m in members)
        tar.extractall(tmp, filter="data")
    root = ET.fromstring((tmp / "pgha-db.ovf").read_bytes())
    ns = {"ovf": ova.OVF}
    ref = root.find("ovf:References/ovf:File", ns)
    assert ref.get(f"{{{ova.OVF}}}href") == "pgha-db-disk1.vmdk"
    assert ref.get(f"{{{ova.OVF}}}size") == str((tmp / "pgha-db-disk1.vmdk").stat().st_size)
    disk = root.find("ovf:DiskSection/ovf:Disk", ns)
    assert disk.get(f"{{{ova.OVF}}}capacity") == str(size)
    for line in (tmp / "pgha-db.mf").read_text().splitlines():
        name, digest = line.removeprefix("SHA256(").split(")= ")
        assert hashlib.sha256((tmp / name).read_bytes()).hexdigest() == digest
    info = imageformats.info(Runner(), tmp / "pgha-db-disk1.vmdk", "vmdk")
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"  # type: ignore
    assert info["virtual-size"] == size


def test_zstd_compression(ctx: Context, cloud_qcow2: Path, stub_customize: Path,
                          role_rpm: Path) -> None:
    opts = ImageOptions(role="db", backend="cloud-image", cloud_image=str(cloud_qcow2),
                        compression="zstd", depsolve=False)
    build_images(ctx, opts)
    info = imageformats.info(ctx.runner, ctx.out.images / "pgha-db.qcow2", "qcow2")
    assert info["format-specific"]["data"]["compression-type"] == "zstd"  # type: ignore[index]


def test_dry_run_prints_commands_and_runs_nothing(ctx: Context, cloud_qcow2: Path,
                                                  stub_customize: Path) -> None:
    result = build_images(ctx, ImageOptions(role="db", formats=("vmdk", "ova"),
                                            backend="cloud-image", cloud_image=str(cloud_qcow2),
                                            dry_run=True))
    text = "\n".join(result.dry_run)
    assert f"qemu-img convert -f qcow2 -O qcow2 {cloud_qcow2}" in text
    assert "virt-customize -a " in text and "-o subformat=streamOptimized" in text
    assert not stub_customize.exists() and not ctx.out.images.exists()


def test_blueprint_is_toml(ctx: Context) -> None:
    import tomllib

    paths = cloudimage.write_blueprint(ctx, "db")
    data = tomllib.loads(paths[0].read_text())
    assert data["name"] == "pgha-db"
    assert {"name": "pgha-role-db", "version": "*"} in data["packages"]
    assert "pgha-firstboot" in data["customizations"]["services"]["enabled"]
    sources = [tomllib.loads(p.read_text()) for p in paths[1:]]
    assert {s["id"] for s in sources} == {"pgha", "BaseOS", "AppStream", "pgdg16", "pgdg-common",
                                          "pgdg-extras"}


def test_cloud_image_and_blueprint_carry_every_role_of_the_image(ctx: Context) -> None:
    """haproxy's image is lb1's, which is haproxy + backup in the reference cluster."""
    import tomllib

    argv = cloudimage.customize_argv(ctx, ctx.out.root / "x.qcow2", "haproxy",
                                     ctx.out.root / "pgha.repo", None)
    install = next(a for a in argv if "install_weak_deps=False install" in a)
    assert install.endswith("install pgha-role-haproxy pgha-role-backup")
    data = tomllib.loads(cloudimage.write_blueprint(ctx, "haproxy")[0].read_text())
    names = [p["name"] for p in data["packages"]]
    assert "pgha-role-haproxy" in names and "pgha-role-backup" in names
