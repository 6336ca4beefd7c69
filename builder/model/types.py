"""One strict type per kind of value that reaches a generated file.

Every string of the cluster file goes through one of these types before anything is rendered.
Each type has a small, documented grammar (docs/security.md); anything outside it is refused
with one line that says what was expected. The grammars are chosen so that a valid value can
never end a line, open a quote, start a macro (`%`), a shell expansion (`$`, backticks) or a
comment in any target: kickstart, YAML, RPM spec, shell, HAProxy, INI/env files.

Host and domain names follow RFC 1123 with exactly the rule the first-boot agent applies
(pgha_agent.seed): a test checks that both accept the same names.

This module holds no I/O and imports nothing from the rest of the builder.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import struct
import urllib.parse
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

# --- host and domain names (RFC 1123; the agent's rule, pgha_agent/seed.py) -----------------

LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
MAX_FQDN = 253
# Node and cluster names: one lower-case label, short enough for etcd, Patroni and RPM names.
NAME_RE = r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$"


def domain_problem(text: str) -> str | None:
    """Why text is not an RFC 1123 host or domain name, or None if it is one."""
    if not text:
        return "is empty"
    if len(text) > MAX_FQDN:
        return f"is longer than {MAX_FQDN} characters"
    for label in text.split("."):
        if not label:
            return "has an empty label (two dots, or a dot at an end)"
        if not LABEL_RE.fullmatch(label):
            return (f"label {label[:70]!r} is not 1-63 letters, digits or '-' "
                    "(not starting or ending with '-')")
    return None


def _domain(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    problem = domain_problem(value)
    if problem:
        raise ValueError(f"{_show(value)} is not an RFC 1123 domain name: it {problem}")
    return value


# --- generic helpers ------------------------------------------------------------------------

def _show(value: str, limit: int = 60) -> str:
    """A value for an error message: repr, shortened, so that a hostile value stays one line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(value)} characters)"


