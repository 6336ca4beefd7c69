"""The lab of the loaded cluster file, for the `lab` command modules (lab_cmds, lab_day2_cmds).

The lab modules are imported inside the functions, so `pgha-build --help` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from builder.cli import App
from builder.core.errors import PghaError

if TYPE_CHECKING:
    from builder.lab.lab import Lab


def lab_of(app: App, engine: str | None = None) -> Lab:
    """The lab of the cluster file; its engine (given, else the running lab's) decides the
    lab cluster (Patroni's watchdog is kept only on the vm engine)."""
    from builder.lab.lab import Lab, engine_of, lab_cluster

    lab_ = Lab.of(lab_cluster(app.cluster), app.output, app.runner, source=app.cluster)
    if (engine or engine_of(lab_)) == "vm":
        lab_ = Lab.of(lab_cluster(app.cluster, engine="vm"), app.output, app.runner,
                      source=app.cluster)
    return lab_


def running_lab(app: App) -> Lab:
    lab_ = lab_of(app)
    if not lab_.running():
        raise PghaError(f"lab '{lab_.cluster.name}' is not running", hint="pgha-build lab up")
    return lab_
