"""Reading a cluster file safely: a regular file of bounded size, valid UTF-8 YAML, no key given
twice. Every failure is a ConfigError with one line (and the lines of each duplicate key).

Boundary: bytes on disk -> (plain data, composed node tree for line numbers). No model here.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from builder.core.errors import ConfigError

MAX_BYTES = 1024 * 1024  # a cluster file is a few kilobytes; this bounds parse time and memory
HINT_NEW = "create one with `pgha-build init cluster.yaml`, or omit -c for the default"


def read_text(path: Path) -> str:
    """The file's text; refuses what is missing, not a regular file, too big or not UTF-8."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"cluster file {path} does not exist", hint=HINT_NEW) from None
    except OSError as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise ConfigError(f"cluster file {path} is {kind}", hint="give the path of a YAML file")
    if info.st_size > MAX_BYTES:
        raise ConfigError(f"cluster file {path} is {info.st_size} bytes; the limit is "
                          f"{MAX_BYTES}", hint="a cluster file is a few kilobytes: is it the "
                          "right file?")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read cluster file {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"cluster file {path} is larger than {MAX_BYTES} bytes")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cluster file {path} is not UTF-8 text (byte {exc.start})") from None


def duplicate_keys(node: yaml.Node | None) -> list[str]:
    """`path: key 'x' is given twice (lines A and B)` for every mapping in the tree."""
    out: list[str] = []
    _walk(node, "", out, set())
    return out


def _walk(node: yaml.Node | None, path: str, out: list[str], seen: set[int]) -> None:
    """Each node once: an alias repeats a node, it never has keys of its own (and following
    aliases again would make a nested alias "bomb" exponential)."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            name = str(getattr(key, "value", ""))
            line = key.start_mark.line + 1
            if name in first:
                where = f"{path}.{name}" if path else name
                out.append(f"{where} (line {line}): key '{name}' is given twice (lines "
                           f"{first[name]} and {line}); YAML would silently keep the last one")
            else:
                first[name] = line
            _walk(value, f"{path}.{name}" if path else name, out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, f"{path}[{i}]", out, seen)


def parse(path: Path, text: str) -> tuple[Any, yaml.Node | None, list[str]]:
    """(data, tree, duplicate-key problems); malformed YAML is a ConfigError."""
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
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: malformed YAML: {str(exc)[:200]}") from None
    except ValueError:  # int(): more than sys.get_int_max_str_digits() digits
        raise ConfigError(f"{path}: a number has more than 4300 digits",
                          hint="no setting needs such a number: is it the right file?") from None
    return data, tree, duplicate_keys(tree)
