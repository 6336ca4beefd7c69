"""The depsolve gate with Debian's real dnf against local rpm-md repositories (tests/rhel8_repos.py:
the real package names and dependencies, built with rpmbuild and createrepo_c)."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import rhel8_repos
import yaml
from click.testing import CliRunner
from conftest import have
from support import RecordingRunner
from test_images_support import make_tree

from builder.cli import cli
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.images import preflight
from builder.images.stage import ImageOptions, run_preflight
from builder.model.cluster import Cluster
from builder.stages import depsolve, installsrc, pipeline

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have("dnf", "rpmbuild", "createrepo_c"),
                                 reason="needs dnf, rpmbuild and createrepo_c (scripts/setup)")]


@pytest.fixture(scope="module")
def repos(standin_repos: dict[str, Path]) -> dict[str, Path]:
    return standin_repos


def make_ctx(out: Path, repos: dict[str, object], **extra: object) -> Context:
    cluster = Cluster.model_validate({"name": "dep", "repos": repos, **extra})
    ctx = Context.create(cluster, out, runner=RecordingRunner())
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    return ctx


@pytest.fixture(scope="module")
def ctx(repos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Context:
    return make_ctx(tmp_path_factory.mktemp("out"), rhel8_repos.cluster_repos(repos))


def test_the_complete_set_resolves_every_role(ctx: Context) -> None:
    results = {r.role: r for r in depsolve.run(ctx)}
    db, lb = results["db"].resolved, results["haproxy"].resolved
    assert db["patroni"] == ("4.1.5-4PGDG.rhel8", "pgdg-common")
    assert db["patroni-etcd"][1] == "pgdg-common" and db["etcd"][1] == "pgdg-extras"
    assert db["postgresql16-server"][1] == "pgdg16" and db["python3.12"][1] == "AppStream"
    assert db["pgha-role-db"][1] == "pgha" and db["chrony"][1] == "BaseOS"
    assert lb["haproxy"] == ("1.8.27-5.el8", "AppStream")  # extras is limited to etcd
    assert lb["keepalived"][1] == "AppStream"
    assert db["pgbackrest"][1] == "pgdg-common"
    assert results["backup"].resolved["pgbackrest"] == ("2.57.0-3PGDG.rhel8", "pgdg-common")
    argv = next(c for c in ctx.runner.calls  # type: ignore[attr-defined]
                if c[0] == "dnf" and "pgha-role-db" in c)
    assert {"--releasever=8", "--forcearch=x86_64", "--assumeno"} <= set(argv)
    assert "--exclude=kexec-tools" in argv and argv[-2:] == ["install", "pgha-role-db"] or \
        "pgha-role-db" in argv


def test_without_the_common_repository_the_gate_names_patroni(ctx: Context) -> None:
    req = depsolve.role_request(ctx, "db")
    req = dataclasses.replace(req, repos=tuple(r for r in req.repos if r.id != "pgdg-common"))
    work = ctx.out.work / "no-common"
    work.mkdir(parents=True)
    result = depsolve.solve(ctx, req, work)
    assert any(p.startswith("nothing provides patroni needed by pgha-role-db")
               for p in result.problems), result.problems


def test_without_python312_dns_the_gate_names_it(repos: dict[str, Path], tmp_path: Path) -> None:
    appstream = rhel8_repos.without(repos["appstream"], tmp_path / "appstream", "python3.12-dns")
    urls = {**rhel8_repos.cluster_repos(repos), "appstream": appstream.as_uri() + "/"}
    (tmp_path / "cluster.yaml").write_text(yaml.safe_dump({"name": "dep", "repos": urls}))
    result = CliRunner().invoke(cli, ["-c", str(tmp_path / "cluster.yaml"), "-o",
                                      str(tmp_path / "out"), "check", "--depsolve"])
    assert result.exit_code == 5, result.output
    lines = [ln for ln in result.output.splitlines() if "python3.12-dns" in ln]
    assert any(ln.strip().startswith("db: nothing provides python3.12-dns needed by")
               for ln in lines), result.output
    assert "haproxy:" not in result.output  # the load balancer role still resolves


def test_a_missing_package_is_named_and_the_rest_still_resolved(ctx: Context) -> None:
    req = depsolve.role_request(ctx, "db")
    req = dataclasses.replace(req, packages=(*req.packages, "no-such-package"),
                              repos=tuple(r for r in req.repos if r.id != "pgdg-common"))
    work = ctx.out.work / "missing"
    work.mkdir(parents=True)
    problems = depsolve.solve(ctx, req, work).problems
    assert "no package no-such-package in the role's repositories" in problems
    assert any("nothing provides patroni" in p for p in problems), problems


def test_ha_packages_pgdg_takes_haproxy_from_extras(repos: dict[str, Path],
                                                    tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, rhel8_repos.cluster_repos(repos) | {"ha_packages": "pgdg"})
    (result,) = depsolve.run(ctx, ["haproxy"])
    assert result.resolved["haproxy"] == ("3.2.4-1PGDG.rhel8", "pgdg-extras")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_repository_is_one_line(repos: dict[str, Path], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/common/"
    ctx = make_ctx(tmp_path, rhel8_repos.cluster_repos(repos) | {"pgdg_common": url})
    with pytest.raises(PghaError) as err:
        depsolve.run(ctx, ["db"])
    assert err.value.message.startswith(f"depsolve: repository pgdg-common ({url}) cannot be "
                                        "reached")
    assert "\n" not in err.value.message and err.value.hint


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers (a stalled mirror)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.getsockname()[1]}/stalled/"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    srv.close()


def test_a_stalled_repository_is_bounded_by_timeouts(repos: dict[str, Path], tmp_path: Path,
                                                     silent_server: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(depsolve, "CONNECT_TIMEOUT_S", 2)
    monkeypatch.setattr(depsolve, "RUN_TIMEOUT_S", 60)
    ctx = make_ctx(tmp_path, rhel8_repos.cluster_repos(repos) | {"pgdg_extras": silent_server})
    with pytest.raises(PghaError) as err:
        depsolve.run(ctx, ["db"])
    assert "pgdg-extras" in err.value.message and "\n" not in err.value.message


def test_images_preflight_runs_the_gate_unless_told_not_to(repos: dict[str, Path],
                                                           tmp_path: Path) -> None:
    common = rhel8_repos.without(repos["pgdg_common"], tmp_path / "common", "patroni")
    urls = rhel8_repos.cluster_repos(repos) | {"pgdg_common": common.as_uri() + "/"}
    ctx = make_ctx(tmp_path / "out", urls)
    opts = ImageOptions(role="db", backend="cloud-image", cloud_image=str(tmp_path / "none"))
    with pytest.raises(preflight.PreflightFailed) as err:
        run_preflight(ctx, opts)
    assert any(p.startswith("depsolve: db: nothing provides patroni") for p in err.value.problems)
    with pytest.raises(preflight.PreflightFailed) as err:
        run_preflight(ctx, dataclasses.replace(opts, depsolve=False))
    assert not any("depsolve" in p for p in err.value.problems)  # only the missing cloud image


def test_the_whole_run_has_a_time_limit(repos: dict[str, Path], tmp_path: Path,
                                        silent_server: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(depsolve, "CONNECT_TIMEOUT_S", 60)
    monkeypatch.setattr(depsolve, "RUN_TIMEOUT_S", 2)
    ctx = make_ctx(tmp_path, rhel8_repos.cluster_repos(repos) | {"pgdg_extras": silent_server})
    with pytest.raises(PghaError) as err:
        depsolve.run(ctx, ["db"])
    assert err.value.message.startswith("depsolve: dnf did not finish within 2 s for role db")


def media_tree(tmp_path: Path, repos: dict[str, Path], *drop: str) -> Path:
    """An install tree whose BaseOS/AppStream are the stand-in repositories (minus `drop`)."""
    tree = make_tree(tmp_path / "tree", version="8.10")
    shutil.copytree(repos["baseos"], tree / "BaseOS")
    rhel8_repos.without(repos["appstream"], tree / "AppStream", *drop)
    return tree


def test_the_gate_uses_the_install_trees_own_repositories(repos: dict[str, Path],
                                                          tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/"
    ctx = make_ctx(tmp_path / "out", rhel8_repos.cluster_repos(repos)
                   | {"baseos": dead + "BaseOS/", "appstream": dead + "AppStream/"})
    report = preflight.Report(source=installsrc.load(str(media_tree(tmp_path, repos))))
    preflight.check_depsolve(report, ctx, "db")
    assert report.problems == [] and any("from the install source" in n for n in report.notes)
    # media without python3.12 (as RHEL 8.9's AppStream): the gate names what patroni misses
    older = preflight.Report(source=installsrc.load(str(media_tree(tmp_path / "old", repos,
                                                                   "python3.12"))))
    preflight.check_depsolve(older, ctx, "db")
    assert any("nothing provides /usr/bin/python3.12 needed by patroni" in p
               for p in older.problems), older.problems


def test_a_package_hidden_by_includepkgs_says_so(ctx: Context) -> None:
    req = depsolve.role_request(ctx, "haproxy")
    req = dataclasses.replace(req, packages=(*req.packages, "haproxy"),
                              repos=tuple(r for r in req.repos if r.id != "AppStream"))
    work = ctx.out.work / "filtered"
    work.mkdir(parents=True)
    problems = depsolve.solve(ctx, req, work).problems
    assert ("no package haproxy in the role's repositories (all matches filtered out by "
            "exclude filtering)") in problems, problems
    # the role package's own requirements are still resolved and reported
    assert any("keepalived" in p and "filtered out by exclude filtering" in p
               for p in problems), problems
