"""The debian12 backend: a bootable disk of the lab's platform, made without a hypervisor.

The same role RPMs (built for platform debian12) and the same first-boot agent as a RHEL 8
image, on a Debian 12 base instead of RHEL media. Steps of the base disk:
1. the VM flavour of the cached Debian tree (builder.images.rootfs: debootstrap with a kernel,
   udev, NetworkManager, firewalld, the QEMU guest agent and the HA stack; made once);
2. an overlay on it (nothing is written to the cached tree) into which pgha-lab-provides and
   the image's RPMs (pgha-common + pgha-role-<role> + the roles it carries, roles.carried) are
   installed with `rpm --root`, scriptlets
   included (pgha-common's %post enables pgha-firstboot); Patroni's venv
   (/opt/pgha-lab/venv, scripts/setup) is copied in at the same path;
3. `mke2fs -t ext4 -d <tree>`: the file system is written from the folder into a sparse raw
   file of image.disk_gb (no loop device, no mount of the disk), then `qemu-img convert` to the
   base qcow2 that every format is made from (builder.images.formats);
4. the tree's kernel and initramfs are kept beside it: the image boots by direct kernel boot
   (`-kernel <cluster>-<role>.vmlinuz -initrd <cluster>-<role>.initrd -append root=/dev/vda`),
   there is no boot loader in the disk.
The seed is not in the image: the agent finds it at first boot on the CD-ROM labelled cidata.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import sha256_bytes
from builder.core.log import log
from builder.images import common as images
from builder.images import preflight, provides, rootfs
from builder.model import roles
from builder.model.platform import LAB_VENV, layout
from builder.stages.rpms import RpmsResult

PLATFORM = "debian12"
ROOT_LABEL = "pgha-root"
BOOT_FILES = ("vmlinuz", "initrd")
# Under software emulation (TCG) on a loaded host, firewalld's Python start-up took more than
# its unit's 90 s (5 min seen): the lab platform's images give it longer. RHEL images do not
# carry this file.
SLOW_START = {"etc/systemd/system/firewalld.service.d/90-pgha-emulated.conf":
              "[Service]\nTimeoutStartSec=20min\n"}


def check(report: preflight.Report, ctx: Context, opts: images.ImageOptions) -> None:
    if ctx.cluster.platform != PLATFORM:
        report.problems.append(f"the debian12 backend needs the cluster on platform debian12 "
                               f"(it is {ctx.cluster.platform})")
    if not Path(LAB_VENV, "bin", "patroni").is_file():
        report.problems.append(f"no Patroni in {LAB_VENV}: run scripts/setup (it makes the "
                               "lab's venv, which the image carries)")


def role_rpms(ctx: Context, role: str) -> list[Path]:
    result = ctx.results.get("rpms")
    built = result.rpms if isinstance(result, RpmsResult) else {}
    names = [roles.get(roles.COMMON).package,
             *(r.package for r in roles.carried(ctx.cluster.nodes, role))]
    missing = [n for n in names if n not in built]
    if missing:
        raise PghaError(f"images: no {', '.join(missing)} RPM for platform {PLATFORM}",
                        hint="the images command builds them first; run `pgha-build images` "
                             "again")
    return [built[n] for n in names]


def venv_identity() -> list[str]:
    """What of the venv decides the image: its interpreter and installed distributions."""
    venv = Path(LAB_VENV)
    found = sorted(p.name for p in venv.glob("lib/python3*/site-packages/*.dist-info"))
    cfg = (venv / "pyvenv.cfg").read_text() if (venv / "pyvenv.cfg").is_file() else ""
    return [sha256_bytes(cfg.encode())[:12], *found]


def boot_file(ctx: Context, role: str, name: str) -> Path:
    """The kernel or initramfs the base disk was made with (scratch, beside base.qcow2)."""
    return images.work_dir(ctx, role) / name


def _install(ctx: Context, tree: Path, rpms: list[Path]) -> None:
    lay = layout(ctx.cluster.platform, ctx.cluster.postgres_version)
    extra = provides.build(ctx.runner, lay, ctx.out.work / "lab-provides")
    missing = provides.unmapped(rpms)
    if missing:
        raise PghaError(f"images: no Debian stand-in for {', '.join(missing)}",
                        hint="add it to builder/resources/lab/provides.yaml")
    ctx.runner.run(["rpm", "--root", tree, "--dbpath", "/var/lib/rpm", "-i", *[extra, *rpms]],
                   env={"HOME": str(tree.parent), "LC_ALL": "C"})
    for rel, text in SLOW_START.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    dest = tree / LAB_VENV.lstrip("/")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(LAB_VENV, dest, symlinks=True)


def _keep_boot_files(ctx: Context, role: str, tree: Path) -> None:
    for name, pattern in (("vmlinuz", "vmlinuz-*"), ("initrd", "initrd.img-*")):
        found = sorted((tree / "boot").glob(pattern))
        if not found:
            raise PghaError(f"images: no /boot/{pattern} in the Debian tree",
                            hint=f"remove {rootfs.image_dir(rootfs.VM_PACKAGES)} to rebuild it")
        shutil.copyfile(found[-1], boot_file(ctx, role, name))


def build_base(ctx: Context, role: str, rpms: list[Path]) -> None:
    """Steps 1-4 of the module docstring."""
    runner, work = ctx.runner, images.work_dir(ctx, role)
    base = rootfs.ensure(runner, rootfs.VM_PACKAGES)
    upper, scratch, tree = work / "upper", work / "ovl-work", work / "tree"
    raw = work / "disk.raw"
    for folder in (upper, scratch):
        shutil.rmtree(folder, ignore_errors=True)
    for folder in (upper, scratch, tree):
        folder.mkdir(parents=True, exist_ok=True)
    runner.run(["mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={base},upperdir={upper},workdir={scratch}", tree])
    try:
        _install(ctx, tree, rpms)
        _keep_boot_files(ctx, role, tree)
        raw.unlink(missing_ok=True)
        log.info("images: mke2fs -d %s (%d GiB, sparse)", tree, ctx.cluster.image.disk_gb)
        runner.run(mke2fs_argv(tree, raw, ctx.cluster.image.disk_gb), timeout=1800)
    finally:
        runner.run(["umount", tree], check=False)
        for folder in (upper, scratch):
            shutil.rmtree(folder, ignore_errors=True)
    try:
        runner.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw,
                    images.base_disk(ctx, role)], timeout=1800)
    finally:
        raw.unlink(missing_ok=True)


def mke2fs_argv(tree: Path, raw: Path, disk_gb: int) -> list[str]:
    return ["mke2fs", "-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-E", "root_owner=0:0",
            "-d", str(tree), str(raw), f"{disk_gb}G"]


def plan(ctx: Context, opts: images.ImageOptions, report: preflight.Report) -> images.Plan:
    del report
    role = opts.role
    lay = layout(ctx.cluster.platform, ctx.cluster.postgres_version)
    work, disk = images.work_dir(ctx, role), images.base_disk(ctx, role)
    base = rootfs.image_dir(rootfs.VM_PACKAGES)
    commands = [
        ["debootstrap", "--variant=minbase", "--include=" + ",".join(rootfs.VM_PACKAGES),
         rootfs.SUITE, str(base), rootfs.mirror()],
        ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={base},...", str(work / "tree")],
        ["rpm", "--root", str(work / "tree"), "-i", "pgha-lab-provides", "pgha-common",
         roles.get(role).package],
        mke2fs_argv(work / "tree", work / "disk.raw", ctx.cluster.image.disk_gb),
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "disk.raw"), str(disk)],
    ]

    def build() -> None:
        disk.parent.mkdir(parents=True, exist_ok=True)
        build_base(ctx, role, role_rpms(ctx, role))

    return images.Plan(
        inputs={"rootfs": rootfs.key(rootfs.VM_PACKAGES),
                "provides": sha256_bytes(provides.render_spec(lay).encode())[:16],
                "venv": venv_identity(), "disk_gb": ctx.cluster.image.disk_gb,
                "files": SLOW_START,
                "mke2fs": mke2fs_argv(Path("T"), Path("R"), ctx.cluster.image.disk_gb)},
        commands=commands, build=build,
        boot_files={name: boot_file(ctx, role, name) for name in BOOT_FILES},
        notes=[f"the Debian 12 tree is cached in {base} (debootstrap only when missing)",
               "direct kernel boot: -kernel/-initrd beside the image, root=/dev/vda"])
