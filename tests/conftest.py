"""Shared fixtures: the default cluster, a build context in a temporary folder, and one
session-wide real build of the default cluster for the integration tests to inspect."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core.context import Context
from builder.model import loading as config
from builder.model.cluster import Cluster
from builder.stages import pipeline


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
