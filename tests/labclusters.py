"""The lab test modules' clusters and their boot: each module runs its own lab on its own name,
network and ports (so a developer's `pgha-build lab` can run beside it), with the fast timing
profile to keep the suite short."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from builder.lab import lab as labmod
from builder.model.cluster import Cluster


def cluster_data(name: str, prefix: str, ports: tuple[int, int, int],
                 load_balancers: int = 1, virtual_ip: str | None = None) -> dict[str, Any]:
    """db1..db3 at <prefix>.11-13, lb1 at <prefix>.10 (lb2 at .9), gateway <prefix>.1."""
    lbs = [{"name": f"lb{i + 1}", "roles": ["haproxy"], "address": f"{prefix}.{10 - i}"}
           for i in range(load_balancers)]
    lb: dict[str, Any] = dict(zip(("primary_port", "replica_port", "stats_port"), ports,
                                  strict=True))
    if virtual_ip:
        lb["virtual_ip"] = virtual_ip
    return {
        "name": name,
        "profile": "fast",
        "network": {"cidr": f"{prefix}.0/24", "gateway": f"{prefix}.1", "dns": [f"{prefix}.1"]},
        "nodes": [*({"name": f"db{i}", "roles": ["db"], "address": f"{prefix}.{10 + i}"}
                    for i in (1, 2, 3)), *lbs],
        "load_balancer": lb,
    }


# `lab up`'s timings (builder.lab.lab.up) of the last boot of each cluster name.
UP_TIMINGS: dict[str, dict[str, float]] = {}


def make_lab(data: dict[str, Any], output: Path, **changes: object) -> labmod.Lab:
    cluster = labmod.lab_cluster(Cluster.model_validate({**data, **changes}))
    return labmod.Lab.of(cluster, output)


@contextmanager
def booted(data: dict[str, Any], **up_options: Any) -> Iterator[labmod.Lab]:
    """The lab up (from a mkdtemp output folder, mode 0700 as a clone under /root is: the lab
    must run from it), then down and its folder removed, also on failure. The boot bound is
    generous (180 s; about 25 s on an idle 2-core machine): it only says when to give up on a
    loaded machine, the boot figures are the bench's (bench/lab_bench.py)."""
    output = Path(tempfile.mkdtemp(prefix=f"pgha-{data['name']}-"))
    assert output.stat().st_mode & 0o777 == 0o700
    the_lab = make_lab(data, output)
    labmod.down(the_lab)
    try:
        UP_TIMINGS[data["name"]] = labmod.up(the_lab, **{"timeout": 180, **up_options})
        yield the_lab
    finally:
        labmod.down(the_lab)
        shutil.rmtree(output, ignore_errors=True)