def _bounded(limit: int, what: str) -> Any:
    """A before-validator that refuses over-long strings before any pattern runs."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"{what} is {len(value)} characters long; the limit is {limit}")
        return value

    return BeforeValidator(check)


# --- URLs -----------------------------------------------------------------------------------

URL_SCHEMES = ("http", "https", "ftp", "file")
MAX_URL = 2048
# RFC 3986 characters, minus the quote and the dollar sign: nothing a shell, a kickstart or a
# YAML parser would read as syntax once the value is quoted for it.
_URL_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!&()*+,;=%]*$")
_URL_RE = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>[^/?#]*)(?P<rest>.*)$")


def url_problem(text: str) -> str | None:
    """Why text is not an acceptable repository/download URL, or None."""
    m = _URL_RE.fullmatch(text)
    if m is None or m["scheme"] not in URL_SCHEMES:
        return f"is not a URL with scheme {', '.join(URL_SCHEMES)} (e.g. http://host/path/)"
    bad = sorted({c for c in text if not _URL_CHARS.fullmatch(c)})
    if bad:
        shown = " ".join(repr(c) for c in bad[:5])
        return f"contains {shown}: whitespace, quotes, '$', '\\' and backticks are not allowed"
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        return "has a '%' that is not a %XX escape"
    if m["scheme"] == "file":
        if m["host"] not in ("", "localhost") or not m["rest"].startswith("/"):
            return "is not file:///absolute/path"
    elif "@" in m["host"]:
        return ("has credentials in it (user:password@): URLs land in kickstarts and RPMs, "
                "which are release assets; put them in the repository's auth file instead "
                "(dnf: username=/password= in a .repo file or sslclientcert=)")
    elif not m["host"]:
        return "has no host"
    return _host_port_problem(text)


def _host_port_problem(text: str) -> str | None:
    """A bracket that does not close, a port that is not a number in 1-65535."""
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        return f"has a bad host or port ({str(exc)[:60]})"
    if port == 0:
        return "has port 0"
    host = parts.hostname or ""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return "has a bracketed host that is not an IPv6 address"
    return None


def _url(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    problem = url_problem(value)
    if problem:
        raise ValueError(f"{_show(value)} {problem}")
    return value


# --- local paths or URLs (install sources, cloud images) ------------------------------------

MAX_PATH = 1024
_PATH_RE = re.compile(r"^[A-Za-z0-9\-._~/+,:@=]+$")


def _location(value: Any) -> Any:
    """A local path (file or folder) or a URL."""
    if not isinstance(value, str):
        return value
    if "://" in value:
        return _url(value)
    if not _PATH_RE.fullmatch(value):
        raise ValueError(f"{_show(value)} is neither a URL nor a plain path (letters, digits and "
                         "-._~/+,:@= only)")
    return value


# --- RPM package names and version pins -----------------------------------------------------

RPM_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$"
# [epoch:]version[-release]: version and release use rpm's own characters, never '-' or '%'.
_EVR_RE = re.compile(r"^(?:(?P<epoch>[0-9]{1,10}):)?(?P<version>[A-Za-z0-9._+~^]{1,64})"
                     r"(?:-(?P<release>[A-Za-z0-9._+~^]{1,64}))?$")


def _pin(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        # YAML reads 3.10 as 3.1, 0x1F as 31 and 010 as 8: the written version is lost.
        raise ValueError(  # noqa: TRY004 (pydantic reports ValueError only)
            f"YAML reads this as the number {value!r}, not a version: quote it (e.g. '3.10'); "
            "unquoted, 3.10 becomes 3.1 and 0x1F becomes 31")
    if not isinstance(value, str):
        return value
    m = _EVR_RE.fullmatch(value)
    if m is None or not m["version"][0].isalnum():
        raise ValueError(f"{_show(value)} is not an RPM version [epoch:]version[-release] "
                         "(e.g. 4.0.4 or 1:4.0.4-1.el8)")
    return value


# --- OpenSSH public keys --------------------------------------------------------------------

MAX_SSH_KEY = 16384
SSH_KEY_TYPES = (
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
)
_B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_COMMENT_RE = re.compile(r"^[A-Za-z0-9 @._+:,/=()\[\]-]*$")


def _ssh_strings(blob: bytes) -> list[bytes]:
    """The length-prefixed strings of an OpenSSH key blob (RFC 4253 section 6.6)."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("truncated")
        (size,) = struct.unpack(">I", blob[pos:pos + 4])
        if pos + 4 + size > len(blob):
            raise ValueError("truncated")
        out.append(blob[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def ssh_key_problem(text: str) -> str | None:
    """Why text is not one OpenSSH public key line `type base64 [comment]`, or None."""
    if "\n" in text or "\r" in text:
        return "spans more than one line: give exactly one key"
    parts = text.strip().split(" ", 2)
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        return ("is not an OpenSSH public key line 'TYPE BASE64 [COMMENT]' with TYPE one of "
                + ", ".join(SSH_KEY_TYPES))
    kind, data = parts[0], parts[1]
    if not _B64_RE.fullmatch(data):
        return "has a key part that is not base64"
    try:
        fields = _ssh_strings(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return "has a key part that is not a valid OpenSSH key blob"
    if not fields or fields[0] != kind.encode():
        return f"has a key blob that does not hold a {kind} key"
    if kind == "ssh-ed25519" and (len(fields) != 2 or len(fields[1]) != 32):
        return "has an ed25519 key that is not 32 bytes"
    if len(parts) == 3 and not _COMMENT_RE.fullmatch(parts[2]):
        return "has a comment with characters other than letters, digits, spaces and @._+:,/=()[]-"
    return None


def _ssh_key(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    problem = ssh_key_problem(value)
    if problem:
        raise ValueError(f"{_show(value)} {problem}")
    return value.strip()


# --- PostgreSQL parameters (GUCs) -----------------------------------------------------------

GUC_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"
MAX_GUC_VALUE = 1024
_GUC_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")


def _guc_value(value: Any) -> Any:
    if isinstance(value, str):
        if len(value) > MAX_GUC_VALUE:
            raise ValueError(f"parameter value is {len(value)} characters; the limit is "
                             f"{MAX_GUC_VALUE}")
        if not _GUC_VALUE_RE.fullmatch(value):
            raise ValueError(f"{_show(value)} has a newline or another control or non-ASCII "
                             "character: parameter values are one line of printable ASCII")
    elif isinstance(value, float) and not (math.isfinite(value) and abs(value) < 1e15):
        raise ValueError(f"{value} is not a finite number below 1e15")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
        raise ValueError("the number is out of PostgreSQL's range (64-bit)")
    return value


# --- whole numbers ----------------------------------------------------------------------------

def _whole(value: Any) -> Any:
    """Numbers are numbers: `true` is not 1, `1.5` not 1 and "30" is not 30."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is a boolean, not a number: write the number")  # noqa: TRY004
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not a whole number")  # noqa: TRY004
    if isinstance(value, str):
        raise ValueError(  # noqa: TRY004 (pydantic reports ValueError only)
            f"{_show(value)} is a string, not a number: write it without quotes")
    return value


# --- the annotated types the model uses -----------------------------------------------------

def _pattern(regex: str, what: str) -> Any:
    """An after-validator: value must fully match regex; the error says what was expected."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{_show(value)} is not {what}")
        return value

    return AfterValidator(check)


def _schema(regex: str) -> Any:
    """The pattern for `pgha-build schema` (editors); validation is the friendlier _pattern."""
    return Field(json_schema_extra={"pattern": f"^(?:{regex})$"})


Url = Annotated[str, _bounded(MAX_URL, "the URL"), AfterValidator(_url)]
Location = Annotated[str, _bounded(MAX_PATH, "the path or URL"), AfterValidator(_location)]
DomainName = Annotated[str, _bounded(MAX_FQDN, "the domain"), AfterValidator(_domain)]
NodeName = Annotated[str, _bounded(32, "the name"), _schema(NAME_RE), _pattern(
    NAME_RE, "a name of 1-32 lower-case letters, digits and '-' (starting with a letter)")]
RpmName = Annotated[str, _bounded(100, "the package name"), _schema(RPM_NAME_RE),
                    _pattern(RPM_NAME_RE, "an RPM package name")]
RpmPin = Annotated[str, BeforeValidator(_pin), Field(max_length=140)]
SshPublicKey = Annotated[str, _bounded(MAX_SSH_KEY, "the SSH key"), AfterValidator(_ssh_key)]
GucName = Annotated[str, _bounded(127, "the parameter name"), _schema(GUC_NAME_RE), _pattern(
    GUC_NAME_RE, "a PostgreSQL parameter name (letters, digits, _; one optional dot)")]
Int = Annotated[int, BeforeValidator(_whole)]
GucValue = Annotated[bool | int | float | str, AfterValidator(_guc_value)]
_UNIX, _ROLE, _NET = r"[a-z_][a-z0-9_-]{0,31}", r"[a-z][a-z0-9_-]{0,31}", \
    r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"
UnixName = Annotated[str, _bounded(32, "the user name"), _schema(_UNIX), _pattern(
    _UNIX, "a user name (lower-case letters, digits, _ and -)")]
RoleName = Annotated[str, _bounded(32, "the role name"), _schema(_ROLE), _pattern(
    _ROLE, "a role name (lower-case letters, digits, _ and -)")]
LibvirtNetwork = Annotated[str, _bounded(64, "the network name"), _schema(_NET), _pattern(
    _NET, "a libvirt network name")]


def _ipv4(value: Any) -> Any:
    if isinstance(value, ipaddress.IPv4Address):
        return value
    try:
        return ipaddress.IPv4Address(str(value))
    except ValueError:
        raise ValueError(f"{value} is not an IPv4 address") from None


def _ipv4_net(value: Any) -> Any:
    if isinstance(value, ipaddress.IPv4Network):
        return value
    try:
        return ipaddress.IPv4Network(str(value), strict=True)
    except ValueError as exc:
        raise ValueError(f"{value} is not an IPv4 network in CIDR form ({exc})") from None


IPv4 = Annotated[ipaddress.IPv4Address, BeforeValidator(_ipv4)]
IPv4Net = Annotated[ipaddress.IPv4Network, BeforeValidator(_ipv4_net)]
