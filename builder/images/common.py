"""What the image stage and its backends share: the options, a backend's plan, the result and
the paths. It imports no other image module, so the backends and the stage import it, not
each other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from builder.core.context import Context
from builder.core.state import Artifact
from builder.model.imageformats import Compression, Format


@dataclass(frozen=True)
class ImageOptions:
    role: str
    formats: tuple[Format, ...] = ("qcow2",)
    backend: str = "virt-install"  # a name in builder.images.backends.TABLE
    install_source: str | None = None
    cloud_image: str | None = None
    deps_repo: str | None = None
    kvm: bool | None = None  # None: use it when it works
    compression: Compression = "zlib"
    dry_run: bool = False
    depsolve: bool = True  # the depsolve gate in the preflight (--no-depsolve skips it)
    login: bool = True  # refuse an image nobody can log in to (the lab's VMs have a guest agent)


@dataclass
class Plan:
    """What a backend will do: the inputs that define the image, the commands, the action."""

    inputs: dict[str, object]
    commands: list[list[str]]
    build: Callable[[], None]
    notes: list[str] = field(default_factory=list)
    # Files the build leaves beside the base disk that ship with every format (a kernel and
    # initramfs for direct kernel boot): name -> path; published as <cluster>-<role>.<name>.
    boot_files: dict[str, Path] = field(default_factory=dict)


@dataclass
class Result:
    artifacts: list[Artifact] = field(default_factory=list)
    dry_run: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    built: dict[str, float] = field(default_factory=dict)  # format -> seconds


def work_dir(ctx: Context, role: str) -> Path:
    """Scratch of one role's image (per platform: the lab's debian12 images have their own)."""
    return ctx.out.work / "images" / (f"{ctx.out.platform}-{role}" if ctx.out.platform else role)


def base_disk(ctx: Context, role: str) -> Path:
    return work_dir(ctx, role) / "base.qcow2"


def image_path(ctx: Context, role: str, fmt: str) -> Path:
    return ctx.out.images / f"{ctx.cluster.name}-{role}.{fmt}"
