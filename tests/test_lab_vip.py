"""The virtual IP, for real: two load balancers with keepalived in their namespaces (started by
their agents from the seeds), clients on the VIP through the host path (127.0.0.1 forwarded by
the kernel), and the VIP moving under a writer when the holder's HAProxy dies or hangs, when
the holder dies, and when it is cut off; and the holder replaced (`lab replace`: its disk
wiped, booted again from the same RPMs and seed). Nothing acknowledged may be lost, and the
VIP must stay where it went when the old holder comes back (nopreempt).

One lab on its own name, network and ports (VIP_CLUSTER), fast timing profile; needs root.
The last test takes it down and checks nothing is left (the fixture does too, on failure).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import changekit
import labclusters
import pytest
from labkit import lbscenarios
from labkit.scenarios import Outcome, healthy

from builder.lab import forward, lifecycle, vip
from builder.lab import lab as labmod
from builder.lab.readiness import leader, wait_failover_ready
from builder.lab.status import collect, lbs_ready, table

pytestmark = [pytest.mark.lab, pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")]

VIP_CLUSTER = labclusters.cluster_data("labv", "10.85.0", (15500, 16500, 17500),
                                        load_balancers=2, virtual_ip="10.85.0.100")


@pytest.fixture(scope="module")
def lab() -> Iterator[labmod.Lab]:
    with labclusters.booted(VIP_CLUSTER) as the_lab:
        yield the_lab


def check(out: Outcome) -> None:
    print(f"{out.name}: VIP {out.old} -> {out.new} in {out.vip_moved_s}s, writes back after "
          f"{out.rto:.1f}s, acknowledged {out.acked}, lost {len(out.lost)}; {'; '.join(out.notes)}")
    assert out.new != out.old and out.vip_moved_s is not None
    assert out.lost == [], f"acknowledged rows lost: {out.lost[:20]}"
    assert f"VIP on {out.new} after {out.old} was back" in out.notes, "nopreempt: it stays"
    assert not any("at once" in n for n in out.notes)


def test_keepalived_from_the_seed_holds_the_vip(lab: labmod.Lab) -> None:
    healthy(lab)
    holder = vip.holder(lab)
    assert holder in ("lb1", "lb2")
    for name in ("lb1", "lb2"):
        seed = (lab.node_dirs(name).seed / "pgha" / "seed.json").read_text()
        assert '"keepalived"' in seed
        assert (lab.node_dirs(name).root / "run" / "keepalived.pid").is_file()
    data = collect(lab)
    assert data["vip_holder"] == holder
    assert f"HOLDS {lab.vip}" in table(data)


def test_host_path_goes_through_the_vip_holder(lab: labmod.Lab) -> None:
    """127.0.0.1 is forwarded by the kernel to the VIP: PostgreSQL sees the connection come
    from the holder's HAProxy, and no relay process runs."""
    assert forward.present(lab.runner, lab.net)
    assert not (lab.dir / "relay.pid").exists()
    sql = lab.sql()
    seen = sql.query(sql.rw_port, "SELECT host(inet_client_addr())")[0][0]
    assert seen == lab.net.node(str(vip.holder(lab))).address


def test_hung_haproxy_loses_the_vip(lab: labmod.Lab) -> None:
    check(lbscenarios.hang_haproxy(lab))


def test_kill_haproxy_on_the_vip_holder(lab: labmod.Lab) -> None:
    check(lbscenarios.kill_haproxy(lab))


def test_kill_the_vip_holder(lab: labmod.Lab) -> None:
    check(lbscenarios.kill_holder(lab))


def test_partition_the_vip_holder(lab: labmod.Lab) -> None:
    check(lbscenarios.partition_holder(lab))


def test_replace_the_load_balancer_holding_the_vip(lab: labmod.Lab) -> None:
    """`lab replace` of the VIP holder under a writer through the VIP: the VIP moves to the
    other load balancer (keepalived), the replaced one boots from the same RPMs and seed and
    serves again as the backup (nopreempt: the VIP stays), nothing acknowledged is lost."""
    holder = vip.wait_holder(lab)
    primary = leader(lab)
    marks: dict[str, float] = {}

    def replace() -> dict:
        marks["t0"] = time.monotonic()
        return lifecycle.replace(lab, holder, 120)

    with vip.VipWatch(lab) as watch:
        figures = changekit.measure(lab, replace)
    done = figures.pop("result")
    moved = watch.moved(marks["t0"], holder)
    print(f"\nreplace VIP holder {holder}: VIP on {done['vip_holder']} after {moved}s, both load "
          f"balancers serving {done['wipe_s'] + done['ready_s']:.1f}s after the wipe began "
          f"({done['ready_s']}s after the boot), {figures}")
    assert figures["lost"] == [] and figures["primary_changes"] == 0
    assert moved is not None and not watch.split(marks["t0"])
    assert done["vip_holder"] not in (None, holder) and vip.holder(lab) == done["vip_holder"]
    assert lbs_ready(lab) and leader(lab) == primary
    assert (lab.node_dirs(holder).root / "run" / "keepalived.pid").is_file()
    wait_failover_ready(lab, 60)


def test_down_leaves_nothing_behind(lab: labmod.Lab) -> None:
    labmod.down(lab)
    assert labmod.leftovers(lab) == []
    assert not forward.present(lab.runner, lab.net)
