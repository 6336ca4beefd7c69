"""Reading the cluster file: every problem at once (field and cross-field, with lines), duplicate
keys, the size limit, and files that are not regular files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from builder.core.errors import ConfigError
from builder.model import loading, yamlfile

BAD = """\
name: pgha
network:
  cidr: 10.77.0.0/24
  gateway: 10.77.0.1
nodes:
  - {name: db1, roles: [db], address: 10.77.0.11}
  - {name: db2, roles: [db], address: 10.77.0.12}
  - {name: db3, roles: [db], address: 10.0.0.300}
  - {name: lb1, roles: [haproxy], address: 10.77.0.10}
load_balancer:
  virtual_ip: 10.77.0.255
patroni:
  tll: 30
  ttl: 24
"""


def _problems(tmp_path: Path, text: str) -> list[str]:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        loading.load(f)
    return info.value.problems


def test_field_and_cross_field_errors_come_together_with_lines(tmp_path: Path) -> None:
    probs = _problems(tmp_path, BAD)
    assert "nodes[2].address (line 8): 10.0.0.300 is not an IPv4 address" in probs
    assert any(p.startswith("patroni.tll (line 13): unknown field (did you mean 'ttl'?)")
               for p in probs), probs
    assert any(p.startswith("patroni.ttl (line 14): loop_wait + 2*retry_timeout = 25 exceeds "
                            "ttl 24") for p in probs), probs
    assert any(p.startswith("load_balancer.virtual_ip (line 11): 10.77.0.255 is the broadcast")
               for p in probs), probs
    # db3 was left out of the cross-field rules: no false "etcd needs at least 3 members"
    assert not any("etcd needs at least" in p for p in probs), probs


@pytest.mark.parametrize("vip,why", [("10.77.0.0", "network address"),
                                     ("10.77.0.1", "gateway"), ("10.77.0.12", "node db2")])
def test_virtual_ip_reserved_addresses(tmp_path: Path, vip: str, why: str) -> None:
    probs = _problems(tmp_path, BAD.replace("10.0.0.300", "10.77.0.13").replace(
        "10.77.0.255", vip).replace("  tll: 30\n", "").replace("ttl: 24", "ttl: 30"))
    assert len(probs) == 1 and why in probs[0], probs


def test_duplicate_keys_name_both_lines(tmp_path: Path) -> None:
    text = "name: a\npatroni:\n  ttl: 30\n  loop_wait: 10\n  ttl: 40\nname: b\n"
    probs = _problems(tmp_path, text)
    assert "patroni.ttl (line 5): key 'ttl' is given twice (lines 3 and 5); YAML would " \
           "silently keep the last one" in probs
    assert any(p.startswith("name (line 6): key 'name' is given twice (lines 1 and 6)")
               for p in probs)


def test_size_limit(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("admin:\n  ssh_key: ssh-ed25519 " + "A" * (yamlfile.MAX_BYTES + 10) + "\n")
    with pytest.raises(ConfigError, match=r"bytes; the limit is 1048576"):
        loading.load(f)


def test_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        loading.load(fifo)  # never blocks waiting for a writer
    with pytest.raises(ConfigError, match="is a directory"):
        loading.load(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        loading.load(tmp_path / "missing.yaml")


def test_not_utf8_and_deep_nesting(tmp_path: Path) -> None:
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        loading.load(f)
    f.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError):
        loading.load(f)


def test_hostile_key_stays_on_one_line(tmp_path: Path) -> None:
    probs = _problems(tmp_path, 'patroni:\n  parameters:\n    "a\\nrestapi:": 1\n')
    assert all("\n" not in p for p in probs)
    assert any("parameters['a\\nrestapi:'] (key)" in p for p in probs), probs


def test_alias_bomb_is_answered_quickly(tmp_path: Path) -> None:
    """Nested aliases (10 references per level, 12 levels) are never expanded or walked twice."""
    lines = ["x0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 12)]
    lines += ["patroni: {parameters: {p: *a11}}", "pins: {a: *a11}",
              "nodes: [{name: db1, roles: *a11, address: 10.77.0.11}]"]
    probs = _problems(tmp_path, "\n".join(lines) + "\n")
    assert any(p.startswith("x11 (line 12): unknown field") for p in probs)
    assert len(probs) <= loading.MAX_SHOWN + 1


def test_every_problem_of_a_hostile_file_at_once(tmp_path: Path) -> None:
    text = (
        'pins: {patroni: "4.0.4\\n%pre\\nid\\n%end"}\n'
        'repos:\n  baseos: "http://m/\\"\\n%pre\\n"\n'
        "patroni: {ttl: 24}\n"
        "load_balancer:\n  virtual_ip: 10.77.0.255\n  virtual_ip: 10.77.0.0\n"
    )
    probs = _problems(tmp_path, text)
    assert [p.split(" ")[0] for p in probs] == [
        "load_balancer.virtual_ip", "repos.baseos.url", "pins.patroni",
        "load_balancer.virtual_ip", "patroni.ttl"], probs
    assert probs[3] == ("load_balancer.virtual_ip (line 7): 10.77.0.0 is the network address "
                        "of 10.77.0.0/24")
    assert all("\n" not in p for p in probs)
