"""The JSON Schema `pgha-build schema` prints: the model's, with the real defaults.

pydantic's schema gives each field its class default. The resolved model's defaults differ in
three ways, and this module makes the schema say the resolved ones:
- a model used in several places (Repo: baseos, appstream, pgdg, ...) has per-place defaults:
  every reference is inlined, with each property's default taken from the resolved default
  cluster at that place;
- the timing profile decides the Patroni timings and HAProxy checks: their default is the
  default profile's, and the description names every profile's value;
- some defaults are derived from other fields (client_networks from network.cidr, the F5
  tenant from the name, the PGDG repository from postgres_version): no default, the
  description says how it is derived.
`tests/test_model.py` checks every default in the schema against the resolved model.
"""

from __future__ import annotations

import copy
from typing import Any

from builder.model.cluster import PROFILE_FIELDS, PROFILES, Cluster, resolved_dict

DERIVED = {
    "network.client_networks": "[network.cidr]",
    "load_balancer.f5.tenant": "the cluster name",
    "repos.pgdg": "PGDG's repository for postgres_version",
    "repos.pgdg.url": "PGDG's repository URL for postgres_version",
}


def _profile_note(path: str) -> str | None:
    for section, keys in PROFILE_FIELDS.items():
        prefix = "patroni." if section == "patroni" else "load_balancer.check."
        key = path.removeprefix(prefix)
        if path.startswith(prefix) and key in keys:
            values = ", ".join(f"{name} {p[section][key]}" for name, p in PROFILES.items())
            return f"set by `profile` unless given here ({values})"
    return None


def _describe(node: dict[str, Any], note: str) -> None:
    text = node.get("description")
    node["description"] = f"{text}; {note}" if text else note


def _fill(node: dict[str, Any], value: Any, path: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `node` with references inlined and defaults set from `value`."""
    if "$ref" in node:
        rest = {k: v for k, v in node.items() if k != "$ref"}
        node = {**copy.deepcopy(defs[node["$ref"].split("/")[-1]]), **rest}
    else:
        node = dict(node)
    if isinstance(node.get("items"), dict) and "$ref" in node["items"]:  # defaults per item
        node["items"] = copy.deepcopy(defs[node["items"]["$ref"].split("/")[-1]])
    if "anyOf" in node:
        node["anyOf"] = [_fill(opt, value, path, defs) if "$ref" in opt else opt
                         for opt in node["anyOf"]]
    if isinstance(value, dict) and "properties" in node:
        node["properties"] = {
            key: _fill(prop, value.get(key), f"{path}.{key}" if path else key, defs)
            for key, prop in node["properties"].items()}
    if path in DERIVED:
        node.pop("default", None)
        if "default:" not in node.get("description", "").lower():
            _describe(node, f"default: {DERIVED[path]}")
    elif path:
        node["default"] = value
        note = _profile_note(path)
        if note:
            _describe(node, note)
    return node


def json_schema() -> dict[str, Any]:
    data = Cluster.model_json_schema()
    resolved = resolved_dict(Cluster())
    resolved.pop("schema_version")
    defs = data.pop("$defs", {})
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "pgha-build cluster file", **_fill(data, resolved, "", defs)}
