"""The lab's pure parts, without root or processes: names, the lab cluster, the relay's
refusals, the writer's RTO arithmetic, the status table, the CLI's commands."""

from __future__ import annotations

import ipaddress

import pytest
from click.testing import CliRunner
from labkit.workload import Writer

from builder.cli import cli
from builder.core.context import Context
from builder.lab import net, relay
from builder.lab.lab import lab_cluster
from builder.lab.status import table
from builder.model import loading as config
from builder.model import tlsplan
from builder.model.platform import LAB_VENV
from builder.model.secrets import generate
from builder.stages import seeds


def test_lab_cluster_is_debian12_with_postgresql_15_and_the_venv_patroni(tmp_path) -> None:
    cluster = lab_cluster(config.load(None))
    assert (cluster.platform, cluster.postgres_version) == ("debian12", 15)
    assert cluster.repos.pgdg and "/15/" in cluster.repos.pgdg.url
    ctx = Context.create(cluster, tmp_path)
    sec = generate().with_tls(tlsplan.load_or_create(ctx.out, cluster))
    seed = seeds.render_seed(ctx, cluster.node("db1"), sec, root_prefix="/lab/db1/root")
    patroni = next(s for s in seed["services"] if s["name"] == "patroni")
    assert patroni["argv"][0] == f"{LAB_VENV}/bin/patroni"
    assert patroni["argv"][1] == "/lab/db1/root/etc/patroni/patroni.yml"
    conf = next(f["content"] for f in seed["files"] if f["path"] == "/etc/patroni/patroni.yml")
    assert 'certfile: "/lab/db1/root/etc/pgha/tls/postgres.crt"' in conf  # TLS is on in the lab
    assert lab_cluster(config.load(None), tls=False).tls.enabled is False


def test_profile_override_replaces_timings() -> None:
    fast = lab_cluster(config.load(None), profile="fast", synchronous=False)
    assert (fast.patroni.ttl, fast.patroni.loop_wait, fast.patroni.retry_timeout) == (20, 1, 3)
    assert fast.load_balancer.check.inter_ms == 1000
    assert fast.patroni.synchronous_mode is False


def test_network_names_fit_linux_limits() -> None:
    cluster = config.load(None).model_copy(update={"name": "a-very-long-cluster-name"})
    lab_net = net.LabNet.of(cluster)
    names = [lab_net.bridge, *(n.veth for n in lab_net.nodes)]
    assert all(len(n) <= net.IFNAMSIZ for n in names)
    assert len(set(names)) == len(names)
    assert lab_net.contains("10.77.0.11") and not lab_net.contains("10.78.0.11")


def test_relay_listens_on_loopback_and_forwards_only_into_the_lab() -> None:
    cidr = ipaddress.IPv4Network("10.77.0.0/24")
    assert relay.parse("127.0.0.1:5000=10.77.0.10:5000", cidr) == (
        "127.0.0.1", 5000, "10.77.0.10", 5000)
    with pytest.raises(SystemExit):
        relay.parse("127.0.0.1:5000=192.0.2.1:5000", cidr)
    with pytest.raises(SystemExit):
        relay.parse("0.0.0.0:5000=10.77.0.10:5000", cidr)


def test_writer_rto_is_fault_to_first_ack_after_the_outage() -> None:
    w = Writer(sql=None)  # type: ignore[arg-type]
    w.acked = [(1, 9.0), (2, 10.5), (3, 14.0), (4, 14.1)]
    w.failures = [10.6, 12.0]
    assert w.rto(10.0) == pytest.approx(4.0)
    w.failures = []
    assert w.rto(10.0) == pytest.approx(3.5)


def test_writer_counts_acks_on_a_demoted_primary() -> None:
    w = Writer(sql=None)  # type: ignore[arg-type]
    w.acked = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0)]
    w.servers = {1: "old", 2: "old", 3: "new", 4: "old", 5: "new"}
    assert w.late_acks("old", "new") == 1  # row 4: the old primary after the new one's first
    assert w.first_ack_on("new") == 3.0 and w.last_ack_before(4.5) == 4.0
    assert w.late_acks("new", "new") == 3  # same primary: every ack elsewhere counts
    w.servers = dict.fromkeys(range(1, 6), "old")
    assert w.late_acks("old", "new") == 0 and w.late_acks("old", "old") == 0


def test_status_table_when_down_and_up() -> None:
    assert "not running" in table({"cluster": "pgha", "running": False})
    data = {"cluster": "pgha", "running": True, "synchronous_mode": True, "watchdog": "off",
            "failover_ready": {"ready": True, "reason": "leader db1, streaming: db2, db3"},
            "members": [{"name": "db1", "host": "10.77.0.11", "role": "leader",
                         "state": "running", "timeline": 1, "lag": None}],
            "backends": [{"listener": "primary", "server": "db1", "status": "UP"}],
            "load_balancers": [
                {"name": "lb1", "address": "10.77.0.10", "haproxy": True, "vip": False},
                {"name": "lb2", "address": "10.77.0.9", "haproxy": True, "vip": True}],
            "virtual_ip": "10.77.0.100", "vip_holder": "lb2",
            "endpoints": {"read_write": "127.0.0.1:5000", "read_only": "127.0.0.1:6000",
                          "stats": "http://127.0.0.1:7000/", "entry": "10.77.0.100:5000/6000"}}
    text = table(data)
    assert "leader" in text and "primary    db1      UP" in text and "127.0.0.1:5000" in text
    assert "lb2        10.77.0.9      serves   HOLDS 10.77.0.100" in text
    assert "expected exactly one" not in text
    both = {**data, "vip_holder": None,
            "load_balancers": [{**lb, "vip": True} for lb in data["load_balancers"]]}
    assert "held by lb1, lb2 (expected exactly one)" in table(both)


def test_lab_commands_are_registered() -> None:
    result = CliRunner().invoke(cli, ["lab", "--help"])
    assert result.exit_code == 0
    for command in ("up", "status", "psql", "kill", "partition", "heal", "switchover", "down"):
        assert command in result.output


def test_haproxy_status_in_transition_still_serves() -> None:
    from labkit.scenarios import serving

    assert serving("UP") and serving("UP 1/3") and serving("UP 2/3")
    assert not serving("DOWN") and not serving("DOWN 1/2") and not serving("MAINT")


def test_forward_conflicts_are_listeners_not_client_connections() -> None:
    """A client connection whose ephemeral local port is one of the lab's ports is no
    conflict (a bind() probe said it was, so `lab up` failed at random); a listener is."""
    import socket

    from builder.lab import forward

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        listener = server.getsockname()[1]
        with socket.socket() as client:
            client.bind(("127.0.0.1", 0))
            client_port = client.getsockname()[1]
            client.connect(("127.0.0.1", listener))
            with socket.socket() as probe:  # what the old check did: it fails here
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                with pytest.raises(OSError):
                    probe.bind(("127.0.0.1", client_port))
            taken = forward.listening_ports()
            assert listener in taken
            assert client_port not in taken
