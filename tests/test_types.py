"""The strict value types (builder/model/types.py): what each accepts and refuses, and that the
builder and the first-boot agent agree on host and domain names."""

from __future__ import annotations

import base64
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError
from test_agent_support import AGENT_DIR

from builder.core.errors import ConfigError
from builder.model import loading as config
from builder.model import types

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import seed as agent_seed

ED25519 = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJslPnSAmYU/kKRD6jsUrKoYsRzD9lF+C7sxQ1O7COLi "
           "ops@x")
ECDSA = ("ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBOii8unnZLHS4"
         "uk+Jp9jPo1uWF9UAIWV1DB2gIqMUN0KRA2dTFrZVjnEYbPhRGMxmqR1igBrdbJeyb6CZ6b5GwY= root@vm")


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _rsa_key(comment: str = "") -> str:
    blob = _ssh_string(b"ssh-rsa") + _ssh_string(b"\x01\x00\x01") + _ssh_string(b"\x00" + b"\xab" * 256)
    return f"ssh-rsa {base64.b64encode(blob).decode()} {comment}".strip()


def _ok(kind: object, value: object) -> bool:
    try:
        TypeAdapter(kind).validate_python(value)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("url", [
    "http://mirror.example.com/rhel8/BaseOS/x86_64/os/", "https://h.example:8443/r?x=1&y=2",
    "ftp://10.0.0.1/pub/", "file:///srv/repo/", "http://[fe80::1]:8080/repo/",
])
def test_url_accepts(url: str) -> None:
    assert _ok(types.Url, url)


@pytest.mark.parametrize("url", [
    "http://h/x\n%pre", 'http://h/"x', "http://h/'x", "http://h/$(id)", "http://h/`id`",
    "http://h/a b", "http://h/a\tb", "http://h/a\\b", "gopher://h/", "h/x", "http:///x",
    "file://host/x", "http://h/%zz", "http://h/x\n", "javascript:alert(1)", "http://h/" + "a" * 3000,
    "https://u:p@h.example/r", "https://token@h/", "http://[::1/x", "http://h:99999/x",
    "http://h:0/", "http://h:x/", "http://[zz]/",
])
def test_url_refuses(url: str) -> None:
    assert not _ok(types.Url, url)


@pytest.mark.parametrize("pin", ["4.0.4", "1:4.0.4-1.el8", "16.4-1PGDG.rhel8", "2.3~rc1", "4"])
def test_pin_accepts(pin: object) -> None:
    assert _ok(types.RpmPin, pin)


@pytest.mark.parametrize("pin", ["4.0.4\n%pre", "%{lua: os.execute('id')}", "1-2-3", "a b",
                                 "x:1", "-1", "1.0-", ":1", "", "1.0\n", True, 4, 3.10])
def test_pin_refuses(pin: object) -> None:
    assert not _ok(types.RpmPin, pin)


@pytest.mark.parametrize("key", [ED25519, ECDSA, _rsa_key(), _rsa_key("a@b (laptop)")])
def test_ssh_key_accepts(key: str) -> None:
    assert _ok(types.SshPublicKey, key)


@pytest.mark.parametrize("key", [
    ED25519 + '"\n%pre\nid\n%end', ED25519.replace("ops@x", 'ops"x'), ED25519 + "\n" + ECDSA,
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB9yZ3pxbm9vb29vb29vb29vb29vb29vb29vb29v x",  # short
    "ssh-dss AAAAB3NzaC1kc3M= x", "ssh-rsa notbase64!! x", ECDSA.replace("ecdsa", "ssh-rsa", 1),
    "ssh-ed25519", "", ED25519.replace("ops@x", "$(id)"), "ssh-ed25519 " + "A" * 20_000,
])
def test_ssh_key_refuses(key: str) -> None:
    assert not _ok(types.SshPublicKey, key)


