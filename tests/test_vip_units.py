"""The virtual IP without a running lab: the host path's nftables table (builder.lab.forward),
checked by the real `nft -c` (parsed and validated by the kernel, nothing applied); the lab's
entry is the VIP when there is one; `init --vip` writes the two-load-balancer reference."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from builder.lab import forward
from builder.lab.lab import Lab, lab_cluster
from builder.lab.net import LabNet
from builder.model.cluster import Cluster

TWO_LBS = {
    "name": "pg-lab",
    "nodes": [
        {"name": "db1", "roles": ["db"], "address": "10.77.0.11"},
        {"name": "db2", "roles": ["db"], "address": "10.77.0.12"},
        {"name": "db3", "roles": ["db"], "address": "10.77.0.13"},
        {"name": "lb1", "roles": ["haproxy"], "address": "10.77.0.10"},
        {"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"},
    ],
    "load_balancer": {"virtual_ip": "10.77.0.100"},
}


def net() -> LabNet:
    return LabNet.of(Cluster.model_validate(TWO_LBS))


def test_ruleset_forwards_only_loopback_and_the_lab_ports() -> None:
    text = forward.ruleset(net(), "10.77.0.100", [5000, 6000, 7000])
    assert text.startswith("table ip pgha_lab_pg_lab {")
    assert "ip daddr 127.0.0.1 tcp dport { 5000, 6000, 7000 } dnat to 10.77.0.100" in text
    assert ('ip saddr 127.0.0.0/8 ip daddr 10.77.0.100 oifname "br-pg-lab" snat to 10.77.0.1'
            in text)
    assert "type nat hook output" in text and "type nat hook postrouting" in text


@pytest.mark.integration
@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs root")
def test_nft_accepts_the_ruleset() -> None:
    if shutil.which("nft") is None:
        pytest.fail("nft is required: apt-get install nftables (scripts/setup)")
    text = forward.ruleset(net(), "10.77.0.100", [5000, 6000, 7000])
    ok = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(["nft", "-c", "-f", "-"], input=text.replace("dnat to", "dnat too"),
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_clients_enter_through_the_vip(tmp_path) -> None:
    two = Lab.of(lab_cluster(Cluster.model_validate(TWO_LBS)), tmp_path)
    assert [n.name for n in two.lb_nodes] == ["lb1", "lb2"]
    assert two.vip == "10.77.0.100" and two.entry == "10.77.0.100"
    one = {**TWO_LBS, "nodes": TWO_LBS["nodes"][:4]}
    single = Lab.of(lab_cluster(Cluster.model_validate(one)), tmp_path)
    assert single.vip is None and single.entry == "10.77.0.10"


def test_init_vip_writes_the_two_load_balancer_reference(tmp_path) -> None:
    from click.testing import CliRunner

    from builder.cli import cli
    from builder.model.loading import load

    path = tmp_path / "cluster.yaml"
    res = CliRunner().invoke(cli, ["init", "--vip", str(path)])
    assert res.exit_code == 0, res.output
    lab = Lab.of(lab_cluster(load(path)), tmp_path)
    assert [n.name for n in lab.lb_nodes] == ["lb1", "lb2"]
    assert lab.entry == "10.77.0.100" == str(lab.cluster.load_balancer.virtual_ip)
    res = CliRunner().invoke(cli, ["-c", str(path), "-o", str(tmp_path / "out"), "render",
                                   "--host", "lb2", "--file", "/etc/keepalived/keepalived.conf"])
    assert res.exit_code == 0, res.output
    assert "unicast_peer {\n        10.77.0.10\n" in res.output and "priority 140" in res.output
