"""Validation of pgha/seed.json (docs/seed-format.md, schema_version 1) before anything is written.

Boundary: takes the raw bytes of a seed and the Root, returns a validated Seed or raises
SeedInvalid with ONE line naming the offending field (for example `files[2].sha256`). It checks
the schema version, every field's presence and type, names that become paths or unit names,
every checksum, that every role is baked into the image (/etc/pgha/roles.d/<role>), and that no
file lies inside a protected directory. It writes nothing and never logs file contents.
"""

import hashlib
import ipaddress
import json
import posixpath
import re

from pgha_agent import SCHEMA_VERSIONS
from pgha_agent.errors import SeedInvalid
from pgha_agent.rootfs import MAX_ID, canonical_problem, inside

ROLES_DIR = "/etc/pgha/roles.d"

INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ROLE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Bounded so that a unit's log, PID and temporary file names stay below NAME_MAX (255).
UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:-]{0,199}$")
ACCOUNT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$")
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
MAC = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
MODE = re.compile(r"^0?[0-7]{3,4}$")
SEBOOL = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# firewalld rich rules as pgha-build writes them: accept one service from one IPv4 source.
RICH_RULE = re.compile(r'^rule family="ipv4" source address="[0-9./]{7,18}" '
                       r'(service name="[A-Za-z0-9._-]{1,64}"|protocol value="[a-z]{1,16}") '
                       r'accept$')
RELOAD_SIGNALS = ("HUP", "USR2")
MAX_NAME = 253
SPECIAL_BITS = 0o7000

_TYPES = {"str": str, "int": int, "list": list, "dict": dict, "bool": bool}
_NAMES = {"str": "a string", "int": "an integer", "list": "a list", "dict": "an object",
          "bool": "true or false"}


def _bad(where, problem):
    return SeedInvalid("seed rejected: {}: {}".format(where, problem))


def _field(obj, key, where, kind, nullable=False, default=None, required=True):
    """obj[key] checked to be of `kind`; missing or null handled as the flags say."""
    path = "{}.{}".format(where, key) if where else key
    if key not in obj:
        if required:
            raise _bad(path, "missing")
        return default
    value = obj[key]
    if value is None and nullable:
        return None
    if (isinstance(value, bool) and kind != "bool") or not isinstance(value, _TYPES[kind]):
        raise _bad(path, "expected {}, got {}".format(
            _NAMES[kind] + (" or null" if nullable else ""), type(value).__name__))
    return value


def _list_of(obj, key, where, kind, pattern=None):
    items = _field(obj, key, where, "list")
    prefix = "{}.{}".format(where, key) if where else key
    for i, item in enumerate(items):
        at = "{}[{}]".format(prefix, i)
        if isinstance(item, bool) or not isinstance(item, _TYPES[kind]):
            raise _bad(at, "expected {}, got {}".format(_NAMES[kind], type(item).__name__))
        if pattern is not None:
            _match(pattern, item, at)
    return items


def _match(pattern, value, where, what="value"):
    if pattern.fullmatch(value) is None:
        raise _bad(where, "invalid {} {!r}".format(what, value))
    return value


def _abs_path(value, where):
    problem = canonical_problem(value)
    if problem:
        raise _bad(where, "{}, got {!r}".format(problem, value))
    return value


def name_problem(text):
    """Why text is not an RFC 1123 host or domain name, or None. The builder applies the same
    rule to network.domain (builder/model/types.py); a test checks that they agree."""
    if not text:
        return "is empty"
    if len(text) > MAX_NAME:
        return "is longer than {} characters".format(MAX_NAME)
    for label in text.split("."):
        if not label:
            return "has an empty label"
        if LABEL.fullmatch(label) is None:
            return "has a label that is not 1-63 letters, digits or '-' (not at its ends)"
    return None


def _name(value, where, what):
    problem = name_problem(value)
    if problem:
        raise _bad(where, "invalid {} {!r}: it {}".format(what, value, problem))


# An address without an IPv6 scope ID ("%eth0"): Python 3.9+ accepts any text after "%",
# line breaks included, which would end up in NetworkManager's keyfile.
IP_CHARS = re.compile(r"^[0-9A-Fa-f:.]{2,45}$")


def _ip(value, where):
    if IP_CHARS.fullmatch(value) is None:
        raise _bad(where, "invalid IP address {!r} (no scope ID, only hex digits, ':' "
                          "and '.')".format(value[:60]))
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise _bad(where, "invalid IP address {!r}".format(value))


