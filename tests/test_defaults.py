"""One place resolves defaults: the profile decides the timings `init` leaves commented out,
`show --origin` says where each value comes from, and the schema's defaults are the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner

from builder.cli import cli
from builder.model import loading
from builder.model.cluster import PROFILES, Cluster, resolved_dict
from builder.model.schema import DERIVED, json_schema


def schema_mismatches(schema: dict[str, Any], resolved: Any) -> list[str]:
    """Every schema default (following references) that differs from the resolved model's value
    at the same place, and every derived value the schema gives a default for."""
    out: list[str] = []
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        if "$ref" in node:
            node = {**defs[node["$ref"].split("/")[-1]], **node}
        if "default" in node and (path in DERIVED or node["default"] != value):
            out.append(f"{path}: schema {node['default']!r}, resolved {value!r}")
        for opt in node.get("anyOf", []):
            if "$ref" in opt or "properties" in opt:
                walk(opt, value, path)
        if isinstance(value, dict):
            for key, prop in node.get("properties", {}).items():
                walk(prop, value.get(key), f"{path}.{key}" if path else key)
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                walk(node["items"], item, f"{path}[{i}]")

    walk(schema, resolved, "")
    return out


def resolved_default() -> dict[str, Any]:
    data = resolved_dict(Cluster())
    data.pop("schema_version")
    return data


def test_the_schema_defaults_are_the_resolved_models() -> None:
    assert schema_mismatches(json_schema(), resolved_default()) == []
    ttl = json_schema()["properties"]["patroni"]["properties"]["ttl"]
    assert ttl["default"] == 30 and "fast 20" in ttl["description"]


def test_the_comparison_finds_the_class_defaults_that_lie() -> None:
    """pydantic's own schema gives class defaults: a shared model's (Repo) and derived ones."""
    found = schema_mismatches(Cluster.model_json_schema(), resolved_default())
    assert "repos.pgdg_common.repo_gpgcheck: schema False, resolved True" in found
    assert any(f.startswith("network.client_networks: schema None") for f in found)
    schema = json_schema()
    schema["properties"]["load_balancer"]["properties"]["check"]["properties"]["downinter_ms"][
        "default"] = 1000  # the report's mismatch
    assert schema_mismatches(schema, resolved_default()) == [
        "load_balancer.check.downinter_ms: schema 1000, resolved 500"]


def test_the_profile_decides_the_timings_it_names() -> None:
    for name, profile in PROFILES.items():
        cluster = Cluster.model_validate({"profile": name})
        assert cluster.patroni.model_dump(include=set(profile["patroni"])) == profile["patroni"]
        check = cluster.load_balancer.check.model_dump()
        assert check == profile["check"]


def _invoke(*argv: str) -> str:
    result = CliRunner().invoke(cli, list(argv))
    assert result.exit_code == 0, result.output
    return result.output


def test_profile_fast_works_in_a_file_made_by_init(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    _invoke("init", str(target))
    assert loading.load(target) == loading.load(None)
    target.write_text(target.read_text().replace("profile: default", "profile: fast", 1))
    cluster = loading.load(target)
    assert (cluster.patroni.ttl, cluster.patroni.loop_wait, cluster.patroni.retry_timeout) == (
        20, 1, 3)
    assert cluster.load_balancer.check.model_dump() == PROFILES["fast"]["check"]
    shown = _invoke("-c", str(target), "show", "--origin")
    lines = {line.split(":")[0]: line.rsplit("# ", 1)[1] for line in shown.splitlines()}
    assert lines["patroni.ttl"] == "profile fast"
    assert lines["load_balancer.check.downinter_ms"] == "profile fast"
    assert lines["profile"] == "file" and lines["name"] == "file"
    assert lines["patroni.parameters"] == "file"  # written out by init, {}
    assert lines["network.client_networks"] == "default from network.cidr"
    assert lines["image.disk_gb"] == "default"
    assert lines["repos.baseos.url"] == "file" and lines["repos.baseos.gpgkey"] == "default"


def test_a_timing_set_in_the_file_wins_and_says_so(tmp_path: Path) -> None:
    target = tmp_path / "cluster.yaml"
    target.write_text("profile: fast\npatroni: {ttl: 40}\n")
    shown = _invoke("-c", str(target), "show", "--origin")
    assert "patroni.ttl: 40" in shown
    lines = {line.split(":")[0]: line.rsplit("# ", 1)[1] for line in shown.splitlines()}
    assert lines["patroni.ttl"] == "file" and lines["patroni.loop_wait"] == "profile fast"
    assert lines["nodes[0].name"] == "default"
