"""Image backends: how the installed base disk of a role is made.

Adding a backend is one entry in TABLE: its name and help (the CLI's --backend choice and help
come from here), its preflight (tools, then its own source check) and the module whose
`plan(ctx, opts, report)` returns a common.Plan. Plan modules are imported only when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from builder.core.errors import PghaError

if TYPE_CHECKING:  # the CLI imports this table for --backend: keep it light
    from builder.core.context import Context
    from builder.images.common import ImageOptions, Plan
    from builder.images.preflight import Report

SourceCheck = Callable[["Report", "Context", "ImageOptions"], None]


@dataclass(frozen=True)
class Backend:
    name: str
    help: str
    tools: tuple[str, ...]
    check_sources: SourceCheck
    plan_module: str  # defines plan(ctx, opts, report) -> Plan
    platform: str | None = None  # the platform whose RPMs it installs (None: the cluster's)
    depsolve: bool = True  # the dnf depsolve gate applies (RHEL repositories)

    def check(self, report: Report, ctx: Context, opts: ImageOptions) -> None:
        from builder.images import preflight

        preflight.check_tools(report, list(self.tools))
        self.check_sources(report, ctx, opts)

    def plan(self, ctx: Context, opts: ImageOptions, report: Report) -> Plan:
        plan: Plan = importlib.import_module(self.plan_module).plan(ctx, opts, report)
        return plan


def _install_media(report: Report, ctx: Context, opts: ImageOptions) -> None:
    from builder.images import preflight

    preflight.check_source(report, opts.install_source or ctx.cluster.image.install_source,
                           ctx.runner, ctx.cluster)
    preflight.check_kvm(report, opts.kvm)


def _guest_image(report: Report, ctx: Context, opts: ImageOptions) -> None:
    from builder.images import preflight

    preflight.check_file(report, "cloud image", opts.cloud_image or ctx.cluster.image.cloud_image,
                         "set image.cloud_image or pass --cloud-image (RHEL 8 KVM Guest "
                         "Image qcow2)")


def _lab_platform(report: Report, ctx: Context, opts: ImageOptions) -> None:
    from builder.images import debianimage

    debianimage.check(report, ctx, opts)


TABLE: tuple[Backend, ...] = (
    Backend("virt-install", "install from RHEL 8 media (ISO, tree or URL)",
            ("virt-install", "virsh", "qemu-img"), _install_media, "builder.images.imagebuild"),
    Backend("cloud-image", "customise a RHEL 8 KVM Guest Image",
            ("virt-customize", "qemu-img"), _guest_image, "builder.images.cloudimage"),
    Backend("debian12", "the lab's platform: Debian 12 (debootstrap) with the role RPMs built "
            "for it, direct kernel boot (lab up --engine vm)",
            ("debootstrap", "mke2fs", "qemu-img", "rpm", "rpmbuild", "mount"), _lab_platform,
            "builder.images.debianimage", platform="debian12", depsolve=False),
)
BY_NAME = {b.name: b for b in TABLE}
NAMES: tuple[str, ...] = tuple(BY_NAME)
if TYPE_CHECKING:
    BackendName = str
else:
    BackendName = Literal[NAMES]


def get(name: str) -> Backend:
    try:
        return BY_NAME[name]
    except KeyError:
        raise PghaError(f"unknown image backend '{name}'",
                        hint=f"use {', '.join(NAMES)}") from None


def cli_help() -> str:
    return "; ".join(f"{b.name}: {b.help}" for b in TABLE) + "."
