"""The model: defaults, profiles, field errors with YAML paths, and every cross-field rule."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from builder.core.errors import ConfigError
from builder.core.paths import EXAMPLE_CLUSTER
from builder.model import loading as config
from builder.model import rules as validate
from builder.model.cluster import Cluster, resolved_dict

BASE = yaml.safe_load((EXAMPLE_CLUSTER).read_text())


def problems_for(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.from_data(data)
    return info.value.problems


def edited(**changes: object) -> dict:
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        target = data
        keys = dotted.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return data


def test_default_is_the_reference_lab(cluster: Cluster) -> None:
    assert [n.name for n in cluster.nodes] == ["db1", "db2", "db3", "lb1"]
    assert cluster.postgres_version == 16 and cluster.platform == "rhel8"
    lb = cluster.load_balancer
    assert (lb.primary_port, lb.replica_port, lb.stats_port) == (5000, 6000, 7000)
    assert (cluster.patroni.ttl, cluster.patroni.loop_wait, cluster.patroni.retry_timeout) == (
        30, 5, 10)
    assert cluster.repos.pgdg and "/16/redhat/rhel-8" in cluster.repos.pgdg.url


def test_example_file_equals_builtin_default(cluster: Cluster) -> None:
    assert config.load(EXAMPLE_CLUSTER) == cluster


def test_fast_profile_fills_unset_timings_only() -> None:
    c = config.from_data({"profile": "fast"})
    assert (c.patroni.ttl, c.patroni.loop_wait, c.patroni.retry_timeout) == (20, 1, 3)
    assert (c.load_balancer.check.inter_ms, c.load_balancer.check.fall) == (1000, 2)
    c = config.from_data({"profile": "fast", "patroni": {"ttl": 25}})
    assert c.patroni.ttl == 25 and c.patroni.loop_wait == 1


def test_resolved_dict_carries_schema_version(cluster: Cluster) -> None:
    data = resolved_dict(cluster)
    assert data["schema_version"] == 1
    assert data["nodes"][0]["address"] == "10.77.0.11"
    assert Cluster.model_validate({k: v for k, v in data.items() if k != "schema_version"}) \
        == cluster


def test_bad_address_names_its_path() -> None:
    probs = problems_for(edited(nodes__2__address="10.0.0.300"))
    assert any(p.startswith("nodes[2].address") and "10.0.0.300 is not an IPv4 address" in p
               for p in probs), probs


def test_all_field_errors_reported_at_once() -> None:
    data = edited(nodes__0__address="x", postgres_version=12, network__cidr="10.0.0.1/33")
    probs = problems_for(data)
    paths = {p.split(" ")[0].rstrip(":") for p in probs}
    assert {"nodes[0].address", "postgres_version", "network.cidr"} <= paths


def test_unknown_field_suggests_the_close_one() -> None:
    probs = problems_for(edited(patroni={"tll": 30}))
    assert any("patroni.tll" in p and "did you mean 'ttl'" in p for p in probs), probs


def test_yaml_line_numbers_in_field_errors(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: x\nnodes:\n  - name: db1\n    roles: [db]\n    address: nope\n")
    with pytest.raises(ConfigError) as info:
        config.load(f)
    assert any("nodes[0].address (line 5)" in p for p in info.value.problems)


def test_malformed_yaml_gets_line_and_column(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: x\nnodes: [\n  - a: b\n")
    with pytest.raises(ConfigError) as info:
        config.load(f)
    assert "line" in info.value.message and "column" in info.value.message


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        config.load(f)


@pytest.mark.parametrize(
    ("changes", "path", "fragment"),
    [
        ({"nodes__1__name": "db1"}, "nodes[1].name", "already used"),
        ({"nodes__1__address": "10.77.0.11"}, "nodes[1].address", "already used"),
        ({"nodes__0__address": "10.78.0.5"}, "nodes[0].address", "outside network.cidr"),
        ({"nodes__0__address": "10.77.0.255"}, "nodes[0].address", "broadcast"),
        ({"nodes__0__address": "10.77.0.1"}, "nodes[0].address", "gateway"),
        ({"network__gateway": "10.9.9.9"}, "network.gateway", "outside"),
        ({"nodes__0__roles": ["dbx"]}, "nodes[0].roles[0]", "unknown role 'dbx'"),
        ({"nodes__0__roles": ["db", "db"]}, "nodes[0].roles", "listed twice"),
        ({"patroni__ttl": 15}, "patroni.ttl", "minimum of 20"),
        ({"patroni__loop_wait": 0}, "patroni.loop_wait", "minimum of 1"),
        ({"patroni__retry_timeout": 2}, "patroni.retry_timeout", "minimum of 3"),
        ({"patroni__ttl": 24}, "patroni.ttl", "loop_wait + 2*retry_timeout = 25 exceeds ttl 24"),
        ({"load_balancer__check": {"inter_ms": 10000, "fall": 3, "rise": 2}},
         "load_balancer.check", "demoted primary"),
        ({"ports__patroni_rest": 5432}, "ports.patroni_rest", "also used by ports.postgres"),
        ({"load_balancer__virtual_ip": "10.77.0.11"}, "load_balancer.virtual_ip", "address of node db1"),
        ({"admin__login": "none", "admin__ssh_key": ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJslPn"
                                                     "SAmYU/kKRD6jsUrKoYsRzD9lF+C7sxQ1O7COLi x")},
         "admin.login", "remove one of them"),
        ({"admin__login": "password"}, "admin.login", "'ssh_key' or 'none'"),
    ],
)
def test_cross_field_rules(changes: dict, path: str, fragment: str) -> None:
    probs = problems_for(edited(**changes))
    assert any(p.startswith(path + ":") and fragment in p for p in probs), probs


def test_etcd_needs_three_and_warns_on_an_even_count() -> None:
    data = edited()
    data["nodes"] = data["nodes"][:2] + data["nodes"][3:]
    assert any("etcd needs at least 3 members" in p for p in problems_for(data))
    data = edited()
    data["nodes"].append({"name": "db4", "roles": ["db"], "address": "10.77.0.14"})
    cluster = config.from_data(data)  # adding a 4th member is a step, not an error
    warnings = [str(w) for w in validate.check(cluster).warnings]
    assert any("an even number of etcd members (4: db1, db2, db3, db4)" in w
               for w in warnings), warnings


def test_no_database_node_is_an_error() -> None:
    data = edited()
    data["nodes"] = [n for n in data["nodes"] if n["roles"] != ["db"]]
    assert any("runs PostgreSQL" in p for p in problems_for(data))


def test_port_clash_on_colocated_roles() -> None:
    data = edited(load_balancer__primary_port=5432)
    data["nodes"][0]["roles"] = ["db", "haproxy"]
    assert any("load_balancer.primary_port" in p and "5432" in p for p in problems_for(data))


def test_warnings_do_not_fail(cluster: Cluster) -> None:
    report = validate.check(cluster)
    assert not report.errors
    assert any(w.path == "admin.ssh_key" for w in report.warnings)
    vip = config.from_data(edited(load_balancer__virtual_ip="10.77.0.100"))
    assert any(w.path == "load_balancer.virtual_ip" for w in validate.check(vip).warnings)


def test_mac_is_normalised_and_checked() -> None:
    c = config.from_data(edited(nodes__0__mac="AA-BB-CC-DD-EE-0F"))
    assert c.nodes[0].mac == "aa:bb:cc:dd:ee:0f"
    assert any("not a MAC" in p for p in problems_for(edited(nodes__0__mac="zz")))


def test_json_schema_describes_the_file() -> None:
    schema = Cluster.model_json_schema()
    assert "nodes" in schema["properties"] and "patroni" in schema["properties"]
    assert schema["additionalProperties"] is False
