"""The `images` stage: one bootable disk image per role, converted into each requested format.

Flow: preflight (install source is RHEL 8, tools, disk space, KVM) -> a backend plans the base
install (virt-install from install media, or virt-customize of a RHEL 8 KVM Guest Image) ->
the plan's inputs are hashed -> formats whose key is recorded and whose files are intact are
reused and said so -> otherwise the base qcow2 is built (or reused from .work when its key
matches) and converted with qemu-img; OVAs are packed by builder.images.ova. Every image is an
artifact (manifest.json, SHA256SUMS). `dry_run` prints the commands instead of running them.
"""

from __future__ import annotations

import time
from pathlib import Path

from builder import __version__
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write, sha256_file
from builder.core.log import log
from builder.core.run import quote
from builder.core.state import Artifact, input_key, load, save, up_to_date
from builder.images import backends, ova, preflight
from builder.images import formats as imageformats
from builder.images.common import ImageOptions, Plan, Result, base_disk, image_path, work_dir
from builder.images.formats import Format
from builder.model import roles


def rpm_digests(ctx: Context) -> list[tuple[str, str]]:
    """sha256 of every RPM in the pgha repository (the role's package and its pgha deps)."""
    return [(p.name, sha256_file(p)) for p in sorted(ctx.out.rpms.glob("*.noarch.rpm"))]


def run_preflight(ctx: Context, opts: ImageOptions) -> preflight.Report:
    report = preflight.Report()
    image = ctx.cluster.image
    backends.get(opts.backend).check(report, ctx, opts)
    if not opts.dry_run and not any(ctx.out.rpms.glob(f"{roles.get(opts.role).package}-*")):
        report.problems.append(f"no {roles.get(opts.role).package} RPM in {ctx.out.rpms}: "
                               "run `pgha-build rpms` first")
    preflight.check_disk(report, ctx.out.root,
                         preflight.space_needed(image.disk_gb, list(opts.formats)))
    for note in report.notes:
        log.info("preflight: %s", note)
    report.raise_if_failed()
    return report


def plan_for(ctx: Context, opts: ImageOptions, report: preflight.Report) -> Plan:
    return backends.get(opts.backend).plan(ctx, opts, report)


def _format_key(base_key: str, fmt: Format, opts: ImageOptions, ctx: Context) -> str:
    image = ctx.cluster.image
    extra: object = opts.compression if fmt == "qcow2" else None
    if fmt == "ova":
        extra = (image.vcpus, image.memory_mib, ctx.epoch)
    return input_key("image", __version__, base_key, fmt, extra)


def _stage(role: str, fmt: str) -> str:
    return f"image-{role}-{fmt}"


def _stamp(ctx: Context, role: str, fmt: str) -> Path:
    return work_dir(ctx, role) / f"{fmt}.stamp"


