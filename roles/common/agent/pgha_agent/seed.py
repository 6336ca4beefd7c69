"""Validation of pgha/seed.json (docs/seed-format.md, schema_version 1) before anything is written.

Boundary: takes the raw bytes of a seed and the Root, returns a validated Seed or raises
SeedInvalid with ONE line naming the offending field (for example `files[2].sha256`). The
seed's structure (every field's presence, type, pattern and range) is checked against
seed_schema.json by schema.py; this module adds what spans fields: the schema version, every
checksum, that every role is baked into the image (/etc/pgha/roles.d/<role>), references between
fields, that no file lies inside a protected directory and no path clashes. It writes nothing
and never logs file contents.
"""

import hashlib
import ipaddress
import json
import posixpath

from pgha_agent import SCHEMA_VERSIONS, schema
from pgha_agent.errors import SeedInvalid
from pgha_agent.rootfs import inside

ROLES_DIR = "/etc/pgha/roles.d"
SPECIAL_BITS = 0o7000
SCHEMA = schema.load()
LABEL = SCHEMA["compiled"]["label"]
name_problem = schema.name_problem


def _bad(where, problem):
    return schema.bad(where, problem)


def _check_version(data):
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad("schema_version", "missing or not an integer")
    if version not in SCHEMA_VERSIONS:
        raise _bad("schema_version", "unsupported version {} (this agent reads {})".format(
            version, ", ".join(str(v) for v in SCHEMA_VERSIONS)))


def _check_node(data):
    node = data["node"]
    address = ipaddress.ip_address(node["address"])
    if node["prefix"] > address.max_prefixlen:
        raise _bad("node.prefix", "out of range: {}".format(node["prefix"]))


def _check_roles(data, root):
    for role in data["roles"]:
        marker = posixpath.join(ROLES_DIR, role)
        if not root.exists(marker):
            raise _bad("roles", "role '{}' is not baked into this image ({} is missing; "
                                "install pgha-role-{})".format(role, marker, role))


def _check_services(data):
    names = [svc["name"] for svc in data["services"]]
    if len(set(names)) != len(names):
        raise _bad("services", "a service is listed twice")
    return names


def _check_health(data, services):
    for i, check in enumerate(data["health"]):
        service = check.get("service")
        if service is not None and service not in services:
            raise _bad("health[{}].service".format(i), "'{}' is not in services".format(service))


def _check_etcd_join(data, services):
    """Optional `etcd_join`: how this DCS member joins the etcd cluster (etcdjoin.py)."""
    spec = data.get("etcd_join")
    if spec is None:
        return
    if spec["service"] not in services:
        raise _bad("etcd_join.service", "'{}' is not in services".format(spec["service"]))
    if spec["env_file"] not in [f["path"] for f in data["files"]]:
        raise _bad("etcd_join.env_file", "{} is not one of the seed's files".format(
            spec["env_file"]))


def _not_protected(path, protected, where):
    for prot in protected:
        if path == prot or path.startswith(prot + "/"):
            raise _bad(where, "{} is inside protected directory {}".format(path, prot))


def _special_bits(entry, at):
    mode = int(entry["mode"], 8)
    if mode & SPECIAL_BITS and not entry.get("special_bits", False):
        raise _bad(at + ".mode", "{:04o} sets setuid, setgid or sticky; the seed must say "
                                 "\"special_bits\": true to allow it".format(mode))


def _check_directories(data, protected):
    """Optional `directories` (added compatibly to schema 1): created with owner and mode."""
    for i, entry in enumerate(data.get("directories") or []):
        at = "directories[{}]".format(i)
        _not_protected(entry["path"], protected, at + ".path")
        _special_bits(entry, at)


def _check_files(data, protected):
    seen = set()
    for i, entry in enumerate(data["files"]):
        at = "files[{}]".format(i)
        path = entry["path"]
        if path in seen:
            raise _bad(at + ".path", "{} is listed twice".format(path))
        seen.add(path)
        _not_protected(path, protected, at + ".path")
        _special_bits(entry, at)
        try:
            actual = hashlib.sha256(entry["content"].encode("utf-8"))
        except UnicodeEncodeError:
            raise _bad(at + ".content", "not encodable as UTF-8 (a lone surrogate)")
        if actual.hexdigest() != entry["sha256"].lower():
            raise _bad(at + ".sha256", "checksum mismatch for {} (content corrupted or "
                                       "edited)".format(path))


def _check_clashes(data):
    """No path is both a file and a directory, and no file is where a folder must be."""
    dirs = [d["path"] for d in data.get("directories") or []]
    files = [f["path"] for f in data["files"]]
    if len(set(dirs)) != len(dirs):
        raise _bad("directories", "a directory is listed twice")
    for i, path in enumerate(files):
        for other in dirs + files:
            if other != path and inside(other, path):
                raise _bad("files[{}].path".format(i), "{} is a file, but {} needs it to be a "
                                                       "directory".format(path, other))
        if path in dirs:
            raise _bad("files[{}].path".format(i), "{} is also listed in directories".format(
                path))


def decode(raw):
    """The JSON object in raw bytes, or SeedInvalid."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SeedInvalid("seed rejected: seed.json is not UTF-8")
    except ValueError as exc:
        raise SeedInvalid("seed rejected: seed.json is not valid JSON ({})".format(exc))
    if not isinstance(data, dict):
        raise SeedInvalid("seed rejected: seed.json is not a JSON object")
    return data


def validate(raw, root):
    """Parse and check a seed; returns a Seed. Raises SeedInvalid; writes nothing."""
    data = decode(raw)
    _check_version(data)
    schema.check_seed(data, SCHEMA)
    _check_node(data)
    _check_roles(data, root)
    services = _check_services(data)
    _check_health(data, services)
    protected = data["protected_dirs"]
    _check_directories(data, protected)
    _check_files(data, protected)
    _check_clashes(data)
    _check_etcd_join(data, services)
    return Seed(data)


class Seed(object):
    """A validated seed: read-only accessors over the checked JSON object."""

    def __init__(self, data):
        self.data = data

    def __getattr__(self, key):
        try:
            return self.__dict__["data"][key]
        except KeyError:
            raise AttributeError(key)

    @property
    def directories(self):
        return self.data.get("directories") or []

    @property
    def firewall_rules(self):
        return self.data.get("firewall_rules") or []

    @property
    def selinux_booleans(self):
        return self.data.get("selinux_booleans") or []

    def checks_for(self, service):
        return [c for c in self.data["health"] if c.get("service") == service]

    def unassigned_checks(self):
        return [c for c in self.data["health"] if c.get("service") is None]

    def summary(self):
        return "cluster {} node {} ({}), instance {}, roles {}, {} file(s), services {}".format(
            self.cluster, self.node["name"], self.node["address"], self.instance_id,
            ",".join(self.roles), len(self.files),
            ",".join(s["name"] for s in self.services) or "none")
