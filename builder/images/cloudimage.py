"""The cloud-image backend and the image-builder blueprint.

Starts from a RHEL 8 KVM Guest Image (qcow2): copies it, grows it to image.disk_gb, then
virt-customize installs the role package from the pgha repository plus a local repository of
its dependencies (`--deps-repo`: PGDG and AppStream RPMs, e.g. made on a RHEL 8 host with
`dnf download --resolve --alldeps` and createrepo_c; without it the cluster's repos are used
over the network), enables pgha-firstboot, removes the build repositories and seals the image
(machine-id, SSH host keys, SELinux relabel). libguestfs runs with LIBGUESTFS_BACKEND=direct.

`blueprint()` renders the same role as an image-builder blueprint (TOML) for composer-cli users,
with composer source files for the repositories the blueprint needs.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from builder.core.context import Context
from builder.core.fsutil import atomic_write, sha256_file
from builder.images import common as images
from builder.images import preflight
from builder.model import roles
from builder.model.repos import KEY_DIR
from builder.model.signing import KEY_FILE, NODE_KEY_PATH
from builder.stages import render, repofiles, signing

GUEST_REPO_DIR = "/var/tmp/pgha-build"
REPO_FILE = "/etc/yum.repos.d/pgha-build.repo"


BUILD_PREFIX = "pgha-build-"


def local_repo(repo_id: str, url: str, gpgkey: str | None = None) -> list[str]:
    """A repository copied into the image: this tool's own RPMs, checked against the cluster's
    pgha key (imported first), and a --deps-repo (not checked: its packages keep their own
    signatures, which dnf checks only with their keys imported; see docs/rhel8.md)."""
    check = ["gpgcheck=1", "repo_gpgcheck=1", f"gpgkey={gpgkey}"] if gpgkey else ["gpgcheck=0"]
    return [f"[{repo_id}]", f"name={repo_id}", f"baseurl={url}", "enabled=1", *check,
            "module_hotfixes=1"]


def repo_file(ctx: Context, deps_repo: bool) -> str:
    """The dnf .repo used only while customising (removed afterwards): the pgha RPMs, then a
    local --deps-repo or else the cluster's repositories exactly as the nodes keep them, with
    their ids prefixed so they never clash with /etc/yum.repos.d/pgha.repo from pgha-common."""
    sections = [local_repo("pgha-build", f"file://{GUEST_REPO_DIR}/rpms",
                           f"file://{NODE_KEY_PATH}")]
    if deps_repo:
        sections.append(local_repo("pgha-build-deps", f"file://{GUEST_REPO_DIR}/deps"))
    else:
        sections += [repofiles.dnf_section(r, BUILD_PREFIX + r.id)
                     for r in ctx.cluster.repo_list()]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def build_repo_ids(ctx: Context, deps_repo: bool) -> str:
    ids = ["pgha-build", "pgha-build-deps"] if deps_repo else (
        ["pgha-build"] + [BUILD_PREFIX + r.id for r in ctx.cluster.repo_list()])
    return ",".join(ids)


def customize_argv(ctx: Context, disk: Path, role: str, repo_path: Path,
                   deps_repo: str | None) -> list[str]:
    packages = " ".join(r.package for r in roles.carried(ctx.cluster.nodes, role))
    argv = ["virt-customize", "-a", str(disk), "--mkdir", GUEST_REPO_DIR,
            "--copy-in", f"{ctx.out.rpms}:{GUEST_REPO_DIR}"]
    if deps_repo:
        argv += ["--copy-in", f"{Path(deps_repo).resolve()}:{GUEST_REPO_DIR}",
                 "--move", (f"{GUEST_REPO_DIR}/{Path(deps_repo).resolve().name}:"
                 f"{GUEST_REPO_DIR}/deps"), "--no-network"]
    repos = build_repo_ids(ctx, deps_repo is not None)
    # With the network, import the signing keys the nodes keep (offline: see docs/rhel8.md).
    keys = [] if deps_repo else [k for k in repofiles.gpg_keys(ctx.cluster.repo_list())
                                 if k != NODE_KEY_PATH]
    # The pgha key first: dnf checks the pgha RPMs against it (gpgcheck=1, repo_gpgcheck=1).
    argv += ["--mkdir", str(Path(NODE_KEY_PATH).parent),
             "--upload", f"{ctx.out.rpms / KEY_FILE}:{NODE_KEY_PATH}",
             "--chmod", f"0644:{NODE_KEY_PATH}",
             "--run-command", f"rpm --import {NODE_KEY_PATH}"]
    # With repos.mirror: the sources' keys travel from the mirror as files (nothing fetched).
    for name in signing.mirror_keys(ctx):
        argv += ["--upload", f"{signing.mirror_dir(ctx) / 'keys' / name}:{KEY_DIR}/{name}"]
    argv += ["--upload", f"{repo_path}:{REPO_FILE}",
             *[a for key in keys for a in ("--run-command", f"rpm --import {shlex.quote(key)}")],
             "--run-command", (f"dnf -y --disablerepo='*' --enablerepo='{repos}' "
             "module disable postgresql"),
             "--run-command", (f"dnf -y --disablerepo='*' --enablerepo='{repos}' "
             f"--setopt=install_weak_deps=False install {packages}"),
             "--run-command", "systemctl enable pgha-firstboot.service",
             "--delete", REPO_FILE, "--delete", GUEST_REPO_DIR,
             "--run-command", " && ".join(render.SEAL_COMMANDS), "--selinux-relabel"]
    return argv


def plan(ctx: Context, opts: images.ImageOptions, report: preflight.Report) -> images.Plan:
    del report  # the cloud image needs nothing the preflight found
    image = ctx.cluster.image
    cloud = Path(str(opts.cloud_image or image.cloud_image)).resolve()
    disk = images.base_disk(ctx, opts.role)
    repo_path = images.work_dir(ctx, opts.role) / "pgha-build.repo"
    deps = opts.deps_repo
    commands = [
        ["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", str(cloud), str(disk)],
        ["qemu-img", "resize", "-f", "qcow2", str(disk), f"{image.disk_gb}G"],
        customize_argv(ctx, disk, opts.role, repo_path, deps),
    ]
    repo_text = repo_file(ctx, deps is not None)
    env = {"LIBGUESTFS_BACKEND": "direct"}

    def build() -> None:
        disk.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(repo_path, repo_text)
        try:
            for argv in commands:
                ctx.runner.run(argv, env=env if argv[0] == "virt-customize" else None)
        except BaseException:
            disk.unlink(missing_ok=True)
            raise

    deps_id = sorted(p.name for p in Path(deps).rglob("*.rpm")) if deps else None
    return images.Plan(
        inputs={"cloud_image": {"size": cloud.stat().st_size, "sha256": sha256_file(cloud)},
                "repo_file": repo_text, "customize": commands[2][3:], "deps": deps_id,
                "disk_gb": image.disk_gb},
        commands=commands, build=build,
        notes=[f"customising {cloud} (LIBGUESTFS_BACKEND=direct)"])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


# Composer sources cannot limit PGDG extras to etcd (no includepkgs): with ha_packages
# `appstream` the blueprint pins the RHEL 8 AppStream branch of HAProxy instead.
APPSTREAM_PINS = {"haproxy": "1.8.*"}


def _appstream_pins(ctx: Context, requires: list[str]) -> list[str]:
    if ctx.cluster.repos.ha_packages != "appstream":
        return []
    return [line for name, version in APPSTREAM_PINS.items() if name in requires
            for line in ("[[packages]]", f'name = "{name}"', f'version = "{version}"', "")]


def blueprint(ctx: Context, role: str) -> str:
    """An image-builder blueprint for the role (add the sources from composer_sources first)."""
    from builder import __version__

    r = roles.get(role)
    carried = roles.carried(ctx.cluster.nodes, role)
    admin = ctx.cluster.admin
    lines = [f"# {render.header()}",
             ("# composer-cli sources add <each composer-source-*.toml> (BaseOS and AppStream "
              "only if composer does not use these mirrors already); then"),
             (f"# composer-cli blueprints push {role}.blueprint.toml && "
             f"composer-cli compose start pgha-{role} qcow2"),
             f'name = "pgha-{role}"', f"description = {_toml_value(r.summary)}",
             f'version = "{__version__}"', "",
             *[ln for c in carried for ln in ("[[packages]]", f'name = "{c.package}"',
                                                'version = "*"', "")],
             "[[packages]]", 'name = "chrony"', 'version = "*"', "",
             *_appstream_pins(ctx, [req for c in carried for req in c.requires]),
             "[[customizations.user]]", f'name = "{admin.user}"', 'groups = ["wheel"]']
    if admin.ssh_key:
        lines.append(f"key = {_toml_value(admin.ssh_key)}")
    lines += ["", "[customizations.services]",
              'enabled = ["sshd", "chronyd", "firewalld", "pgha-firstboot"]',
              'disabled = ["kdump"]', "", "[customizations.firewall.services]",
              'enabled = ["ssh"]', "", "[customizations.kernel]",
              'append = "console=tty0 console=ttyS0,115200n8"']
    return "\n".join(lines) + "\n"


def composer_sources(ctx: Context) -> dict[str, str]:
    """composer-cli source files (repository id -> TOML): the pgha RPMs (signed: the cluster's
    public key inline, composer checks packages and repomd.xml) and the cluster's repositories.
    BaseOS and AppStream are needed only when composer does not already use these mirrors as
    its system repositories."""
    header = render.header()
    key = signing.signing_key(ctx).public
    out = {"pgha": (f'# {header}\nid = "pgha"\nname = "pgha"\ntype = "yum-baseurl"\n'
                    f"url = {json.dumps(ctx.cluster.repos.pgha)}\ncheck_gpg = true\n"
                    f"check_repogpg = true\ngpgkeys = [{json.dumps(key)}]\n"
                    "check_ssl = true\nsystem = false\n")}
    for repo in ctx.cluster.repo_list():
        out[repo.id] = repofiles.composer_source(repo, header)
    return out


def write_blueprint(ctx: Context, role: str) -> list[Path]:
    """Write <role>.blueprint.toml and composer-source-*.toml beside the kickstarts, recorded
    as artifacts (owners "blueprint-<role>" and "composer-sources": the manifest lists them)."""
    from builder.core.state import artifact, input_key, save

    paths = [ctx.out.kickstart / f"{role}.blueprint.toml"]
    atomic_write(paths[0], blueprint(ctx, role))
    save(ctx.out, f"blueprint-{role}", input_key(role),
         [artifact(ctx.out, "blueprint", paths[0], role=role)])
    sources = []
    for name, text in composer_sources(ctx).items():
        sources.append(ctx.out.kickstart / f"composer-source-{name}.toml")
        atomic_write(sources[-1], text)
    save(ctx.out, "composer-sources", input_key("composer-sources"),
         [artifact(ctx.out, "composer-source", p) for p in sources])
    return paths + sources