def _stat_id(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {st.st_ino}"


def fresh(ctx: Context, role: str, fmt: Format, key: str) -> bool:
    """Up to date: the recorded key matches and the file is the one recorded. The file's stat
    (size, mtime, inode) stamped when it was written saves re-hashing a multi-GiB image on every
    run; without a matching stamp the sha256 is checked (builder.core.state)."""
    state = load(ctx.out, _stage(role, fmt))
    path = image_path(ctx, role, fmt)
    stamp = _stamp(ctx, role, fmt)
    if state is None or state[0] != key or not path.is_file():
        return False
    if stamp.is_file() and stamp.read_text() == f"{key} {_stat_id(path)}":
        return True
    return up_to_date(ctx.out, _stage(role, fmt), key)


def ensure_base(ctx: Context, role: str, plan: Plan, base_key: str) -> Path:
    """The installed base qcow2: reused when built from the same inputs, else built now."""
    disk = base_disk(ctx, role)
    keyfile = disk.with_suffix(".key")
    if (not ctx.force and disk.is_file() and keyfile.is_file()
            and keyfile.read_text().strip() == base_key):
        log.info("images: %s base install reused (inputs unchanged)", role)
        return disk
    keyfile.unlink(missing_ok=True)
    disk.unlink(missing_ok=True)
    start = time.monotonic()
    plan.build()
    if not disk.is_file():
        raise PghaError(f"the {role} install produced no disk {disk}")
    atomic_write(keyfile, base_key + "\n")
    ctx.messages.append(f"images: {role} base built in {time.monotonic() - start:.0f}s")
    return disk


def convert_one(ctx: Context, opts: ImageOptions, base: Path, fmt: Format) -> Path:
    dest = image_path(ctx, opts.role, fmt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fmt != "ova":
        imageformats.convert(ctx.runner, base, dest, fmt, opts.compression)
        return dest
    vmdk = work_dir(ctx, opts.role) / "ova-disk.vmdk"
    imageformats.convert(ctx.runner, base, vmdk, "ova")
    image = ctx.cluster.image
    machine = ova.Machine(name=f"{ctx.cluster.name}-{opts.role}", vcpus=image.vcpus,
                          memory_mib=image.memory_mib,
                          capacity_bytes=imageformats.virtual_size(ctx.runner, base),
                          description=f"pgha {opts.role} role image of cluster "
                                      f"{ctx.cluster.name}")
    try:
        ova.write_ova(dest, vmdk, machine, ctx.epoch)
    finally:
        vmdk.unlink(missing_ok=True)
    return dest


def _dry_run_lines(ctx: Context, opts: ImageOptions, plan: Plan, todo: list[Format]) -> list[str]:
    base = base_disk(ctx, opts.role)
    lines = [f"# {note}" for note in plan.notes]
    lines += [quote(argv) for argv in plan.commands]
    for fmt in todo:
        dest = image_path(ctx, opts.role, fmt)
        target = dest if fmt != "ova" else work_dir(ctx, opts.role) / "ova-disk.vmdk"
        lines.append(quote(imageformats.convert_argv(base, target, fmt,
                                                     compression=opts.compression)))
        if fmt == "ova":
            lines.append(f"# then pack {dest} (OVF descriptor, that vmdk, SHA256 manifest)")
    return lines


def build_images(ctx: Context, opts: ImageOptions) -> Result:
    """Build (or reuse) the role's images in every requested format."""
    roles.get(opts.role)
    report = run_preflight(ctx, opts)
    plan = plan_for(ctx, opts, report)
    rpms = rpm_digests(ctx)
    base_key = input_key("image-base", __version__, opts.backend, plan.inputs, rpms)
    keys = {f: _format_key(base_key, f, opts, ctx) for f in opts.formats}
    result = Result()
    todo = [f for f in opts.formats if ctx.force or not fresh(ctx, opts.role, f, keys[f])]
    for fmt in opts.formats:
        if fmt not in todo:
            result.reused.append(fmt)
            result.artifacts += load(ctx.out, _stage(opts.role, fmt))[1]  # type: ignore[index]
    if result.reused:
        ctx.messages.append(f"images: {opts.role} {', '.join(result.reused)} up to date "
                            "(inputs unchanged), reused")
    if opts.dry_run:
        result.dry_run = _dry_run_lines(ctx, opts, plan, todo)
        return result
    if not todo:
        return result
    base = ensure_base(ctx, opts.role, plan, base_key)
    for fmt in todo:
        start = time.monotonic()
        dest = convert_one(ctx, opts, base, fmt)
        result.built[fmt] = time.monotonic() - start
        art = Artifact("image", dest.relative_to(ctx.out.root).as_posix(), role=opts.role)
        result.artifacts += save(ctx.out, _stage(opts.role, fmt), keys[fmt], [art])
        atomic_write(_stamp(ctx, opts.role, fmt), f"{keys[fmt]} {_stat_id(dest)}")
        ctx.messages.append(f"images: wrote {dest} ({result.built[fmt]:.1f}s)")
    return result