def _check_version(data):
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad("schema_version", "missing or not an integer")
    if version not in SCHEMA_VERSIONS:
        raise _bad("schema_version", "unsupported version {} (this agent reads {})".format(
            version, ", ".join(str(v) for v in SCHEMA_VERSIONS)))


def _check_node(data):
    node = _field(data, "node", "", "dict")
    _match(LABEL, _field(node, "name", "node", "str"), "node.name", "host name")
    fqdn = _field(node, "fqdn", "node", "str", nullable=True, required=False)
    if fqdn is not None:
        _name(fqdn, "node.fqdn", "host name")
    address = _ip(_field(node, "address", "node", "str"), "node.address")
    prefix = _field(node, "prefix", "node", "int")
    if not 0 < prefix <= address.max_prefixlen:
        raise _bad("node.prefix", "out of range: {}".format(prefix))
    gateway = _field(node, "gateway", "node", "str", nullable=True, required=False)
    if gateway is not None:
        _ip(gateway, "node.gateway")
    for i, dns in enumerate(_list_of(node, "dns", "node", "str") if "dns" in node else []):
        _ip(dns, "node.dns[{}]".format(i))
    domain = _field(node, "domain", "node", "str", nullable=True, required=False)
    if domain is not None:
        _name(domain, "node.domain", "domain")
    mac = _field(node, "mac", "node", "str", nullable=True, required=False)
    if mac is not None:
        _match(MAC, mac, "node.mac", "MAC address")


def _check_roles(data, root):
    roles = _list_of(data, "roles", "", "str", ROLE)
    if not roles:
        raise _bad("roles", "empty: a node has at least one role")
    for role in roles:
        marker = posixpath.join(ROLES_DIR, role)
        if not root.exists(marker):
            raise _bad("roles", "role '{}' is not baked into this image ({} is missing; "
                                "install pgha-role-{})".format(role, marker, role))


def _check_services(data):
    names = []
    for i, svc in enumerate(_field(data, "services", "", "list")):
        at = "services[{}]".format(i)
        if not isinstance(svc, dict):
            raise _bad(at, "expected an object")
        names.append(_match(UNIT, _field(svc, "name", at, "str"), at + ".name", "unit name"))
        _match(ACCOUNT, _field(svc, "user", at, "str"), at + ".user", "user name")
        if not _list_of(svc, "argv", at, "str"):
            raise _bad(at + ".argv", "empty")
        env_file = _field(svc, "env_file", at, "str", nullable=True, required=False)
        if env_file is not None:
            _abs_path(env_file, at + ".env_file")
        reload_sig = _field(svc, "reload", at, "str", nullable=True, required=False)
        if reload_sig is not None and reload_sig not in RELOAD_SIGNALS:
            raise _bad(at + ".reload", "unknown signal {!r} ({})".format(
                reload_sig, ", ".join(RELOAD_SIGNALS)))
    if len(set(names)) != len(names):
        raise _bad("services", "a service is listed twice")
    _list_of(data, "disable_services", "", "str", UNIT)
    _list_of(data, "firewall_services", "", "str", UNIT)
    if "selinux_booleans" in data:  # optional: seeds from before it existed have none
        _list_of(data, "selinux_booleans", "", "str", SEBOOL)
    if "firewall_rules" in data:
        _list_of(data, "firewall_rules", "", "str", RICH_RULE)
    return names


def _check_health(data, services):
    for i, check in enumerate(_field(data, "health", "", "list")):
        at = "health[{}]".format(i)
        if not isinstance(check, dict):
            raise _bad(at, "expected an object")
        kind = _field(check, "kind", at, "str")
        if kind == "tcp":
            _field(check, "host", at, "str")
            port = _field(check, "port", at, "int")
            if not 0 < port < 65536:
                raise _bad(at + ".port", "out of range: {}".format(port))
        elif kind in ("http", "failover"):
            url = _field(check, "url", at, "str")
            if not url.startswith(("http://", "https://")):
                raise _bad(at + ".url", "not an http(s) URL")
            if "expect" in check:
                _list_of(check, "expect", at, "int")
            if "members" in check:
                _list_of(check, "members", at, "str")
            for key in ("cafile", "certfile", "keyfile"):
                value = _field(check, key, at, "str", nullable=True, required=False)
                if value is not None:
                    _abs_path(value, "{}.{}".format(at, key))
        else:
            raise _bad(at + ".kind", "unknown kind {!r} (tcp, http, failover)".format(kind))
        service = _field(check, "service", at, "str", nullable=True, required=False)
        if service is not None and service not in services:
            raise _bad(at + ".service", "'{}' is not in services".format(service))


