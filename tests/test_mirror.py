"""`pgha-build mirror` with Debian's real dnf against the local stand-in repositories
(tests/rhel8_repos.py), signed here by a stand-in upstream key, BaseOS with a comps file.

The closure is dnf's own (`install --downloadonly --destdir` into an empty installroot); the
mirror must hold exactly the gate's resolved set plus the group's members, every role must
resolve from the mirror alone, a tampered upstream package is refused, and with repos.mirror
set no generated artifact names a URL outside the mirror."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import rhel8_repos
import yaml
from click.testing import CliRunner
from conftest import have

from builder.cli import cli
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.images import cloudimage
from builder.model import loading as config
from builder.model import roles
from builder.model.repos import MIRROR_ID
from builder.pxe import tree
from builder.stages import depsolve, kickstart, mirror, pipeline, signing

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have("dnf", "rpmbuild", "createrepo_c", "rpmsign"),
                                 reason="needs dnf, rpmbuild, createrepo_c, rpmsign")]

COMPS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group><id>core</id><name>Core</name><default>true</default><uservisible>false</uservisible>
    <packagelist><packagereq type="mandatory">bash</packagereq>
    <packagereq type="mandatory">policycoreutils</packagereq></packagelist></group>
  <environment><id>minimal-environment</id><name>Minimal Install</name>
    <grouplist><groupid>core</groupid></grouplist></environment>
</comps>
"""


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--no-tty",
                           "--pinentry-mode", "loopback", "--passphrase", "", *args],
                          check=True, capture_output=True, text=True).stdout