def test_huge_ssh_key_is_refused_by_its_length_first() -> None:
    with pytest.raises(ConfigError) as info:
        config.from_data({"admin": {"ssh_key": "ssh-ed25519 " + "A" * 5_000_000}})
    assert any("the limit is" in p for p in info.value.problems)


@pytest.mark.parametrize("name,ok", [
    ("max_connections", True), ("pg_stat_statements.track", True), ("_x", True),
    ("a\nb", False), ("restapi:\n  x", False), ("a.b.c", False), ("1abc", False), ("a-b", False),
    ("a b", False), ("x" * 64, False),
])
def test_guc_names(name: str, ok: bool) -> None:
    assert _ok(types.GucName, name) is ok


@pytest.mark.parametrize("value,ok", [
    (200, True), ("1GB", True), (True, True), (0.9, True), ("'quoted' $x", True),
    ("a\nb", False), ("x\r", False), ("\x00", False), ("é", False), (float("nan"), False),
    ("x" * 2000, False), ([1], False), ({"a": 1}, False),
])
def test_guc_values(value: object, ok: bool) -> None:
    assert _ok(types.GucValue, value) is ok


@pytest.mark.parametrize("path,ok", [
    ("/srv/rhel-8.9-dvd.iso", True), ("http://h/rhel8/", True), ("rel/tree", True),
    ("/srv/a b.iso", False), ("/srv/x\n", False), ("http://h/$x", False), ("/srv/`x`", False),
])
def test_locations(path: str, ok: bool) -> None:
    assert _ok(types.Location, path) is ok


NAMES = st.text(alphabet="aZ09-._ \n\t:é", max_size=80) | st.from_regex(
    r"\A[a-z0-9-]{1,70}(\.[a-z0-9-]{1,70}){0,5}\Z")


@settings(max_examples=400, deadline=None)
@given(NAMES)
def test_builder_and_agent_agree_on_domain_names(name: str) -> None:
    builder_ok = types.domain_problem(name) is None
    agent_ok = agent_seed.name_problem(name) is None
    assert builder_ok == agent_ok, name


@pytest.mark.parametrize("name", [
    "pgha.lab", "a" * 63 + ".x", "a" * 64 + ".x", "a..b", ".a", "a.", "-a.b", "a-.b", "Ex.COM",
    "a_b.c", ".".join(["a" * 63] * 4), ".".join(["a" * 63] * 3) + "." + "a" * 61, "x\n", "",
])
def test_builder_and_agent_agree_on_corner_cases(name: str) -> None:
    assert (types.domain_problem(name) is None) == (agent_seed.name_problem(name) is None)


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"\A[a-z][a-z0-9-]{0,31}\Z"))
def test_node_names_the_builder_accepts_the_agent_accepts(name: str) -> None:
    if _ok(types.NodeName, name):
        assert agent_seed.LABEL.fullmatch(name)
        assert agent_seed.name_problem(f"{name}.pgha.lab") is None


def test_domain_the_agent_would_reject_fails_check() -> None:
    for domain in ("a..b", "x" * 64 + ".lab"):
        with pytest.raises(ConfigError) as info:
            config.from_data({"network": {"domain": domain}})
        assert any(p.startswith("network.domain") for p in info.value.problems)
    long = ".".join(["a" * 62] * 4)
    assert types.domain_problem(long) is None
    with pytest.raises(ConfigError) as info:
        config.from_data({"network": {"domain": long}})
    assert any("RFC 1123 allows 253" in p for p in info.value.problems)


@pytest.mark.parametrize("mac", ["52:54:00:12:34:56\n", "52:54:00:12:34:56\n%pre", "52:54:00:12:34"])
def test_mac_refuses_a_trailing_line_break(mac: str) -> None:
    nodes = [{"name": "db1", "roles": ["db"], "address": "10.77.0.11", "mac": mac}]
    with pytest.raises(ConfigError) as info:
        config.from_data({"nodes": nodes})
    assert any(p.startswith("nodes[0].mac") for p in info.value.problems)
