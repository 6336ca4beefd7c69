"""The lab proves TLS on every link (issue 14), on real etcd/Patroni/PostgreSQL/HAProxy:
verify-full SQL through HAProxy, plaintext refused, etcd without a client certificate refused,
plain HTTP to Patroni refused, and certificate rotation applied by reload (no restart, no
re-initialisation). Its own cluster name, network and ports; needs root."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import labclusters
import pytest

from builder.lab import lab as labmod
from builder.lab import tlsops
from builder.lab.health import http, wait_until

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

TLS_CLUSTER = labclusters.cluster_data("labtls", "10.80.0", (25000, 26000, 27000))


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(TLS_CLUSTER) as the_lab:
        assert the_lab.cluster.tls.enabled  # the default
        yield the_lab


def _ns(lab: labmod.Lab, node: str) -> list[str]:
    return ["ip", "netns", "exec", lab.net.node(node).netns]


def _psql(lab: labmod.Lab, conninfo: str, ns: list[str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": lab.secrets().superuser.password, "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run([*(ns or []), "psql", conninfo, "-Atc",
                           "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
                          capture_output=True, text=True, env=env, timeout=30, check=False)


def test_psql_verify_full_through_the_primary_port(lab: labmod.Lab) -> None:
    ca = lab.ctx.out.pki / "ca.crt"
    lb, port = lab.lb.address, lab.ports()["rw"]
    good = _psql(lab, f"host={lab.cluster.service_names()[0]} hostaddr={lb} port={port} "
                      f"user=postgres dbname=postgres sslmode=verify-full sslrootcert={ca}")
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("t|TLSv1.")
    by_address = _psql(lab, f"host={lb} port={port} user=postgres dbname=postgres "
                            f"sslmode=verify-full sslrootcert={ca}")
    assert by_address.returncode == 0, by_address.stderr  # the LB's address is in it too
    wrong = _psql(lab, f"host=elsewhere.example hostaddr={lb} port={port} user=postgres "
                       f"dbname=postgres sslmode=verify-full sslrootcert={ca}")
    assert wrong.returncode != 0 and "does not match host name" in wrong.stderr


def test_plaintext_to_5432_from_another_namespace_is_refused(lab: labmod.Lab) -> None:
    db1 = lab.net.node("db1").address
    plain = _psql(lab, f"host={db1} port=5432 user=postgres dbname=postgres sslmode=disable",
                  ns=_ns(lab, "lb1"))
    assert plain.returncode != 0
    assert "no encryption" in plain.stderr, plain.stderr
    tls = _psql(lab, f"host={db1} port=5432 user=postgres dbname=postgres sslmode=require",
                ns=_ns(lab, "lb1"))
    assert tls.returncode == 0, tls.stderr  # the same path over TLS is admitted


def _etcdctl(lab: labmod.Lab, *cert: str) -> subprocess.CompletedProcess[str]:
    pki = lab.ctx.out.pki
    return subprocess.run([*_ns(lab, "db2"), "etcdctl", "--dial-timeout=3s",
                           "--command-timeout=4s",
                           f"--endpoints=https://{lab.net.node('db1').address}:2379",
                           f"--cacert={pki / 'ca.crt'}", *cert, "endpoint", "health"],
                          capture_output=True, text=True, timeout=30, check=False,
                          env={**os.environ, "ETCDCTL_API": "3"})


def test_etcdctl_without_a_client_certificate_is_refused(lab: labmod.Lab) -> None:
    pki = lab.ctx.out.pki
    refused = _etcdctl(lab)
    assert refused.returncode != 0, refused.stdout
    admitted = _etcdctl(lab, f"--cert={pki / 'operator.crt'}", f"--key={pki / 'operator.key'}")
    assert admitted.returncode == 0 and "is healthy" in admitted.stdout + admitted.stderr


def test_plain_http_to_patroni_is_refused_and_changes_need_a_certificate(
        lab: labmod.Lab) -> None:
    node = lab.net.node("db1")
    https = lab.rest_url(node, "/health")
    code, _ = http("GET", https.replace("https://", "http://"), timeout=3)
    assert code == 0  # no HTTP answer at all on the TLS port
    code, _ = http("GET", https, timeout=3, context=lab.rest_context())
    assert code in (200, 503)
    ca_only = tlsops.ssl.create_default_context(cafile=str(lab.ctx.out.pki / "ca.crt"))
    code, body = http("POST", lab.rest_url(node, "/reload"), auth=lab.rest_auth(), body={},
                      timeout=3, context=ca_only)
    assert code == 403 and "certificate" in str(body)


def _patroni(lab: labmod.Lab, node: str) -> dict[str, object]:
    code, body = http("GET", lab.rest_url(lab.net.node(node), "/patroni"), timeout=3,
                      context=lab.rest_context())
    assert code == 200 and isinstance(body, dict)
    return body


def test_rotation_is_applied_by_reload_without_restart(lab: labmod.Lab) -> None:
    dbs = ["db1", "db2", "db3"]
    addr = {n: lab.net.node(n).address for n in dbs}
    ports = {"postgres": 5432, "patroni": 8008, "etcd": 2379}
    before = {(n, s): tlsops.served_serial(lab, addr[n], p, postgres=s == "postgres")
              for n in dbs for s, p in ports.items()}
    started = {n: _patroni(lab, n)["postmaster_start_time"] for n in dbs}
    system_id = {n: _patroni(lab, n)["database_system_identifier"] for n in dbs}
    done = tlsops.rotate_certs(lab)
    print(f"rotation: {len(done['reissued'])} certificate(s) applied in {done['applied_s']:.1f}s")
    assert {"db1/postgres", "db1/etcd", "lb1/haproxy"} <= set(done["reissued"])
    after: dict[tuple[str, str], int] = {}

    def rotated() -> bool:  # Patroni re-opens its REST socket on the new certificate
        for (n, s), p in ((k, ports[k[1]]) for k in before):
            try:
                after[(n, s)] = tlsops.served_serial(lab, addr[n], p, postgres=s == "postgres")
            except OSError:
                return False
        return all(after[k] != before[k] for k in before)

    wait_until("every service serving its new certificate", rotated, 30, 0.5)
    assert all(after[k] != before[k] for k in before), (before, after)
    for n in dbs:
        assert _patroni(lab, n)["postmaster_start_time"] == started[n]  # reloaded, not restarted
        assert _patroni(lab, n)["database_system_identifier"] == system_id[n]
    sql = lab.sql()
    assert sql.can_write() and sql.can_read()  # HAProxy still checks Patroni over TLS
