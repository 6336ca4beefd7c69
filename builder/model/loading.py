"""YAML cluster file -> validated Cluster. Every problem is reported at once as `path: message`.

Malformed YAML gets its line and column; field errors get their YAML path (and line); the
cross-field rules of `validate.py` run once the fields themselves are valid. Never a traceback
for bad input: everything expected raises ConfigError.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from builder.core.errors import ConfigError
from builder.model import rules as validate
from builder.model.cluster import Cluster


def format_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
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
            node = found[0]
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


def from_data(data: Any, source: str = "<cluster>", tree: yaml.Node | None = None) -> Cluster:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: the cluster file must be a mapping at the top level",
            hint="start from `pgha-build init cluster.yaml`",
        )
    try:
        cluster = Cluster.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(tree, loc)
            where = f" (line {line})" if line else ""
            problems.append(f"{format_path(loc)}{where}: {_message(dict(err))}")
        raise ConfigError(
            f"{source}: {len(problems)} problem(s) in the cluster file", problems
        ) from None
    report = validate.check(cluster)
    if report.errors:
        raise ConfigError(
            f"{source}: {len(report.errors)} problem(s) in the cluster file",
            [str(p) for p in report.errors],
        )
    return cluster


def load(path: Path | None) -> Cluster:
    """Load a cluster file, or the built-in reference lab when path is None."""
    if path is None:
        return from_data({}, "built-in default cluster")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"cluster file {path} does not exist",
            hint="create one with `pgha-build init cluster.yaml`, or omit -c for the default",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc}") from None
    try:
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            f"{path}: malformed YAML at {where}: {exc.problem}",
            hint="check indentation and quoting around that line",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML: {exc}") from None
    return from_data(data, str(path), tree)
