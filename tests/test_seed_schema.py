"""One seed schema (pgha_agent/seed_schema.json): the agent checks seeds against it, the builder
checks every seed it renders against it, and docs/seed-format.md's field table is generated from
it. `PGHA_WRITE_DOCS=1 python3 -m pytest tests/test_seed_schema.py` rewrites that table."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.core import agentmod
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.model import tlsplan
from builder.stages import seeds

DOC = Path(__file__).resolve().parent.parent / "docs" / "seed-format.md"
BEGIN = "<!-- seed-schema fields: generated from pgha_agent/seed_schema.json -->"
END = "<!-- end of seed-schema fields -->"


def _rows(spec: dict[str, Any], path: str) -> Iterator[str]:
    kind = spec["type"]
    if kind == "object" and "variants" in spec:
        for variant, fields in spec["variants"].items():
            yield from _field_rows(fields, f"{path} ({spec['discriminator']}: {variant})")
    elif kind == "object":
        yield from _field_rows(spec["fields"], path)
    elif kind == "list" and spec["items"]["type"] in ("object", "list"):
        yield from _rows(spec["items"], f"{path}[]")


def _describe(spec: dict[str, Any]) -> str:
    kind = spec["type"]
    if kind == "list":
        kind = f"list of {spec['items']['type']}"
    extra = [f"`{spec[k]}`" for k in ("pattern", "check") if k in spec]
    if "items" in spec:
        extra += [f"`{spec['items'][k]}`" for k in ("pattern", "check") if k in spec["items"]]
    if "min" in spec or "max" in spec:
        extra.append(f"{spec.get('min', '')}..{spec.get('max', '')}")
    return kind + (f" ({', '.join(extra)})" if extra else "")


def _field_rows(fields: dict[str, Any], path: str) -> Iterator[str]:
    for key, spec in fields.items():
        name = f"{path}.{key}" if path else key
        need = "yes" if spec.get("required", True) else "no"
        need += ", or null" if spec.get("nullable") else ""
        yield f"| `{name}` | {_describe(spec)} | {need} | {spec.get('doc', '')} |"
        yield from _rows(spec, name)


def table(schema: dict[str, Any]) -> str:
    lines = [BEGIN, "| field | type | required | meaning |", "|---|---|---|---|",
             *_rows(schema["root"], ""), END]
    return "\n".join(lines) + "\n"


def test_doc_field_table_is_generated_from_the_schema() -> None:
    text = DOC.read_text()
    want = table(agentmod.seed_schema())
    assert BEGIN in text and END in text, f"{DOC} lacks the generated field table"
    start, end = text.index(BEGIN), text.index(END) + len(END) + 1
    if os.environ.get("PGHA_WRITE_DOCS") == "1":
        DOC.write_text(text[:start] + want + text[end:])
        return
    assert text[start:end] == want, "docs/seed-format.md is stale: PGHA_WRITE_DOCS=1 regenerates"


def _seed(ctx: Context, host: str = "db1") -> dict[str, Any]:
    return seeds.render_seed(ctx, ctx.cluster.node(host), tlsplan.load_secrets(ctx.out,
                                                                              ctx.cluster))


def _unknown_keys(value: Any, spec: dict[str, Any], path: str) -> Iterator[str]:
    if spec["type"] == "object" and isinstance(value, dict):
        fields = (spec["variants"][value[spec["discriminator"]]] if "variants" in spec
                  else spec["fields"])
        for key, item in value.items():
            if key == spec.get("discriminator"):
                continue
            if key not in fields:
                yield f"{path}.{key}".lstrip(".")
            else:
                yield from _unknown_keys(item, fields[key], f"{path}.{key}")
    elif spec["type"] == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unknown_keys(item, spec["items"], f"{path}[{i}]")


@pytest.mark.parametrize("host", ["db1", "lb1"])
def test_every_field_the_builder_writes_is_in_the_schema(ctx: Context, host: str) -> None:
    payload = _seed(ctx, host)
    schema = agentmod.seed_schema()
    assert not list(_unknown_keys(payload, schema["root"], ""))


def test_builder_refuses_to_write_a_seed_the_agent_would_refuse(ctx: Context) -> None:
    payload = _seed(ctx)
    seeds.check_schema(copy.deepcopy(payload), "db1")
    broken = copy.deepcopy(payload)
    broken["health"][0]["kind"] = "icmp"
    with pytest.raises(PghaError, match=r"db1 breaks the seed schema: .*health\[0\]\.kind"):
        seeds.check_schema(broken, "db1")
    broken = copy.deepcopy(payload)
    del broken["files"][0]["sha256"]
    with pytest.raises(PghaError, match=r"files\[0\]\.sha256: missing"):
        seeds.check_schema(broken, "db1")
    broken = copy.deepcopy(payload)
    broken["node"]["prefix"] = True
    with pytest.raises(PghaError, match=r"node\.prefix: expected an integer, got bool"):
        seeds.check_schema(broken, "db1")
