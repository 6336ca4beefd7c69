"""Shared fixtures: the default cluster, a build context in a temporary folder, and one
session-wide real build of the default cluster for the integration tests to inspect."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core.context import Context
from builder.model import loading as config
from builder.model.cluster import Cluster
from builder.stages import pipeline, signing


@pytest.fixture(scope="session", autouse=True)
def one_signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every build in this test run signs with one cluster key, made once for real by the
    product's own generator (an RSA key takes 1-10 s on the shared machine); builds copy it
    instead of making their own. tests/test_signing.py checks generation itself."""
    made = tmp_path_factory.mktemp("signing") / "keyring"
    real = signing.generate_key
    real(Context.create(config.load(None), made.parent / "out"), made)

    def copy(ctx: Context, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(made, target, symlinks=True)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(signing, "generate_key", copy)
        mp.setattr(signing, "real_generate_key", real, raising=False)
        yield made


@pytest.fixture(scope="session")
def standin_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The RHEL 8 / PGDG stand-in repositories (tests/rhel8_repos.py), built once per run for
    the depsolve, mirror and python_deps tests; a test that changes one works on a copy."""
    import rhel8_repos

    return rhel8_repos.build_all(tmp_path_factory.mktemp("rhel8-standins"))


def have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


@pytest.fixture
def cluster() -> Cluster:
    return config.load(None)


@pytest.fixture
def ctx(tmp_path: Path, cluster: Cluster) -> Context:
    return Context.create(cluster, tmp_path / "output", RecordingRunner())


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Context:
    """The default cluster built once for real (specs, RPMs, repo, kickstarts, manifest)."""
    if not have("rpmbuild", "createrepo_c"):
        pytest.fail("rpmbuild and createrepo_c are required: run scripts/setup")
    out = tmp_path_factory.mktemp("built")
    context = Context.create(config.load(None), out, RecordingRunner())
    pipeline.run_steps(context, pipeline.BUILD)
    return context
