"""The RHEL 8 minor-version policy: PGDG's python3.12 Patroni needs an 8.10+ install tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_images_support import make_tree

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.images import preflight
from builder.model import minorpolicy
from builder.model.cluster import Cluster
from builder.pxe import tree as pxe


@pytest.mark.parametrize(("pins", "python"), [
    ({}, "3.12"), ({"patroni": "4.1.5"}, "3.12"), ({"patroni": "4.0.5-4PGDG.rhel8"}, "3.12"),
    ({"patroni": "4.0.5-3PGDG.rhel8"}, "3.6"), ({"patroni": "4.0.4"}, "3.6"),
    ({"patroni": "3.3.2"}, "3.6"), ({"patroni": "0:3.3.2-1PGDG.rhel8"}, "3.6")])
def test_which_python_the_chosen_patroni_needs(pins: dict[str, str], python: str) -> None:
    assert minorpolicy.patroni_python(Cluster.model_validate({"pins": pins})) == python


@pytest.mark.parametrize(("version", "pins", "refused"), [
    ("8.9", {}, True), ("8.6", {}, True), ("8.10", {}, False), ("8.10.1", {}, False),
    ("8.9", {"patroni": "4.0.4"}, False)])
def test_preflight_refuses_trees_older_than_8_10_for_python312_patroni(
        tmp_path: Path, version: str, pins: dict[str, str], refused: bool) -> None:
    report = preflight.Report()
    cluster = Cluster.model_validate({"pins": pins})
    preflight.check_source(report, str(make_tree(tmp_path, version=version)), None,  # type: ignore[arg-type]
                           cluster)
    problems = [p for p in report.problems if "python3.12" in p]
    assert bool(problems) == refused
    if refused:
        assert problems[0].startswith(f"the install source is RHEL {version}, but PGDG's "
                                      "Patroni for EL-8 is built for python3.12")
        assert "RHEL 8.10 media" in problems[0] and "pins: {patroni:" in problems[0]


def test_pxe_refuses_an_8_9_tree(tmp_path: Path) -> None:
    ctx = Context.create(Cluster(), tmp_path / "out")
    with pytest.raises(PghaError) as err:
        pxe.build_pxe(ctx, str(make_tree(tmp_path / "tree", version="8.9")))
    assert "RHEL 8.9" in err.value.message and "8.10" in (err.value.hint or "")
