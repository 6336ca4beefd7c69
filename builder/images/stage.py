"""The `images` stage: one bootable disk image per role, converted into each requested format.

Flow: preflight (install source is RHEL 8, tools, disk space, KVM) -> a backend plans the base
install (virt-install from install media, or virt-customize of a RHEL 8 KVM Guest Image) ->
the plan's inputs are hashed -> formats whose key is recorded and whose files are intact are
reused and said so -> otherwise the base qcow2 is built (or reused from .work when its key
matches) and made in each format by that format's class (builder/images/formats.py). Every image is an
artifact (manifest.json, SHA256SUMS). `dry_run` prints the commands instead of running them.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from builder import __version__
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import replacing, sha256_file
from builder.core.log import log
from builder.core.run import quote
from builder.core.state import Artifact, cached_stage, input_key, load, owners, up_to_date
from builder.images import backends, preflight
from builder.images import formats as imageformats
from builder.images.common import ImageOptions, Plan, Result, base_disk, image_path
from builder.model import roles
from builder.model.imageformats import Format
from builder.stages.rpms import RpmsResult


def built_rpms(ctx: Context) -> dict[str, Path]:
    """Package name -> binary RPM, as the `rpms` step of this command left them ({} when it
    did not run: a dry run)."""
    result = ctx.results.get("rpms")
    return result.rpms if isinstance(result, RpmsResult) else {}


def rpm_digests(ctx: Context) -> list[tuple[str, str]]:
    """sha256 of every RPM in the pgha repository (the role's package and its pgha deps): of
    the `rpms` step's result, or in a dry run as that step last recorded them."""
    built = built_rpms(ctx)
    if built:
        return sorted((p.name, sha256_file(p)) for p in built.values())
    platform = ctx.out.platform or None
    return sorted((Path(a.path).name, a.sha256) for o in owners(ctx.out) for a in o.artifacts
                  if a.kind == "rpm" and a.platform == platform)


def run_preflight(ctx: Context, opts: ImageOptions) -> preflight.Report:
    report = preflight.Report()
    image = ctx.cluster.image
    backend = backends.get(opts.backend)
    backend.check(report, ctx, opts)
    built = built_rpms(ctx) if not opts.dry_run else None
    for package in (r.package for r in roles.carried(ctx.cluster.nodes, opts.role)):
        if built is not None and package not in built:
            report.problems.append(f"no {package} RPM in {ctx.out.rpms}: "
                                   "run `pgha-build rpms` first")
    preflight.check_disk(report, ctx.out.root,
                         preflight.space_needed(image.disk_gb, list(opts.formats)))
    if opts.deps_repo:
        report.notes.append("depsolve: skipped, --deps-repo installs from a local repository")
    elif not backend.depsolve:
        report.notes.append(f"depsolve: not needed by the {backend.name} backend")
    elif opts.depsolve:
        preflight.check_depsolve(report, ctx, opts.role)
    else:
        report.notes.append("depsolve: skipped (--no-depsolve)")
    for note in report.notes:
        log.info("preflight: %s", note)
    report.raise_if_failed()
    return report


def plan_for(ctx: Context, opts: ImageOptions, report: preflight.Report) -> Plan:
    return backends.get(opts.backend).plan(ctx, opts, report)


def _format_key(base_key: str, fmt: Format, opts: ImageOptions, ctx: Context) -> str:
    return input_key("image", __version__, base_key, fmt,
                     imageformats.of(fmt).key_extra(ctx, opts))


def _stage(role: str, fmt: str) -> str:
    return f"image-{role}-{fmt}"


def ensure_base(ctx: Context, role: str, plan: Plan, base_key: str) -> Path:
    """The installed base qcow2: reused when built from the same inputs, else built now. Its
    state is a work/ one (builder.core.state): the base disk is scratch, not an artifact."""
    disk = base_disk(ctx, role)

    def build() -> None:
        disk.unlink(missing_ok=True)
        start = time.monotonic()
        plan.build()
        if not disk.is_file():
            raise PghaError(f"the {role} install produced no disk {disk}")
        ctx.messages.append(f"images: {role} base built in {time.monotonic() - start:.0f}s")

    art = Artifact("base-disk", disk.relative_to(ctx.out.root).as_posix(), role=role)
    cached_stage(ctx, f"work/image-base-{role}", base_key, [art], build,
                 fresh=f"images: {role} base install reused (inputs unchanged)")
    return disk


def _dry_run_lines(ctx: Context, opts: ImageOptions, plan: Plan, todo: list[Format]) -> list[str]:
    base = base_disk(ctx, opts.role)
    lines = [f"# {note}" for note in plan.notes]
    lines += [quote(argv) for argv in plan.commands]
    for fmt in todo:
        lines += imageformats.of(fmt).dry_run(ctx, opts, base)
    return lines


def boot_file_path(ctx: Context, role: str, name: str) -> Path:
    return image_path(ctx, role, name)


def _boot_files(ctx: Context, role: str, plan: Plan, base_key: str,
                base: list[Path]) -> list[Artifact]:
    """The kernel and initramfs the base disk was made with, beside the images."""
    dests = {name: boot_file_path(ctx, role, name) for name in plan.boot_files}

    def copy() -> None:
        base.append(ensure_base(ctx, role, plan, base_key))
        for name, src in plan.boot_files.items():
            with replacing(dests[name]) as tmp:
                shutil.copyfile(src, tmp)

    arts = [Artifact("boot-file", d.relative_to(ctx.out.root).as_posix(), role=role)
            for d in dests.values()]
    return cached_stage(ctx, _stage(role, "boot"), base_key, arts, copy)


def build_images(ctx: Context, opts: ImageOptions) -> Result:
    """Build (or reuse) the role's images in every requested format."""
    roles.get(opts.role)
    if opts.login:
        preflight.require_login(ctx.cluster)
    report = run_preflight(ctx, opts)
    plan = plan_for(ctx, opts, report)
    rpms = rpm_digests(ctx)
    base_key = input_key("image-base", __version__, opts.backend, plan.inputs, rpms)
    keys = {f: _format_key(base_key, f, opts, ctx) for f in opts.formats}
    result = Result()
    todo = [f for f in opts.formats
            if ctx.force or not up_to_date(ctx.out, _stage(opts.role, f), keys[f])]
    result.reused = [f for f in opts.formats if f not in todo]
    if result.reused:
        ctx.messages.append(f"images: {opts.role} {', '.join(result.reused)} up to date "
                            "(inputs unchanged), reused")
    if opts.dry_run:
        result.dry_run = _dry_run_lines(ctx, opts, plan, todo)
        for fmt in result.reused:
            result.artifacts += load(ctx.out, _stage(opts.role, fmt))[1]  # type: ignore[index]
        return result
    base: list[Path] = []  # built (or reused) on the first format that needs it
    if plan.boot_files:
        result.artifacts += _boot_files(ctx, opts.role, plan, base_key, base)
    for fmt in opts.formats:
        dest = image_path(ctx, opts.role, fmt)

        def convert(fmt: Format = fmt, dest: Path = dest) -> None:
            if not base:
                base.append(ensure_base(ctx, opts.role, plan, base_key))
            start = time.monotonic()
            imageformats.of(fmt).make(ctx, opts, base[0])
            result.built[fmt] = time.monotonic() - start
            ctx.messages.append(f"images: wrote {dest} ({result.built[fmt]:.1f}s)")

        art = Artifact("image", dest.relative_to(ctx.out.root).as_posix(), role=opts.role)
        result.artifacts += cached_stage(ctx, _stage(opts.role, fmt), keys[fmt], [art], convert,
                                         force=fmt in todo)
    return result
