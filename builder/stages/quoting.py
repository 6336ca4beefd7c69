"""Quoting for each target a value is rendered into: the jinja2 filters the templates use.

The model's types (builder/model/types.py) already refuse anything that could end a line or
open a quote; these filters quote what is valid for the file it goes into, and refuse (raise
QuotingError, a bug in a template or a type) anything that still could change its structure:

  ks        a kickstart command argument: shell-like words, as pykickstart splits them
            (shlex.split with comments) - shlex.quote, no line breaks
  sh        a word in a shell script (kickstart %post): shlex.quote, no line breaks (a line
            `%end` inside a quoted word would still end the section)
  spec      an RPM spec token: letters, digits and ._+~^:=<>,/ - only (never '%' or a newline)
  token     a bare word in an INI, env or HAProxy file: no whitespace, quotes, '$', '\\', '#'
  tojson    (jinja2's own) YAML values and keys: a JSON string is a YAML flow scalar

docs/security.md lists which value goes where and how it is quoted.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import jinja2


class QuotingError(ValueError):
    """A value cannot be rendered safely into its target (a template or type bug)."""


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")
_SPEC_TOKEN = re.compile(r"[A-Za-z0-9._+~^:=<>,/ -]*")
_TOKEN = re.compile(r"[A-Za-z0-9._+~^:=,/@%-]*")


def _one_line(value: Any, target: str) -> str:
    text = str(value)
    if _LINE_BREAKS.search(text):
        raise QuotingError(f"{target}: refusing a value with a line break or control character: "
                           f"{text[:60]!r}")
    return text


def ks(value: Any) -> str:
    """A kickstart argument, quoted as pykickstart (shlex.split) reads it back."""
    return shlex.quote(_one_line(value, "kickstart"))


def sh(value: Any) -> str:
    """A shell word in a kickstart %post script."""
    return shlex.quote(_one_line(value, "shell"))


def spec(value: Any) -> str:
    """A validated RPM spec token, unchanged."""
    text = _one_line(value, "spec")
    if not _SPEC_TOKEN.fullmatch(text):
        raise QuotingError(f"spec: refusing {text[:60]!r}: only letters, digits and ._+~^:=<>,/ - "
                           "may reach a spec file")
    return text


def token(value: Any) -> str:
    """A bare word (env file, HAProxy, keepalived), unchanged."""
    text = _one_line(value, "config")
    if not _TOKEN.fullmatch(text):
        raise QuotingError(f"config: refusing {text[:60]!r}: not a bare word")
    return text


FILTERS = {"ks": ks, "sh": sh, "spec": spec, "token": token}


def install(env: jinja2.Environment) -> None:
    env.filters.update(FILTERS)
