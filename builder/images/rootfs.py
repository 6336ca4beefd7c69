"""The lab platform's root filesystem: Debian 12, made once with debootstrap, in two flavours.

Boundary: builds, seals and caches the tree that every machine of `lab up --engine systemd`
boots from (each node gets its own overlay on top of it, see builder.lab.machine), and the base
of the `debian12` image backend (builder.images.debianimage: the VM flavour, which adds a
kernel, udev, NetworkManager, firewalld and the QEMU guest agent). It never touches a node.

What the image holds: Debian's minbase plus systemd (as PID 1), dbus, python3 (the agent's
interpreter), rpm (the role RPMs are installed with it), xorriso and util-linux (the agent reads
its cidata device with them), iproute2, procps, and the HA stack from Debian: postgresql-15,
etcd-server, haproxy, keepalived. Patroni is not in it: it comes from the lab's venv
(/opt/pgha-lab/venv), bind-mounted read-only into each machine at boot.

Sealing (what an image builder does after installing packages, so the image is like a RHEL 8
role image before its first boot):
- Debian enables etcd, haproxy, keepalived and postgresql when it installs them; RHEL's
  packages ship them disabled (preset `disable *`), and pgha-firstboot starts them. They are
  disabled here.
- Debian's postgresql-15 creates a cluster 15/main; PGDG's does not (Patroni bootstraps one).
  It is dropped.
- /etc/machine-id is emptied (each machine gets its own at first boot), /var/log/journal exists
  (a persistent journal, as on RHEL 8), the rpm database is /var/lib/rpm (as on RHEL; Debian's
  rpm defaults to ~/.rpmdb), /etc/hostname says `localhost` (the seed names the node).

Cache: <cache>/rootfs/<key>/ where <cache> is PGHA_LAB_CACHE or /var/cache/pgha-lab and <key>
hashes everything above (suite, packages, sealing recipe). Downloaded .debs are kept in
<cache>/debs/ (debootstrap --cache-dir), so a rebuild downloads nothing. A build happens in a
temporary folder beside the cache entry and is renamed into place only when complete, under an
flock, so an interrupted build is never used and two builds never race.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.core.errors import PghaError
from builder.core.fsutil import sha256_bytes
from builder.core.log import log
from builder.core.run import Runner, require

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_CACHE = "/var/cache/pgha-lab"
RECIPE = 1  # bump when sealing changes: a new cache key
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "rpm", "xorriso", "util-linux", "iproute2",
    "procps", "postgresql-15", "etcd-server", "haproxy", "keepalived", "pgbackrest",
)
# A VM's tree adds what a real machine needs and a machine sharing this host's kernel must not
# have: a kernel and initramfs, udev, NetworkManager and firewalld (the agent drives them), the
# QEMU guest agent (the lab's way in), e2fsprogs (fsck of the root disk).
VM_PACKAGES = PACKAGES + (
    "linux-image-cloud-amd64", "initramfs-tools", "udev", "kmod", "network-manager",
    "firewalld", "qemu-guest-agent", "e2fsprogs", "iputils-ping", "nftables", "libpam-systemd",
)
# NetworkManager's defaults for a VM image: no "Wired connection 1" with DHCP on every NIC
# (RHEL's cloud images do the same); the seed's keyfile is the only connection.
NM_CONF = "[main]\nno-auto-default=*\n"
FSTAB = "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n"
# Enabled by Debian's maintainer scripts, shipped disabled on RHEL 8.
DEBIAN_ENABLED = ("etcd.service", "haproxy.service", "keepalived.service", "postgresql.service",
                  "pgbackrest.service")
PG_VERSION = 15
LAB_VENV_MOUNTPOINT = "opt/pgha-lab/venv"
RPM_MACROS = "%_dbpath /var/lib/rpm\n"


def cache_root() -> Path:
    return Path(os.environ.get("PGHA_LAB_CACHE") or DEFAULT_CACHE).absolute()


def mirror() -> str:
    return os.environ.get("PGHA_LAB_MIRROR") or DEFAULT_MIRROR


def key(packages: tuple[str, ...] = PACKAGES) -> str:
    recipe = {"suite": SUITE, "packages": sorted(packages), "recipe": RECIPE,
              "disabled": DEBIAN_ENABLED, "macros": RPM_MACROS}
    if packages != PACKAGES:
        recipe.update(nm=NM_CONF, fstab=FSTAB)
    return sha256_bytes(json.dumps(recipe, sort_keys=True).encode())[:16]


def image_dir(packages: tuple[str, ...] = PACKAGES) -> Path:
    return cache_root() / "rootfs" / key(packages)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(runner: Runner, packages: tuple[str, ...] = PACKAGES) -> Path:
    """The sealed tree with `packages` (PACKAGES: the systemd engine's, VM_PACKAGES: a VM's),
    built now if the cache has none; returns its folder."""
    final = image_dir(packages)
    if (final / ".pgha-sealed").is_file():
        return final
    with _locked(cache_root() / "rootfs.lock"):
        if (final / ".pgha-sealed").is_file():
            return final
        require("debootstrap", "chroot")
        t0 = time.monotonic()
        tmp = final.with_name(f".build-{final.name}")
        shutil.rmtree(tmp, ignore_errors=True)
        _debootstrap(runner, tmp, packages)
        seal(runner, tmp, packages)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(final)
        log.info("rootfs: built %s in %.0f s", final, time.monotonic() - t0)
    return final


def _debootstrap(runner: Runner, target: Path, packages: tuple[str, ...]) -> None:
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    log.info("rootfs: debootstrap %s (%d packages) into %s", SUITE, len(packages), target)
    try:
        runner.run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
                    "--include=" + ",".join(packages), SUITE, target, mirror()],
                   timeout=1800)
    except PghaError as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise PghaError(f"rootfs: debootstrap failed: {exc}",
                        hint="it needs Debian's mirror (PGHA_LAB_MIRROR to use another); "
                             f"see {target}/debootstrap/debootstrap.log") from exc


def seal(runner: Runner, root: Path, packages: tuple[str, ...] = PACKAGES) -> None:
    """Make the installed tree a generic role image (see the module docstring)."""
    if (root / f"etc/postgresql/{PG_VERSION}/main").exists():
        runner.run(["chroot", root, "pg_dropcluster", str(PG_VERSION), "main"])
    runner.run(["chroot", root, "systemctl", "disable", *DEBIAN_ENABLED])
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    (root / LAB_VENV_MOUNTPOINT).mkdir(parents=True, exist_ok=True)
    (root / "etc/rpm").mkdir(parents=True, exist_ok=True)
    (root / "etc/rpm/macros.pgha-lab").write_text(RPM_MACROS)
    runner.run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "--initdb"])
    for folder in (root / "var/lib/apt/lists", root / "var/cache/apt/archives"):
        for item in folder.glob("*.deb") if folder.name == "archives" else folder.glob("*_*"):
            item.unlink()
    if packages != PACKAGES:
        (root / "etc/NetworkManager/conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/NetworkManager/conf.d/90-pgha-image.conf").write_text(NM_CONF)
        (root / "etc/fstab").write_text(FSTAB)
    (root / ".pgha-sealed").write_text(json.dumps({"key": key(packages), "suite": SUITE,
                                                   "packages": list(packages)}) + "\n")


def remove_cache() -> None:
    """Remove every cached image (not the downloaded .debs)."""
    shutil.rmtree(cache_root() / "rootfs", ignore_errors=True)
