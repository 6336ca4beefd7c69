"""The virt-install backend's plan: the build-time kickstart, the VM, and the HTTP server.

The build-time kickstart is the role kickstart rendered with the repositories the installer VM
reaches: the pgha repository (and a local install tree) from the built-in HTTP server on the
host side of the VM network, the install media as the base repository (`cdrom` for an ISO;
AppStream comes from the media's .treeinfo, so its repo line is dropped), and one more %post
that makes the initramfs generic (hostonly=no) so the image also boots on VMware's and
VirtualBox's disk controllers. It is validated with pykickstart like every kickstart.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from builder.core import httpserve
from builder.core.context import Context
from builder.core.fsutil import atomic_write
from builder.images import common as images
from builder.images import preflight, vminstall
from builder.model import roles
from builder.stages import kickstart
from builder.stages.installsrc import InstallSource

PORTABLE_POST = """
%post --log=/root/ks-post-image.log
# pgha-build image: an initramfs with every storage driver, so the image boots on any
# hypervisor's disk controller (virtio, IDE, SATA, SCSI), not only the installer VM's.
echo 'hostonly="no"' > /etc/dracut.conf.d/90-pgha-portable.conf
dracut --force --regenerate-all
%end
"""


def guest_urls(src: InstallSource, guest_host: str, port: int) -> tuple[str, str]:
    """(pgha repository URL, install repository URL or "cdrom") as the installer sees them."""
    served = f"http://{guest_host}:{port}"
    if src.kind == "url":
        install = src.location
    elif src.kind == "dir":
        install = f"{served}/install/"
    else:
        install = "cdrom"
    return f"{served}/repo/", install


def build_kickstart(ctx: Context, role: str, src: InstallSource, repo_url: str,
                    install_url: str) -> str:
    base = install_url if install_url != "cdrom" else "file:///run/install/repo"
    baseos = ctx.cluster.repos.baseos.model_copy(update={"url": base})
    repos = ctx.cluster.repos.model_copy(update={"pgha": repo_url, "baseos": baseos})
    cluster = ctx.cluster.model_copy(update={"repos": repos})
    text = kickstart.render_role(dataclasses.replace(ctx, cluster=cluster), roles.get(role))
    lines = []
    for line in text.splitlines():
        if install_url == "cdrom" and line.startswith("url --url="):
            line = "cdrom"
        if "AppStream" in src.variants and line.startswith("repo --name=AppStream "):
            continue  # Anaconda adds AppStream from the media's .treeinfo
        lines.append(line)
    text = "\n".join(lines) + "\n" + PORTABLE_POST
    kickstart.require_valid({f"{role}.ks (image build)": text})
    return text


def mounts(ctx: Context, src: InstallSource) -> list[httpserve.Mount]:
    served = [httpserve.Mount("/repo/", ctx.out.rpms)]
    if src.kind == "dir":
        served.append(httpserve.Mount("/install/", Path(src.location)))
    return served


def vm_spec(ctx: Context, role: str, src: InstallSource, ks_path: Path, kvm: bool,
            extra: tuple[str, ...]) -> vminstall.VMSpec:
    image = ctx.cluster.image
    return vminstall.VMSpec(
        name=f"pgha-build-{ctx.cluster.name}-{role}", disk=images.base_disk(ctx, role),
        memory_mib=image.memory_mib, vcpus=image.vcpus, location=src.location,
        kickstart=ks_path, network=image.network, extra_args=extra,
        console_log=ctx.out.logs / f"install-{role}.console.log",
        timeout_min=image.timeout_min, virt_type="kvm" if kvm else "qemu")


def plan(ctx: Context, opts: images.ImageOptions, report: preflight.Report) -> images.Plan:
    src = report.source
    assert src is not None  # preflight guarantees it
    image = ctx.cluster.image
    bind, guest = vminstall.network_host(ctx.runner, vminstall.LIBVIRT_URI, image.network,
                                         dry_run=opts.dry_run)
    repo_url, install_url = guest_urls(src, guest, image.http_port)
    ks_text = build_kickstart(ctx, opts.role, src, repo_url, install_url)
    ks_path = images.work_dir(ctx, opts.role) / f"{opts.role}.ks"
    extra = (f"inst.stage2={install_url}",) if src.kind == "dir" else ()
    spec = vm_spec(ctx, opts.role, src, ks_path, report.kvm, extra)
    disk_cmd = ["qemu-img", "create", "-f", "qcow2", str(spec.disk), f"{image.disk_gb}G"]
    served = mounts(ctx, src)

    def build() -> None:
        atomic_write(ks_path, ks_text)
        spec.disk.parent.mkdir(parents=True, exist_ok=True)
        ctx.runner.run(disk_cmd)
        with httpserve.running((bind, image.http_port), served):
            vminstall.install(ctx.runner, spec)

    notes = [f"HTTP server on {bind}:{image.http_port} serving "
             + ", ".join(f"{m.prefix} <- {m.root}" for m in served),
             f"kickstart {ks_path} (pgha repo {repo_url}, install from {install_url})"]
    if not report.kvm:
        notes.append("no KVM: software emulation (--virt-type qemu), expect hours")
    return images.Plan(
        inputs={"kickstart": ks_text, "source": src.identity, "vm": spec.key_fields(),
                "disk_gb": image.disk_gb},
        commands=[disk_cmd, vminstall.virt_install_argv(spec), *vminstall.cleanup_argvs(spec)],
        build=build, notes=notes)
