"""Which RHEL 8 minor releases can run the chosen Patroni: the minor-version policy.

PGDG builds Patroni for EL-8 with python3.12 since 4.0.5-4PGDG ("Build Patroni with Python 3.12
on RHEL 8 and 9", pgdg-packaging/pgdg-rpms rpm/redhat/main/common/patroni/main/patroni.spec);
RHEL 8 ships python3.12 in AppStream from 8.10 only. Earlier builds used RHEL 8's python3 (3.6).
So: an install tree older than 8.10 is refused unless `pins.patroni` selects a build from before
the switch. The install-source preflight (images, pxe) applies this to the tree's .treeinfo.
The supported combinations are tabled in docs/rhel8.md and README.md.

No I/O: callers pass the cluster and the tree's version string.
"""

from __future__ import annotations

import re

from builder.model.cluster import Cluster

PY312_MINOR = (8, 10)  # first RHEL 8 minor with python3.12 in AppStream
FIRST_PY312_PATRONI = ((4, 0, 5), 4)  # patroni 4.0.5-4PGDG: the first EL-8 build on python3.12


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text))


def patroni_python(cluster: Cluster) -> str:
    """The Python the chosen Patroni build needs: "3.12" (PGDG's current EL-8 builds) or "3.6"
    (RHEL 8's platform python3) when pins.patroni selects an older build."""
    pin = cluster.pins.get("patroni")
    if pin is None:
        return "3.12"
    evr = pin.split(":")[-1]
    version, _, release = evr.partition("-")
    first_version, first_release = FIRST_PY312_PATRONI
    numbers = _numbers(version)[:3]
    if numbers < first_version:
        return "3.6"
    if numbers == first_version and release and _numbers(release)[:1] < (first_release,):
        return "3.6"
    return "3.12"


def minor_problem(cluster: Cluster, tree_version: str) -> str | None:
    """Why this RHEL 8 tree cannot install the cluster's Patroni, or None."""
    minor = _numbers(tree_version)[:2]
    if patroni_python(cluster) != "3.12" or minor >= PY312_MINOR:
        return None
    return (f"the install source is RHEL {tree_version}, but PGDG's Patroni for EL-8 is built "
            "for python3.12, which RHEL 8 has only from 8.10: the install would stop with "
            "'nothing provides python3.12'. Use RHEL 8.10 media (e.g. "
            "rhel-8.10-x86_64-dvd.iso), or pin a Patroni built for RHEL 8's python3.6 "
            "(pins: {patroni: 4.0.5-3PGDG.rhel8} or older; see docs/rhel8.md)")
