"""Numbers and silly values (issue 27): versions are strings, booleans are not numbers, upper
bounds, system accounts, a service name that is a node's, world-open networks and well-known
ports, credentials and bad ports in URLs, a 5000-digit number: one line each, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from builder.cli import cli
from builder.core.errors import ConfigError
from builder.model import loading, rules


def _problems(data: dict) -> list[str]:
    try:
        loading.from_data(data)
    except ConfigError as err:
        return err.problems
    return []


def _warnings(data: dict) -> list[str]:
    return [str(w) for w in rules.check(loading.from_data(data)).warnings]


@pytest.mark.parametrize(("data", "path", "needle"), [
    ({"pins": {"patroni": 3.10}}, "pins.patroni", "quote it"),
    ({"pins": {"patroni": 31}}, "pins.patroni", "quote it"),
    ({"tls": {"cert_days": True}}, "tls.cert_days", "a boolean, not a number"),
    ({"patroni": {"ttl": "30"}}, "patroni.ttl", "a string, not a number"),
    ({"patroni": {"ttl": 30.5}}, "patroni.ttl", "not a whole number"),
    ({"patroni": {"ttl": 10 ** 12}}, "patroni.ttl", "less than or equal to 3600"),
    ({"ports": {"postgres": True}}, "ports.postgres", "a boolean"),
    ({"admin": {"user": "postgres"}}, "admin.user", "system account"),
    ({"admin": {"user": "root"}}, "admin.user", "system account"),
    ({"tls": {"service_names": ["db2.pgha.lab"]}}, "tls.service_names[0]", "a node's name"),
    ({"tls": {"service_names": [f"s{i}.x" for i in range(40)]}}, "tls.service_names", "at most"),
    ({"network": {"client_networks": [f"10.{i}.0.0/16" for i in range(70)]}},
     "network.client_networks", "at most"),
    ({"repos": {"pgha": "https://u:pass@h.example/x"}}, "repos.pgha", "auth file"),
    ({"repos": {"pgha": "http://[::1/x"}}, "repos.pgha", "bad host or port"),
    ({"repos": {"pgha": "http://h:99999/x"}}, "repos.pgha", "bad host or port"),
    ({"patroni": {"parameters": {"x": 10 ** 30}}}, "patroni.parameters.x", "64-bit"),
])
def test_silly_value_is_refused_at_its_path(data: dict, path: str, needle: str) -> None:
    probs = _problems(data)
    assert any(p.startswith(path) and needle in p for p in probs), probs
    assert all("\n" not in p for p in probs)


def test_sixteen_thousand_etcd_members_are_refused_quickly() -> None:
    nodes = [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.{i // 250}.{i % 250 + 2}"}
             for i in range(16000)]
    probs = _problems({"nodes": nodes, "network": {"cidr": "10.77.0.0/16"}})
    assert any(p.startswith("nodes") and "at most 100" in p for p in probs), probs[:3]


def test_eleven_etcd_members_are_refused() -> None:
    nodes = [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{i + 20}"}
             for i in range(11)]
    assert any("at most 9" in p for p in _problems({"nodes": nodes}))


@pytest.mark.parametrize(("data", "needle"), [
    ({"network": {"client_networks": ["0.0.0.0/0"]}}, "network.client_networks[0]: 0.0.0.0/0"),
    ({"ports": {"postgres": 22}}, "ports.postgres: 22 is SSH's port"),
    ({"load_balancer": {"stats_port": 443}}, "load_balancer.stats_port: 443 is HTTPS"),
    ({"ports": {"patroni_rest": 900}}, "privileged port"),
])
def test_check_warns(data: dict, needle: str) -> None:
    assert any(needle in w for w in _warnings(data)), _warnings(data)


def test_defaults_warn_about_none_of_these() -> None:
    assert not any("port" in w or "client_networks" in w for w in _warnings({}))


def test_a_5000_digit_number_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("patroni:\n  ttl: " + "9" * 5000 + "\n")
    res = CliRunner().invoke(cli, ["-c", str(path), "check"])
    assert res.exit_code == 2, res.output
    assert "more than 4300 digits" in res.output and "Traceback" not in res.output


def test_credentials_in_a_repo_url_are_refused_and_not_shown(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("repos:\n  pgha: https://bob:s3cretpw@h.example/x\n")
    res = CliRunner().invoke(cli, ["-c", str(path), "check"])
    assert res.exit_code == 2 and "auth file" in res.output
    assert "s3cretpw" not in res.output
