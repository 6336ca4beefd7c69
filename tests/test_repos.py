"""Repositories as data: every place a repository is rendered agrees with the model.

Places read back with their own parsers: the role kickstarts and every host (PXE) kickstart
(pykickstart's RHEL 8 handler), the image-build kickstart, the cloud image's build-time .repo
file and the nodes' /etc/yum.repos.d/pgha.repo from the pgha-common payload (configparser), and
the composer sources (tomllib)."""

from __future__ import annotations

import configparser
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL8, makeVersion

from builder.core.context import Context
from builder.images import cloudimage, imagebuild
from builder.model import roles
from builder.model.cluster import Cluster
from builder.model.repos import PGDG_KEY, ResolvedRepo, pgha_repo
from builder.model.signing import NODE_KEY_PATH
from builder.pxe import tree
from builder.stages import kickstart, render, specs
from builder.stages.installsrc import InstallSource

CUSTOM = {
    "postgres_version": 15,
    "nodes": [{"name": "db1", "roles": ["db"], "address": "10.77.0.11",
               "mac": "52:54:00:00:00:11"},
              {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"}],
    "repos": {"baseos": {"url": "file:///srv/rhel8/BaseOS/", "gpgcheck": False},
              "appstream": {"url": "https://m/a/",
                                                                 "on_nodes": False},
              "pgdg_common": {"url": "https://mirror.example/pgdg-common/",
                              "repo_gpgcheck": False},
              "ha_packages": "pgdg"},
}


def parsed(text: str):  # type: ignore[no-untyped-def]
    handler = makeVersion(RHEL8)
    KickstartParser(handler, errorsAreFatal=True).readKickstartFromString(text)
    return handler


def ks_repos(text: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(id, url, includepkgs) of the url line and every repo line but pgha's."""
    h = parsed(text)
    out = [("BaseOS", h.url.url, ())] if h.url.url else []
    out += [(r.name, r.baseurl, tuple(r.includepkgs)) for r in h.repo.repoList
            if r.name != "pgha"]
    return out


def expected_ks(repos: list[ResolvedRepo]) -> list[tuple[str, str, tuple[str, ...]]]:
    return [(r.id, r.url, r.includepkgs) for r in repos]


def ini_repos(text: str, prefix: str = "") -> list[tuple[object, ...]]:
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    out = []
    for name in cp.sections():
        if not name.startswith(prefix) or name in ("pgha-build", "pgha-build-deps"):
            continue
        s = cp[name]
        out.append((name.removeprefix(prefix), s["baseurl"], s.getboolean("gpgcheck"),
                    s.get("gpgkey"), s.getboolean("repo_gpgcheck"),
                    tuple(p for p in s.get("includepkgs", "").split(",") if p),
                    s.getboolean("enabled")))
    return out


def expected_ini(repos: list[ResolvedRepo]) -> list[tuple[object, ...]]:
    return [(r.id, r.url, r.gpgcheck, r.gpgkey, r.repo_gpgcheck, r.includepkgs, True)
            for r in repos]


def node_repo_file(ctx: Context) -> tuple[str, bool]:
    pkg = specs.plan(ctx, roles.get("common"))
    entry = next(f for f in pkg.files if f.dest == "/etc/yum.repos.d/pgha.repo")
    spec = specs.render_spec(ctx, pkg)
    return entry.content.decode(), "%config(noreplace) %attr(0644,root,root) " \
        "/etc/yum.repos.d/pgha.repo" in spec


@pytest.fixture(params=["default", "custom"])
def any_ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Context:
    cluster = Cluster() if request.param == "default" else Cluster.model_validate(CUSTOM)
    return Context.create(cluster, tmp_path / "out")


def test_every_rendered_place_agrees_with_the_model(any_ctx: Context) -> None:
    ctx = any_ctx
    repos = ctx.cluster.repo_list()
    assert [r.key for r in repos] == ["baseos", "appstream", "pgdg", "pgdg_common",
                                      "pgdg_extras"]
    for role in sorted({r for n in ctx.cluster.nodes for r in n.roles}):
        assert ks_repos(kickstart.render_role(ctx, roles.get(role))) == expected_ks(repos), role
    for node in ctx.cluster.nodes:
        assert ks_repos(tree.render_host(ctx, node)) == expected_ks(repos), node.name
    assert ini_repos(cloudimage.repo_file(ctx, False), "pgha-build-") == expected_ini(repos)
    text, noreplace = node_repo_file(ctx)
    pgha = pgha_repo(ctx.cluster.repos, ctx.cluster.name)
    assert ini_repos(text) == expected_ini([*[r for r in repos if r.on_nodes], pgha])
    assert noreplace, "the nodes' .repo file is %config(noreplace): an admin's edit survives"
    sources = {k: tomllib.loads(v) for k, v in cloudimage.composer_sources(ctx).items()}
    for r in repos:
        src = sources[r.id]
        assert (src["url"], src["check_gpg"], src["gpgkeys"], src["check_repogpg"]) == (
            r.url, r.gpgcheck, [r.gpgkey] if r.gpgkey else [], r.repo_gpgcheck)
        text = cloudimage.composer_sources(ctx)[r.id]
        assert (f"# includepkgs={','.join(r.includepkgs)}:" in text) == bool(r.includepkgs)


def test_image_build_kickstart_keeps_the_pgdg_repositories(any_ctx: Context) -> None:
    src = InstallSource(location="/srv/rhel.iso", kind="iso", name="Red Hat Enterprise Linux",
                        version="8.10", arch="x86_64", kernel="k", initrd="i",
                        variants=("BaseOS", "AppStream"), treeinfo="")
    text = imagebuild.build_kickstart(any_ctx, "db", src, "http://10.0.0.1:8090/repo/", "cdrom")
    pgdg = [r for r in any_ctx.cluster.repo_list() if r.key.startswith("pgdg")]
    assert ks_repos(text) == expected_ks(pgdg)  # BaseOS and AppStream come from the media


def test_extras_carries_only_etcd_unless_ha_packages_is_pgdg() -> None:
    default = {r.key: r for r in Cluster().repo_list()}
    assert default["pgdg_extras"].includepkgs == ("etcd",)
    assert default["appstream"].includepkgs == ()
    pgdg = {r.key: r for r in Cluster.model_validate(CUSTOM).repo_list()}
    assert pgdg["pgdg_extras"].includepkgs == ("etcd", "haproxy", "keepalived")


def test_nodes_keep_repositories_with_gpgcheck_and_import_the_keys(ctx: Context) -> None:
    text, _ = node_repo_file(ctx)
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(text)
    assert all(cp[s].getboolean("gpgcheck") for s in cp.sections())
    assert {cp[s]["gpgkey"] for s in cp.sections() if s.startswith("pgdg")} == {PGDG_KEY}
    for role in ("db", "haproxy"):
        h = parsed(kickstart.render_role(ctx, roles.get(role)))
        post = next(s for s in h.scripts if f"rpm --import {PGDG_KEY}" in s.script)
        assert post.errorOnFail


def test_blueprint_pins_appstream_haproxy_only_when_chosen(tmp_path: Path) -> None:
    ctx = Context.create(Cluster(), tmp_path)
    data = tomllib.loads(cloudimage.blueprint(ctx, "haproxy"))
    assert {"name": "haproxy", "version": "1.8.*"} in data["packages"]
    ctx = Context.create(Cluster.model_validate(CUSTOM), tmp_path)
    data = tomllib.loads(cloudimage.blueprint(ctx, "haproxy"))
    assert all(p["name"] != "haproxy" for p in data["packages"])


@pytest.mark.parametrize(("repos", "needle"), [
    ({"baseos": "http://mirror/BaseOS/\nrepo --name=x"}, "repos.baseos.url"),
    ({"pgdg_common": {"url": "https://x/", "gpgkey": None}}, "gpgcheck needs gpgkey"),
    ({"pgdg_extras": {"includepkgs": ["etcd", "haproxy"]}}, "ha_packages is appstream"),
    ({"pgdg_extras": {"includepkgs": ["etcd;rm"]}}, "includepkgs"),
    ({"ha_packages": "epel"}, "ha_packages"),
])
def test_bad_repositories_are_rejected(repos: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        Cluster.model_validate({"repos": repos})
    assert needle in str(err.value).replace("\n", " ") or needle.split(".")[-1] in str(err.value)


def test_a_url_string_keeps_the_other_defaults() -> None:
    c = Cluster.model_validate({"repos": {"pgdg_extras": "https://mirror/extras/"}})
    extras = c.repos.pgdg_extras
    assert (extras.url, extras.includepkgs, extras.gpgkey) == (
        "https://mirror/extras/", ["etcd"], PGDG_KEY)
    assert "repos" in render.base_context(c)


def test_cloud_image_imports_the_keys_the_nodes_keep(ctx: Context, tmp_path: Path) -> None:
    from builder.stages import repofiles

    keys = repofiles.gpg_keys(ctx.cluster.repo_list())
    argv = cloudimage.customize_argv(ctx, tmp_path / "d.qcow2", "db", tmp_path / "r", None)
    imports = [argv[i + 1] for i, a in enumerate(argv) if a == "--run-command"
               and argv[i + 1].startswith("rpm --import ")]
    # the pgha key first (uploaded from the build): dnf checks the pgha RPMs against it
    assert imports == [f"rpm --import {k}" for k in [NODE_KEY_PATH, *keys]] and PGDG_KEY in keys
    install = next(i for i, a in enumerate(argv) if "install pgha-role-db" in a)
    assert all(argv.index(f"rpm --import {k}") < install for k in keys)
    offline = cloudimage.customize_argv(ctx, tmp_path / "d.qcow2", "db", tmp_path / "r",
                                        str(tmp_path))
    # offline: no network key; the pgha key is a file from the build, imported all the same
    assert [a for a in offline if a.startswith("rpm --import")] == [
        f"rpm --import {NODE_KEY_PATH}"]
