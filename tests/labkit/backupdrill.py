"""The total-loss drill (issue 21) for the lab test and the bench: a Writer inserting numbered
rows through the read-write port, every db node lost at once (SIGKILL, or a clean shutdown),
the nodes reinstalled from the same RPMs and seeds, `restore --latest` of the whole cluster,
then the acknowledged rows that did not come back: the RPO of a site loss. It is compared with
the rows acknowledged in the last `backup.archive_timeout` seconds before the loss (WAL leaves
the primary at least that often while there are writes)."""

from __future__ import annotations

import time
from typing import Any

from builder.lab import restore, siteloss
from builder.lab.lab import Lab
from labkit.workload import Writer


def site_loss(lab: Lab, clean: bool, write_s: float, timeout: float = 300) -> dict[str, Any]:
    """Run the drill on a healthy lab; returns the figures (rows, windows, timings)."""
    writer = Writer(lab.sql(), interval=0.02).start()
    writer.wait_acked(20)
    time.sleep(write_s)
    t_loss = siteloss.lose_all(lab, clean)
    writer.stop()
    t0 = time.monotonic()
    fresh = siteloss.reimage(lab, timeout)
    done = restore.restore(lab, None, timeout)
    window = lab.cluster.backup.archive_timeout
    acked = [(row, at) for row, at in writer.acked]
    lost = writer.lost()
    return {"clean": clean, "acked": len(acked), "lost": len(lost),
            "acked_after_loss": sum(1 for _, at in acked if at > t_loss),
            "window_s": window,
            "window_rows": sum(1 for _, at in acked if t_loss - window < at <= t_loss),
            "rate": round(len(acked) / max(1e-9, acked[-1][1] - acked[0][1]), 1) if acked else 0,
            "lost_span_s": round(t_loss - min((at for row, at in acked if row in set(lost)),
                                              default=t_loss), 1),
            "reimage_s": fresh["boot_s"], "restore": done,
            "recovered_s": round(time.monotonic() - t0, 1)}
