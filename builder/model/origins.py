"""Where each value of the resolved cluster comes from (`pgha-build show --origin`).

One of: `file` (the cluster file sets it), `profile <name>` (the timing profile decides it:
Patroni's ttl, loop_wait, retry_timeout and HAProxy's check timings, unless the file sets
them), `default` (the model's default), or `default from <field>` (derived from another value:
client_networks from network.cidr, ...). The values are the resolved model's, as `show` prints.
"""

from __future__ import annotations

from typing import Any

from builder.model.cluster import PROFILE_FIELDS, Cluster, resolved_dict

DERIVED_FROM = {
    "network.client_networks": "network.cidr",
    "load_balancer.f5.tenant": "name",
    "repos.pgdg": "postgres_version",
}
SECTIONS = {"patroni": "patroni", "check": "load_balancer.check"}


def _leaves(value: Any, path: str) -> list[tuple[str, Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items()
                for leaf in _leaves(v, f"{path}.{k}" if path else k)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, f"{path}[{i}]")]
    return [(path, value)]


def _given(data: Any, path: str) -> bool:
    """Whether the file's data holds `path`."""
    node = data
    for part in path.replace("[", ".[").split("."):
        if part.startswith("["):
            index = int(part[1:-1])
            if not isinstance(node, list) or index >= len(node):
                return False
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:  # a repository given as a plain URL is short for {url: ...}
            return isinstance(node, str) and part == "url"
    return True


def origin(cluster: Cluster, data: Any, path: str) -> str:
    if _given(data, path):
        return "file"
    for field, source in DERIVED_FROM.items():
        if path == field or path.startswith(field + "."):
            return f"default from {source}"
    for section, keys in PROFILE_FIELDS.items():
        prefix = SECTIONS[section] + "."
        if path.startswith(prefix) and path[len(prefix):] in keys:
            return f"profile {cluster.profile}"
    return "default"


def origins(cluster: Cluster, data: Any) -> list[tuple[str, Any, str]]:
    """(dotted path, resolved value, origin) for every value; `data` is the file's mapping
    (None for the built-in cluster)."""
    resolved = resolved_dict(cluster)
    resolved.pop("schema_version")
    return [(path, value, origin(cluster, data, path)) for path, value in _leaves(resolved, "")]
