"""The seed's structure, checked against seed_schema.json (the one description of the seed).

Boundary: pure checks of a decoded JSON object against the declarative schema beside this file:
types, required and nullable fields, patterns, ranges, item counts, and the field-level checks
named by "check" (ip, host_name, abs_path, id). Raises SeedInvalid naming the field's path (for
example `files[2].sha256`). What needs more than one field (checksums, clashes, references
between fields, baked roles) stays in seed.py. Standard library only (platform-python 3.6).
"""

import ipaddress
import json
import os
import re

from pgha_agent.errors import SeedInvalid
from pgha_agent.rootfs import MAX_ID, canonical_problem

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_schema.json")
MAX_NAME = 253

_TYPES = {"str": str, "int": int, "list": list, "object": dict, "bool": bool}
_NAMES = {"str": "a string", "int": "an integer", "list": "a list", "object": "an object",
          "bool": "true or false"}


def load(path=SCHEMA_FILE):
    with open(path, "rb") as handle:
        schema = json.loads(handle.read().decode("utf-8"))
    schema["compiled"] = dict((k, re.compile(v)) for k, v in schema["patterns"].items())
    return schema


def bad(where, problem):
    return SeedInvalid("seed rejected: {}: {}".format(where, problem))


def _join(where, key):
    return "{}.{}".format(where, key) if where else key


def name_problem(text):
    """Why text is not an RFC 1123 host or domain name, or None. The builder applies the same
    rule to network.domain (builder/model/types.py); a test checks that they agree."""
    if not text:
        return "is empty"
    if len(text) > MAX_NAME:
        return "is longer than {} characters".format(MAX_NAME)
    label = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
    for part in text.split("."):
        if not part:
            return "has an empty label"
        if label.fullmatch(part) is None:
            return "has a label that is not 1-63 letters, digits or '-' (not at its ends)"
    return None


# An address without an IPv6 scope ID ("%eth0"): Python 3.9+ accepts any text after "%",
# line breaks included, which would end up in NetworkManager's keyfile.
IP_CHARS = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


def _check_ip(value, where):
    if IP_CHARS.fullmatch(value) is None:
        raise bad(where, "invalid IP address {!r} (no scope ID, only hex digits, ':' "
                         "and '.')".format(value[:60]))
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise bad(where, "invalid IP address {!r}".format(value))


def _check_host_name(value, where):
    problem = name_problem(value)
    if problem:
        raise bad(where, "invalid name {!r}: it {}".format(value, problem))


def _check_abs_path(value, where):
    problem = canonical_problem(value)
    if problem:
        raise bad(where, "{}, got {!r}".format(problem, value))


def _check_id(value, where):
    if value.isdigit() and int(value) > MAX_ID:
        raise bad(where, "{} is out of range (0..{})".format(value, MAX_ID))


CHECKS = {"ip": _check_ip, "host_name": _check_host_name, "abs_path": _check_abs_path,
          "id": _check_id}


def _type(value, spec, where):
    kind = spec["type"]
    if (isinstance(value, bool) and kind != "bool") or not isinstance(value, _TYPES[kind]):
        raise bad(where, "expected {}, got {}".format(
            _NAMES[kind] + (" or null" if spec.get("nullable") else ""), type(value).__name__))


def _scalar(value, spec, where, schema):
    if "pattern" in spec and schema["compiled"][spec["pattern"]].fullmatch(value) is None:
        what = spec.get("what", spec["pattern"].replace("_", " "))
        raise bad(where, "invalid {} {!r}".format(what, value))
    if "min" in spec and value < spec["min"] or "max" in spec and value > spec["max"]:
        raise bad(where, "out of range: {} ({}..{})".format(value, spec.get("min", ""),
                                                             spec.get("max", "")))
    if "check" in spec:
        CHECKS[spec["check"]](value, where)


def _fields(obj, fields, where, schema):
    for key, spec in fields.items():
        path = _join(where, key)
        if key not in obj:
            if spec.get("required", True):
                raise bad(path, "missing")
            continue
        check(obj[key], spec, path, schema)


def check(value, spec, where, schema):
    """value against spec (a node of the schema), or SeedInvalid naming `where`."""
    if value is None and spec.get("nullable"):
        return
    _type(value, spec, where)
    kind = spec["type"]
    if kind == "object":
        if "discriminator" in spec:
            key = spec["discriminator"]
            variants = spec["variants"]
            chosen = value.get(key)
            if chosen not in variants:
                raise bad(_join(where, key), "unknown {} {!r} ({})".format(
                    key, chosen, ", ".join(sorted(variants))))
            _fields(value, variants[chosen], where, schema)
        else:
            _fields(value, spec["fields"], where, schema)
    elif kind == "list":
        if len(value) < spec.get("min_items", 0):
            raise bad(where, "empty" if not value else "too few items")
        for i, item in enumerate(value):
            check(item, spec["items"], "{}[{}]".format(where, i), schema)
    else:
        _scalar(value, spec, where, schema)


def check_seed(data, schema):
    """The whole seed object against the schema's root."""
    check(data, schema["root"], "", schema)