def sign_repo(repo: Path, home: Path, fpr: str, comps: Path | None = None) -> None:
    rpms = sorted(map(str, repo.glob("*.rpm")))
    subprocess.run(["rpmsign", "--addsign", "--define", f"_gpg_name {fpr}",
                    "--define", f"_gpg_path {home}", "--define",
                    f"__gpg {shutil.which('gpg')}", *rpms], check=True, capture_output=True)
    extra = ["-g", str(comps)] if comps else []
    subprocess.run(["createrepo_c", "-q", *extra, str(repo)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory,
             standin_repos: dict[str, Path]) -> dict[str, object]:
    """The stand-in repositories, each signed by one stand-in upstream key; its public key as
    a file; BaseOS with comps (minimal-environment -> core -> bash, policycoreutils)."""
    base = tmp_path_factory.mktemp("upstream")
    home = Path(tempfile.mkdtemp(prefix="pgha-up-"))  # short: gpg-agent's socket lives there
    try:
        gpg(home, "--quick-generate-key", "Stand-in upstream", "rsa2048", "sign", "never")
        fpr = next(ln.split(":")[9] for ln in gpg(home, "--with-colons", "--list-keys")
                   .splitlines() if ln.startswith("fpr:"))
        (base / "UPSTREAM-KEY").write_text(gpg(home, "--armor", "--export", fpr))
        paths = {}
        for key, path in standin_repos.items():  # a signed copy of each
            paths[key] = base / "repos" / key
            shutil.copytree(path, paths[key], ignore=shutil.ignore_patterns("repodata"))
        (base / "comps.xml").write_text(COMPS)
        for key, path in paths.items():
            sign_repo(path, home, fpr, base / "comps.xml" if key == "baseos" else None)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
        shutil.rmtree(home, ignore_errors=True)
    key = (base / "UPSTREAM-KEY").as_uri()
    repos: dict[str, object] = {k: {"url": v, "gpgkey": key}
                                for k, v in rhel8_repos.cluster_repos(paths).items()}
    return {"repos": repos, "paths": paths, "base": base}


def cluster_data(upstream: dict[str, object], **repos: object) -> dict[str, object]:
    return {"name": "chainmir", "repos": {**upstream["repos"], **repos}}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def mirrored(upstream: dict[str, object], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[Path, Path, str]:
    """(cluster file, output folder, CLI output) after `pgha-build mirror`."""
    tmp = tmp_path_factory.mktemp("mirrored")
    cfile = tmp / "cluster.yaml"
    cfile.write_text(yaml.safe_dump(cluster_data(upstream)))
    result = CliRunner().invoke(cli, ["-c", str(cfile), "-o", str(tmp / "out"), "mirror"])
    assert result.exit_code == 0, result.output
    return cfile, tmp / "out", result.output


def test_the_mirror_holds_exactly_the_closure(mirrored: tuple[Path, Path, str]) -> None:
    cfile, out, said = mirrored
    ctx = Context.create(config.load(cfile), out)
    root = signing.mirror_dir(ctx)
    names = {mirror._rpm_name(p.name) for p in (root / "Packages").glob("*.rpm")}
    gate = {n for r in depsolve.run(ctx) for n in r.resolved}
    # the gate leaves groups to the media; the mirror adds their members (comps in BaseOS)
    assert names == gate | {"bash", "policycoreutils"}
    assert {"patroni", "patroni-etcd", "etcd", "python3.12-dns", "haproxy", "pgha-common",
            "pgha-role-db", "pgha-role-haproxy", "postgresql16-server"} <= names
    assert "keepalived" in names and not any(n.startswith("haproxy-3") for n in names)
    assert sorted(p.name for p in (root / "keys").iterdir()) == [signing.KEY_FILE,
                                                                  "UPSTREAM-KEY"]
    listed = (root / "packages.txt").read_text().splitlines()[1:]
    assert len(listed) == len(names)
    assert any(line.startswith("patroni-4.1.5") and "\tpgdg-common\t" in line for line in listed)
    repomd = (root / "repodata" / "repomd.xml").read_text()
    assert 'type="group"' in repomd and (root / "repodata" / "repomd.xml.asc").is_file()
    assert f"mirror: {len(names)} package(s)" in said


def test_every_role_resolves_from_the_mirror_alone(mirrored: tuple[Path, Path, str],
                                                   upstream: dict[str, object]) -> None:
    _, out, _ = mirrored
    root = out / "chainmir" / "mirror"
    data = cluster_data(upstream, mirror=root.as_uri() + "/")
    ctx = Context.create(config.from_data(data), out)
    assert [r.id for r in ctx.cluster.repo_list()] == [MIRROR_ID]
    req = depsolve.role_request(ctx, "db")
    # the kickstart's `url` (read back as BaseOS) is the mirror, and pgha's own repository
    assert [r.url for r in req.repos][:1] == [root.as_uri() + "/"] and len(req.repos) == 2
    # the pgha repository too comes from the mirror: only the mirror is left
    for role in ("db", "haproxy", "backup"):
        req = depsolve.role_request(ctx, role)
        req = req.__class__(**{**req.__dict__, "repos": req.repos[:1]})
        work = out / f"only-{role}"
        work.mkdir()
        result = depsolve.solve(ctx, req, work)
        assert not result.problems, result.problems
        assert result.resolved[roles.get(role).package][1] == "BaseOS"  # the mirror


def test_a_tampered_upstream_package_is_refused(upstream: dict[str, object],
                                                tmp_path: Path) -> None:
    paths: dict[str, Path] = upstream["paths"]  # type: ignore[assignment]
    bad = tmp_path / "pgdg_common"
    shutil.copytree(paths["pgdg_common"], bad)
    (rpm,) = bad.glob("patroni-4*.rpm")  # swapped for a copy without the upstream signature
    subprocess.run(["rpmsign", "--delsign", str(rpm)], check=True, capture_output=True)
    subprocess.run(["createrepo_c", "-q", str(bad)], check=True, capture_output=True)
    ctx = Context.create(config.from_data(cluster_data(
        upstream, pgdg_common={"url": bad.as_uri() + "/",
                               "gpgkey": upstream["repos"]["pgdg_common"]["gpgkey"]})),  # type: ignore[index]
        tmp_path / "out")
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    with pytest.raises(PghaError, match="pgdg-common fail their signature check"):
        mirror.build_mirror(ctx)
    assert not signing.mirror_dir(ctx).exists()  # nothing half-written


URL = re.compile(r"\b(?:https?|ftp|file)://[^\s'\"<>)\]]+")


def test_with_a_mirror_no_artifact_names_another_url(mirrored: tuple[Path, Path, str],
                                                     upstream: dict[str, object],
                                                     tmp_path: Path) -> None:
    """Kickstarts (role and PXE host), pgha.repo in pgha-common, the cloud image's .repo and
    key imports, the composer sources: every URL is the mirror's (or a key file on the node)."""
    _, out, _ = mirrored
    site = "http://mirror.site.example/pgha/"
    data = cluster_data(upstream, mirror=site, pgha=site)
    ctx = Context.create(config.from_data(data), out)
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS, pipeline.KICKSTART])
    texts = {f"{r}.ks": kickstart.render_role(ctx, roles.get(r))
             for r in ("db", "haproxy", "backup")}
    texts |= {f"hosts/{n.name}.ks": "\n".join(
        ln for ln in tree.render_host(ctx, n).splitlines() if "/seeds/" not in ln)
        for n in ctx.cluster.nodes}
    root = tmp_path / "root"
    root.mkdir()
    (common,) = ctx.out.rpms.glob("pgha-common-[0-9]*.noarch.rpm")
    subprocess.run(["rpm", "--root", str(root), "-i", "--nodeps", "--noscripts",
                    "--nosignature", str(common)], check=True, capture_output=True)
    texts["pgha.repo"] = (root / "etc/yum.repos.d/pgha.repo").read_text()
    texts["cloud.repo"] = cloudimage.repo_file(ctx, deps_repo=False)
    texts["customize"] = " ".join(cloudimage.customize_argv(
        ctx, tmp_path / "d.qcow2", "db", tmp_path / "r", None))
    texts |= cloudimage.composer_sources(ctx)
    assert "[pgha-mirror]" in texts["pgha.repo"] and "Stand-in upstream" not in texts["db.ks"]
    seen = set()
    for name, text in texts.items():
        for url in URL.findall(text):
            seen.add(url)
            # allowed besides the mirror: key files on the node, and the cloud image's copy of
            # this build's own RPMs inside the image being built
            assert url.startswith((site, "file:///etc/pki/rpm-gpg/",
                                   f"file://{cloudimage.GUEST_REPO_DIR}/")), (name, url)
    assert site in seen and "file:///etc/pki/rpm-gpg/UPSTREAM-KEY" in seen
    # the sources' key travels in the kickstart, written to a file and imported from it
    assert "/etc/pki/rpm-gpg/UPSTREAM-KEY <<'PGHA_SOURCE_KEY'" in texts["db.ks"]
    assert "rpm --import /etc/pki/rpm-gpg/UPSTREAM-KEY" in texts["db.ks"]
    assert "--upload" in texts["customize"] and "keys/UPSTREAM-KEY:/etc/pki/rpm-gpg/" \
        "UPSTREAM-KEY" in texts["customize"]


def test_mirror_set_but_not_made_is_one_line(tmp_path: Path) -> None:
    cfile = tmp_path / "c.yaml"
    cfile.write_text(yaml.safe_dump({"name": "chainnone",
                                     "repos": {"mirror": "http://m.example/x/"}}))
    result = CliRunner().invoke(cli, ["-c", str(cfile), "-o", str(tmp_path / "o"), "kickstart"])
    assert result.exit_code == 1
    assert "repos.mirror is set but" in result.output and "pgha-build mirror" in result.output
