"""`lab up --engine vm`, for real: QEMU machines (TCG here) booted from the debian12 role images
that `pgha-build images --backend debian12` makes, each with its seed ISO as a CD-ROM.

With PGHA_VM_TESTS=1 (several minutes: the Debian tree by debootstrap the first time, the db
image, then a TCG boot): `test_one_vm_first_boot` boots ONE db VM of a 3-node cluster
and checks what only a VM shows, while its first boot waits for its etcd peers: the kernel found
the NoCloud CD-ROM by its label, NetworkManager has the seed's address, firewalld has the
seed's rich rules, and the host reaches nothing else.

The whole cluster (3 db + 1 haproxy VMs: minutes of emulation on a shared machine), the real
reboot and watchdog fencing run only with PGHA_VM_TESTS=1 (`bench/vm_bench.py` runs them and
writes the figures). Needs root and qemu-system-x86.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import labclusters
import pytest

from builder.lab import lab as labmod
from builder.lab import net, qemu, vmboot
from builder.lab.health import wait_until

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
              pytest.mark.skipif(shutil.which(qemu.QEMU) is None,
                                 reason="qemu-system-x86 is not installed"),
              pytest.mark.skipif(not os.environ.get("PGHA_VM_TESTS"),
                                 reason="VM boots under TCG take minutes: PGHA_VM_TESTS=1")]

CLUSTER = labclusters.cluster_data("vmci", "10.90.1", (40010, 40011, 40012))
# TCG on 2 shared cores: a boot to the guest agent took 2-6 minutes under load here.
BOOT_S = 900


@pytest.fixture(scope="module")
def one_vm() -> Iterator[labmod.Lab]:
    """db1 alone powered on (its peers stay off): the first boot runs up to its etcd wait."""
    import tempfile
    from pathlib import Path

    output = Path(tempfile.mkdtemp(prefix="pgha-vmci-"))
    lab = labclusters.make_lab(CLUSTER, output)
    lab = labmod.Lab.of(labmod.lab_cluster(lab.source or lab.cluster, engine="vm"), output)
    labmod.down(lab)
    try:
        labmod.make_dir(lab)
        taken = labmod.take_artifacts(lab)
        labmod._write_state(lab, engine="vm", **taken.as_state())
        net.up(lab.runner, lab.net, taps=True)
        vmboot.power_on(lab, ["db1"])
        yield lab
    finally:
        labmod.down(lab)
        shutil.rmtree(output, ignore_errors=True)


def _in(lab: labmod.Lab, *argv: str) -> str:
    return vmboot.exec_in(lab, "db1", list(argv))[1]


def test_one_vm_first_boot(one_vm: labmod.Lab) -> None:
    lab = one_vm
    machine = vmboot.vm(lab, "db1")
    wait_until("the guest agent", lambda: qemu.guest_ready(machine), BOOT_S, 2)
    address = lab.net.node("db1").address
    # NetworkManager applied the agent's keyfile: the seed's address on the NIC.
    wait_until("the seed's address in nmcli",
               lambda: f"{address}/24" in _in(lab, "nmcli", "-g", "IP4.ADDRESS", "device",
                                              "show", "eth0"), BOOT_S, 2)
    journal = _in(lab, "journalctl", "-u", "pgha-firstboot", "-o", "cat", "--no-pager")
    assert "seed source: block device /dev/sr0 (label cidata)" in journal, journal
    assert _in(lab, "blkid", "-o", "value", "-s", "LABEL", "/dev/sr0").strip() == "cidata"
    assert "boot: direct kernel" not in _in(lab, "cat", "/proc/cmdline")
    assert _in(lab, "hostname").strip().startswith("db1")
    # firewalld runs and has the seed's rich rules (PostgreSQL from the lab network only).
    wait_until("firewalld's rich rules",
               lambda: "rule family" in _in(lab, "firewall-cmd", "--list-rich-rules"), 120, 2)
    rules = _in(lab, "firewall-cmd", "--list-rich-rules")
    peer = lab.net.node("db2").address
    assert f'source address="{peer}/32" service name="' in rules, rules
    assert _in(lab, "firewall-cmd", "--state").strip() == "running"
    assert "Linux version" in machine.console.read_text(errors="replace")


def test_firewall_admits_a_named_source_and_refuses_another(one_vm: labmod.Lab) -> None:
    """From a probe namespace on the lab bridge: as db2 (named by the etcd peer rule) db1's
    etcd peer port answers; from an address no rule names, the same port is refused."""
    lab = one_vm
    target = lab.net.node("db1").address
    port = lab.cluster.ports.etcd_peer
    wait_until("db1's etcd listening",
               lambda: f":{port}" in _in(lab, "ss", "-Hltn", f"sport = :{port}"), 240, 2)
    allowed = _probe(lab, lab.net.node("db2").address, target, port)
    refused = _probe(lab, f"{lab.net.cidr.rsplit('.', 1)[0]}.50", target, port)
    assert allowed == "connected", allowed
    assert refused != "connected", refused


PROBE = ("import socket,sys\ns=socket.socket();s.settimeout(5)\n"
         "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('connected')\n"
         "except OSError as e:\n print(type(e).__name__, e.errno)\n")


def _probe(lab: labmod.Lab, source: str, target: str, port: int) -> str:
    """Connect from a throw-away namespace on the lab bridge that has address `source`."""
    ns, veth = "vmci-probe", "vpvmci-probe"
    run = lab.runner.run
    run(["ip", "netns", "add", ns])
    try:
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "link", "set", veth, "master", lab.net.bridge, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{source}/{lab.net.prefix}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        out = run(["ip", "netns", "exec", ns, "python3", "-c", PROBE, target, str(port)],
                  timeout=30).stdout.decode().strip()
    finally:
        run(["ip", "link", "del", veth], check=False)
        run(["ip", "netns", "del", ns], check=False)
    return out
