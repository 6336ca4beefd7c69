"""YAML for pgha-build's own files, through libyaml when PyYAML was built with it.

The C loader and emitter (`CSafeLoader`, `CSafeDumper`) are several times faster than PyYAML's
pure-Python ones and give the same data and, for the plain mappings, lists and strings
pgha-build writes, the same text (tests/test_fastyaml.py compares both on the build's files).
Without libyaml the pure-Python classes are used. User files (the cluster file) keep
builder.model.yamlfile, which needs the Python loader's line marks for its messages.
"""

from __future__ import annotations

from typing import Any

import yaml

LOADER: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER: type = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load(text: str) -> Any:
    """yaml.safe_load(text), with libyaml when present."""
    return yaml.load(text, Loader=LOADER)


def dump(data: Any, **options: Any) -> str:
    """yaml.safe_dump(data, **options) as text, with libyaml when present."""
    text: str = yaml.dump(data, Dumper=DUMPER, **options)
    return text
