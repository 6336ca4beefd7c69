"""The per-cluster CA and node certificates (builder.model.pki, tlsplan), their place in the
seeds, `check`'s warnings, and the firewall rules checked by the real firewall-offline-cmd."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from builder.cli import cli
from builder.core.context import Context
from builder.core.errors import PghaError, ValidationFailed
from builder.core.run import Runner
from builder.model import loading, pki, roles, tlsplan
from builder.stages import firewall, render, seeds, specs


def _ctx(tmp_path: Path, **data: object) -> Context:
    return Context.create(loading.from_data(data), tmp_path / "output")


def _sans(pair: pki.Issued) -> tuple[set[str], set[str]]:
    ext = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (set(ext.get_values_for_type(x509.DNSName)),
            {str(i) for i in ext.get_values_for_type(x509.IPAddress)})


def test_ca_is_made_once_and_reused(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    first = tlsplan.load_or_create(ctx.out, ctx.cluster)
    assert first is not None and first.reissued  # everything new
    again = tlsplan.load_or_create(ctx.out, ctx.cluster)
    assert again is not None and again.ca == first.ca and again.nodes == first.nodes
    assert again.reissued == ()
    assert (ctx.out.pki / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (ctx.out.pki / "ca.crt").stat().st_mode & 0o777 == 0o644
    assert ctx.out.pki.stat().st_mode & 0o777 == 0o700
    assert (ctx.out.pki / "nodes").stat().st_mode & 0o777 == 0o700
    assert (ctx.out.pki / "nodes" / "db1").stat().st_mode & 0o777 == 0o700
    ca = first.ca.cert
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_rotation_issues_new_node_certificates_from_the_same_ca(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    first = tlsplan.load_or_create(ctx.out, ctx.cluster)
    rotated = tlsplan.load_or_create(ctx.out, ctx.cluster, rotate=True)
    assert first is not None and rotated is not None
    assert rotated.ca == first.ca
    old, new = first.nodes["db1"]["postgres"], rotated.nodes["db1"]["postgres"]
    assert old.cert.serial_number != new.cert.serial_number and old.key_pem != new.key_pem
    assert pki.signed_by(new, first.ca)


def test_a_broken_or_half_ca_stops_the_build_and_is_never_replaced(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    tlsplan.load_or_create(ctx.out, ctx.cluster)
    key = ctx.out.pki / "ca.key"
    key.write_text("garbage\n")
    with pytest.raises(PghaError, match="ca.key is unusable"):
        tlsplan.load_or_create(ctx.out, ctx.cluster)
    assert key.read_text() == "garbage\n"
    key.unlink()
    with pytest.raises(PghaError, match="missing"):
        tlsplan.load_or_create(ctx.out, ctx.cluster, rotate=True)
    assert not key.exists()


def test_node_certificates_carry_names_addresses_and_client_names(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, load_balancer={"virtual_ip": "10.77.0.100"},
               tls={"service_names": ["db.example.com"]},
               nodes=[{"name": n, "roles": ["db"], "address": f"10.77.0.1{i}"}
                      for i, n in enumerate(["db1", "db2", "db3"], 1)]
               + [{"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"},
                  {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"}])
    tls = tlsplan.load_or_create(ctx.out, ctx.cluster)
    assert tls is not None
    dns, ips = _sans(tls.nodes["db2"]["postgres"])
    assert {"db2", "db2.pgha.lab", "pgha.pgha.lab", "db.example.com", "lb1.pgha.lab"} <= dns
    assert {"10.77.0.12", "10.77.0.100", "10.77.0.10", "10.77.0.9", "127.0.0.1"} <= ips
    assert "localhost" in dns  # Patroni's own replication connection to its PostgreSQL
    dns, ips = _sans(tls.nodes["db2"]["etcd"])
    assert dns == {"db2", "db2.pgha.lab", "localhost"} and ips == {"10.77.0.12", "127.0.0.1"}
    lb = tls.nodes["lb1"]["haproxy"].cert  # client towards Patroni, server of the stats page
    usage = lb.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert {"10.77.0.10", "10.77.0.100"} <= _sans(tls.nodes["lb1"]["haproxy"])[1]


def test_a_changed_address_reissues_only_that_certificate(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    first = tlsplan.load_or_create(ctx.out, ctx.cluster)
    data = ctx.cluster.model_dump(mode="json")
    data["nodes"][2]["address"] = "10.77.0.23"
    moved = Context.create(loading.from_data(data), ctx.out.root.parent)
    second = tlsplan.load_or_create(moved.out, moved.cluster)
    assert first is not None and second is not None
    assert set(second.reissued) == {"db3/postgres", "db3/etcd", "db3/pgbackrest"}
    assert "10.77.0.23" in _sans(second.nodes["db3"]["etcd"])[1]


def test_cert_days_is_the_validity(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, tls={"cert_days": 20})
    tls = tlsplan.load_or_create(ctx.out, ctx.cluster)
    assert tls is not None
    cert = tls.nodes["db1"]["postgres"].cert
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 20


def test_check_warns_of_certificates_expiring_within_30_days(tmp_path: Path) -> None:
    out = tmp_path / "output"
    (tmp_path / "c.yaml").write_text("tls:\n  cert_days: 20\n")
    (tmp_path / "long.yaml").write_text("tls:\n  cert_days: 90\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["-c", str(tmp_path / "long.yaml"), "-o", str(out), "seeds"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["-c", str(tmp_path / "long.yaml"), "-o", str(out), "check"])
    assert "expires" not in res.output
    ctx = _ctx(tmp_path, tls={"cert_days": 20})
    tlsplan.load_or_create(ctx.out, ctx.cluster, rotate=True)
    res = runner.invoke(cli, ["-c", str(tmp_path / "c.yaml"), "-o", str(out), "check"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if "expires on" in ln]
    assert any("nodes/db1/postgres.crt" in ln for ln in lines)
    assert not any("ca.crt" in ln for ln in lines)
    assert all("--rotate-certs" in ln for ln in lines)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3649)
    assert any("ca" == label for label, _ in
               pki.expiring(tlsplan.read_existing(ctx.out), now=later))


def test_tls_false_makes_no_ca_and_warns(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("tls: false\n")
    out = tmp_path / "output"
    res = CliRunner().invoke(cli, ["-c", str(tmp_path / "c.yaml"), "-o", str(out), "check"])
    assert res.exit_code == 0 and "warning: tls: TLS is off" in res.output
    ctx = _ctx(tmp_path, tls=False)
    seed = seeds.render_seed(ctx, ctx.cluster.node("db1"), tlsplan.load_secrets(ctx.out,
                                                                                ctx.cluster))
    assert not (out / "pgha" / "pki").exists()
    assert not any("/tls/" in f["path"] for f in seed["files"])
    assert all(c.get("url", "http:").startswith("http:") for c in seed["health"])


def test_each_key_travels_only_in_its_own_seed(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster)
    assert sec.tls is not None
    texts = {n.name: json.dumps(seeds.render_seed(ctx, n, sec)) for n in ctx.cluster.nodes}
    for node, certs in sec.tls.nodes.items():
        for pair in certs.values():
            body = pair.key_pem.strip().splitlines()[1]
            assert [n for n, t in texts.items() if body in t] == [node]
    for secret in (sec.tls.ca.key_pem, sec.tls.operator.key_pem):
        assert not any(secret.strip().splitlines()[1] in t for t in texts.values())
    files = {f["path"]: f for f in seeds.render_seed(ctx, ctx.cluster.node("lb1"), sec)["files"]}
    pem = files["/etc/pgha/tls/haproxy.pem"]
    assert (pem["owner"], pem["group"], pem["mode"]) == ("root", "haproxy", "0640")
    assert "PRIVATE KEY" in pem["content"] and "CERTIFICATE" in pem["content"]
    assert files["/etc/pgha/tls/ca.crt"]["content"] == sec.tls.ca.cert_pem


@pytest.mark.integration
def test_certificates_verify_with_openssl(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    tlsplan.load_or_create(ctx.out, ctx.cluster)
    crt = ctx.out.pki / "nodes" / "db1" / "postgres.crt"
    done = subprocess.run(["openssl", "verify", "-CAfile", str(ctx.out.pki / "ca.crt"),
                           "-purpose", "sslserver", str(crt)], check=False,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["openssl", "verify", "-CAfile", str(ctx.out.pki / "ca.crt"),
                           "-purpose", "sslserver", str(ctx.out.pki / "operator.crt")],
                          check=False, capture_output=True, text=True)
    assert done.returncode != 0  # the operator's certificate is for clients only


def test_rules_admit_each_port_only_from_its_sources(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, network={"client_networks": ["192.168.7.0/24"]})
    rules = firewall.node_rules(ctx.cluster, ctx.cluster.node("db1"))

    def admitted(service: str) -> set[str]:
        return {r.split('address="')[1].split('"')[0] for r in rules
                if f'service name="{service}"' in r}

    dbs = {"10.77.0.11/32", "10.77.0.12/32", "10.77.0.13/32"}
    assert admitted("pgha-etcd") == dbs
    assert admitted("pgha-patroni") == dbs | {"10.77.0.10/32"}
    assert admitted("pgha-postgresql") == dbs | {"10.77.0.10/32", "192.168.7.0/24"}
    lb = firewall.node_rules(ctx.cluster, ctx.cluster.node("lb1"))
    assert ('rule family="ipv4" source address="192.168.7.0/24" service name="pgha-haproxy" '
            'accept') in lb
    # lb1 is also the backup repository: its pgBackRest TLS server admits the db nodes only.
    assert not any("10.77.0.11/32" in r for r in lb if "pgha-pgbackrest-repo" not in r)
    assert {r.split('address="')[1].split('"')[0] for r in lb
            if 'service name="pgha-pgbackrest-repo"' in r} == dbs
    assert admitted("pgha-pgbackrest") == {"10.77.0.10/32"}


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("firewall-offline-cmd") is None, reason="needs firewalld")
def test_firewall_offline_cmd_loads_every_nodes_rules(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    context = render.base_context(ctx.cluster)
    for node in ctx.cluster.nodes:
        services = {Path(e.dest).stem: e.content.decode() for r in node.roles
                    for e in specs.firewall_files(roles.get(r), context)}
        firewall.check_rules(Runner(), services, firewall.node_rules(ctx.cluster, node),
                             node.name)
    bad = 'rule family="ipv4" source address="10.77.0.300/32" service name="pgha-etcd" accept'
    with pytest.raises(ValidationFailed, match="firewalld refused rule"):
        firewall.check_rules(Runner(), services, [bad], "lb1")
    with pytest.raises(ValidationFailed, match="no firewalld service named pgha-nope"):
        firewall.check_rules(Runner(), services, [firewall.rich_rule(
            ipaddress.IPv4Network("10.0.0.0/8"), "pgha-nope")], "lb1")
