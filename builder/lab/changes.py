"""Day-2 changes in the lab: the same code as on a real cluster (builder.ops), aimed at the
lab's members. `target(lab)` is the lab's Target: its db nodes' REST URLs, the lab cluster's CA
and operator certificate, and a guard that sends nothing unless the address routes through the
lab bridge."""

from __future__ import annotations

from urllib.parse import urlsplit

from builder.lab import net
from builder.lab.lab import Lab
from builder.ops.target import Target


def target(lab: Lab) -> Target:
    members = {n.name: lab.rest_url(n, "") for n in lab.db_nodes}

    def guard(url: str) -> None:
        net.assert_local_route(lab.runner, lab.net, urlsplit(url).hostname or "")

    return Target(members, lab.rest_auth(), lab.rest_context(), guard)
