"""The registries (image formats, image backends, forges) drive the model, the CLI and the code:
one table entry each, nothing else to keep in step."""

from __future__ import annotations

import importlib
import typing

import click
import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.context import Context
from builder.images import backends, common, preflight
from builder.model import imageformats
from builder.model.cluster import Cluster
from builder.release import forge


def _option(command: str, name: str) -> click.Option:
    cmd = cli.get_command(click.Context(cli), command)
    assert cmd is not None
    return next(p for p in cmd.params if isinstance(p, click.Option) and p.name == name)


def test_format_table_drives_the_model_and_the_cli() -> None:
    assert typing.get_args(imageformats.Format) == imageformats.FORMATS
    schema = Cluster.model_json_schema()["$defs"]["Image"]["properties"]["formats"]
    assert tuple(schema["items"]["enum"]) == imageformats.FORMATS
    help_text = " ".join(CliRunner().invoke(cli, ["images", "--help"]).output.split())
    for name, help_line in imageformats.TABLE.items():
        assert f"{name}: {help_line}" in help_text
    with pytest.raises(ValueError, match="choose from qcow2, raw, vmdk, vhdx, ova"):
        imageformats.parse_formats("qcow2,zip")


def test_every_format_of_the_model_has_exactly_one_class_and_the_stage_names_none() -> None:
    import ast
    from pathlib import Path

    from builder.images import formats, stage

    assert tuple(formats.REGISTRY) == imageformats.FORMATS
    assert len({type(f) for f in formats.REGISTRY.values()}) == len(imageformats.FORMATS)
    tree = ast.parse(Path(stage.__file__).read_text())
    strings = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert not strings & set(imageformats.FORMATS), "the images stage names a format"


def test_backend_table_drives_the_cli_and_the_stage() -> None:
    option = _option("images", "backend")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == backends.NAMES == ("virt-install", "cloud-image",
                                                           "debian12")
    assert typing.get_args(backends.BackendName) == backends.NAMES
    assert common.ImageOptions(role="db").backend == backends.NAMES[0]
    for backend in backends.TABLE:
        plan = importlib.import_module(backend.plan_module).plan
        assert list(typing.get_type_hints(plan)) == ["ctx", "opts", "report", "return"]


def test_backend_preflight_names_its_tools_and_source(ctx: Context) -> None:
    report = preflight.Report()
    opts = common.ImageOptions(role="db", backend="cloud-image", cloud_image="/nonexistent.qcow2")
    backends.get("cloud-image").check(report, ctx, opts)
    lines = report.notes + report.problems
    assert any("virt-customize" in line for line in lines)
    assert any("/nonexistent.qcow2 does not exist" in line for line in report.problems)
    with pytest.raises(Exception, match="unknown image backend 'packer'"):
        backends.get("packer")


def test_forge_table_drives_the_cli_and_auto() -> None:
    option = _option("release", "forge_kind")
    assert isinstance(option.type, click.Choice)
    assert tuple(option.type.choices) == forge.CHOICES
    assert set(forge.CHOICES) == {"auto", *forge.BY_NAME}
    assert forge.connect("https://git.example/api/v1", "o/r", "t", "auto").kind == "gitea"
    assert forge.connect(None, "o/r", "t", "auto").kind == "github"
    gitea = forge.connect("https://git.example", "o/r", "t", "gitea")
    assert gitea.api_url == "https://git.example/api/v1"