def _url(check, key, at):
    url = _field(check, key, at, "str")
    if not url.startswith(("http://", "https://")):
        raise _bad("{}.{}".format(at, key), "not an http(s) URL")
    return url


def _check_etcd_join(data, services):
    """Optional `etcd_join`: how this DCS member joins the etcd cluster (etcdjoin.py)."""
    spec = _field(data, "etcd_join", "", "dict", nullable=True, required=False)
    if spec is None:
        return
    at = "etcd_join"
    if _field(spec, "service", at, "str") not in services:
        raise _bad(at + ".service", "'{}' is not in services".format(spec["service"]))
    _field(spec, "name", at, "str")
    _url(spec, "peer_url", at)
    for i, member in enumerate(_field(spec, "members", at, "list")):
        where = "{}.members[{}]".format(at, i)
        if not isinstance(member, dict):
            raise _bad(where, "expected an object")
        _field(member, "name", where, "str")
        _url(member, "client_url", where)
        _url(member, "peer_url", where)
    _abs_path(_field(spec, "data_dir", at, "str"), at + ".data_dir")
    env_file = _abs_path(_field(spec, "env_file", at, "str"), at + ".env_file")
    if env_file not in [f.get("path") for f in data["files"] if isinstance(f, dict)]:
        raise _bad(at + ".env_file", "{} is not one of the seed's files".format(env_file))
    for key in ("cafile", "certfile", "keyfile"):
        value = _field(spec, key, at, "str", nullable=True, required=False)
        if value is not None:
            _abs_path(value, "{}.{}".format(at, key))


def _not_protected(path, protected, where):
    for prot in protected:
        if path == prot or path.startswith(prot + "/"):
            raise _bad(where, "{} is inside protected directory {}".format(path, prot))


def _owner_mode(entry, at):
    for key in ("owner", "group"):
        value = _match(ACCOUNT, _field(entry, key, at, "str"), at + "." + key, key + " name")
        if value.isdigit() and int(value) > MAX_ID:
            raise _bad(at + "." + key, "{} is out of range (0..{})".format(value, MAX_ID))
    mode = int(_match(MODE, _field(entry, "mode", at, "str"), at + ".mode", "octal mode"), 8)
    allowed = _field(entry, "special_bits", at, "bool", required=False, default=False)
    if mode & SPECIAL_BITS and not allowed:
        raise _bad(at + ".mode", "{:04o} sets setuid, setgid or sticky; the seed must say "
                                 "\"special_bits\": true to allow it".format(mode))


def _check_directories(data, protected):
    """Optional `directories` (added compatibly to schema 1): created with owner and mode."""
    for i, entry in enumerate(_field(data, "directories", "", "list", required=False,
                                     default=[])):
        at = "directories[{}]".format(i)
        if not isinstance(entry, dict):
            raise _bad(at, "expected an object")
        path = _abs_path(_field(entry, "path", at, "str"), at + ".path")
        _not_protected(path, protected, at + ".path")
        _owner_mode(entry, at)


def _check_files(data, protected):
    seen = set()
    for i, entry in enumerate(_field(data, "files", "", "list")):
        at = "files[{}]".format(i)
        if not isinstance(entry, dict):
            raise _bad(at, "expected an object")
        path = _abs_path(_field(entry, "path", at, "str"), at + ".path")
        if path in seen:
            raise _bad(at + ".path", "{} is listed twice".format(path))
        seen.add(path)
        _not_protected(path, protected, at + ".path")
        _owner_mode(entry, at)
        digest = _match(SHA256, _field(entry, "sha256", at, "str").lower(), at + ".sha256",
                        "sha256")
        try:
            actual = hashlib.sha256(_field(entry, "content", at, "str").encode("utf-8"))
        except UnicodeEncodeError:
            raise _bad(at + ".content", "not encodable as UTF-8 (a lone surrogate)")
        if actual.hexdigest() != digest:
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
    _field(data, "cluster", "", "str")
    _field(data, "generator", "", "str", nullable=True, required=False)
    _match(INSTANCE_ID, _field(data, "instance_id", "", "str"), "instance_id", "instance id")
    _check_node(data)
    _check_roles(data, root)
    services = _check_services(data)
    _check_health(data, services)
    protected = [_abs_path(p, "protected_dirs[{}]".format(i))
                 for i, p in enumerate(_list_of(data, "protected_dirs", "", "str"))]
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
