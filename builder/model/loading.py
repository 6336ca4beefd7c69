"""YAML cluster file -> validated Cluster. Every problem is reported at once as `path: message`.

Malformed YAML gets its line and column; field errors get their YAML path (and line); the
cross-field rules of `rules.py` run once the fields themselves are valid. Never a traceback
for bad input: everything expected raises ConfigError.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from builder.core.errors import ConfigError
from builder.model import rules as validate
from builder.model import yamlfile
from builder.model.cluster import Cluster

MAX_SHOWN = 60  # problems listed; the count says how many there are in all


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif not re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            out += f"[{str(part)[:40]!r}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at loc (or of its nearest existing parent)."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [v for k, v in node.value if getattr(k, "value", None) == str(part)]
            if not found:
                break
            node = found[-1]  # YAML keeps the last of duplicate keys
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1 if node is not None else None


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Cluster
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        candidates = [ann, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)),
                     None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def _message(err: dict[str, Any]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        allowed = _allowed_fields(tuple(err["loc"]))
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"unknown field{hint}; allowed: {', '.join(allowed)}"
    if kind == "missing":
        return "required field is missing"
    value = err.get("input")
    if isinstance(value, (str, int, float, bool)) and not isinstance(value, dict):
        return f"{msg} (got {value!r})"
    return msg


def from_data(data: Any, source: str = "<cluster>", tree: yaml.Node | None = None,
              early: list[str] | None = None) -> Cluster:
    """Validate data; every problem at once: `early` ones (duplicate keys), field errors, and the
    cross-field rules, which run on the data with its invalid fields left out."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the cluster file must be a mapping at the top level",
            hint="start from `pgha-build init cluster.yaml`",
        )
    problems = list(early or [])
    cluster, field_problems, dropped = _validate(data, tree)
    problems += field_problems
    if cluster is not None:
        report = validate.check(cluster)
        problems += [_located(p, tree) for p in report.errors
                     if not (dropped and p.path in validate.NODE_COUNT_PATHS)]
    if problems or cluster is None:
        shown = problems[:MAX_SHOWN] + ([f"... and {len(problems) - MAX_SHOWN} more"]
                                        if len(problems) > MAX_SHOWN else [])
        raise ConfigError(f"{source}: {len(problems)} problem(s) in the cluster file", shown)
    return cluster


def _validate(data: dict[str, Any], tree: yaml.Node | None
              ) -> tuple[Cluster | None, list[str], bool]:
    """(cluster or None, field problems, whether list items had to be dropped). On field errors,
    the invalid keys are removed (their defaults apply) so the cross-field rules can still run."""
    try:
        return Cluster.model_validate(data), [], False
    except ValidationError as exc:
        errors = exc.errors()
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        line = _line_of(tree, loc)
        where = f" (line {line})" if line else ""
        problems.append(f"{format_path(loc)}{where}: {_message(dict(err))}")
    repaired, dropped = copy.deepcopy(data), False
    for _attempt in range(3):
        for loc in sorted((tuple(e["loc"]) for e in errors), key=_sort_key, reverse=True):
            dropped |= _remove(repaired, loc, missing=any(
                e["type"] == "missing" and tuple(e["loc"]) == loc for e in errors))
        try:
            return Cluster.model_validate(repaired), problems, dropped
        except ValidationError as exc:
            errors = exc.errors()
        except (TypeError, ValueError):
            break
    return None, problems, dropped


def _sort_key(loc: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(f"{p:09d}" if isinstance(p, int) else str(p) for p in loc)


def _remove(data: Any, loc: tuple[Any, ...], missing: bool) -> bool:
    """Delete the deepest existing value on the path loc (a missing required field: the list
    item holding it, else its object). True if a list item was removed."""
    parts = [p for p in loc if p != "[key]"]
    if missing:
        parts = parts[:-1]
        if any(isinstance(p, int) for p in parts):
            while not isinstance(parts[-1], int):
                parts = parts[:-1]
    parent: Any = None
    key: Any = None
    node = data
    for part in parts:
        if isinstance(node, dict) and part in node or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            parent, key, node = node, part, node[part]
        else:
            break
    if parent is None:
        return False
    del parent[key]
    return isinstance(parent, list)


def _located(problem: validate.Problem, tree: yaml.Node | None) -> str:
    loc: list[Any] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", problem.path):
        loc.append(int(index) if index else name)
    line = _line_of(tree, tuple(loc))
    where = f" (line {line})" if line and loc else ""
    return f"{problem.path}{where}: {problem.message}"


def load(path: Path | None) -> Cluster:
    """Load a cluster file, or the built-in reference lab when path is None."""
    if path is None:
        return from_data({}, "built-in default cluster")
    text = yamlfile.read_text(path)
    data, tree, duplicates = yamlfile.parse(path, text)
    return from_data(data, str(path), tree, duplicates)
