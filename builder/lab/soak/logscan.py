"""What the nodes' logs say happened during a soak: pg_rewind runs and failures, promotions,
demotions for lost DCS access, and the replica failures Patroni users report after failovers
("requested starting point ... is ahead of the WAL flush position", timelines that are not
in the new primary's history). Counted from the bytes each log gained during the run.
"""

from __future__ import annotations

import re
from pathlib import Path

# name -> pattern of the line that marks it (one count per line). A pg_rewind is counted once,
# when it exits (Patroni logs "running pg_rewind from <node> in progress" every loop while it
# runs); one that exits non-zero, or that Patroni reports failed, is a failure too.
SIGNALS: dict[str, re.Pattern[str]] = {name: re.compile(pattern) for name, pattern in {
    "pg_rewind_runs": r"pg_rewind exit code=",
    "pg_rewind_failures": r"pg_rewind exit code=[1-9]|Failed to rewind",
    "promotions": r"promoted self to leader",
    "dcs_lost_demotions": r"demoting self because DCS is not accessible",
    "wal_ahead_of_flush": r"requested starting point .* ahead of the WAL flush",
    "timeline_not_in_history": r"is not a child of",
    "crash_recoveries": r"database system was interrupted",
    "reinitialized": r"removing data directory",
    "disk_full": r"No space left on device",
}.items()}


def sizes(folders: list[Path]) -> dict[str, int]:
    """Every *.log file's size now (where the run starts reading)."""
    return {str(p): p.stat().st_size for f in folders for p in sorted(f.glob("*.log"))}


def count(folders: list[Path], start: dict[str, int]) -> dict[str, int]:
    """Each signal's lines in what the logs gained since `start` (a new file: all of it)."""
    found = dict.fromkeys(SIGNALS, 0)
    for folder in folders:
        for path in sorted(folder.glob("*.log")):
            try:
                with path.open("rb") as f:
                    offset = start.get(str(path), 0)
                    f.seek(offset if offset <= path.stat().st_size else 0)  # truncated: all
                    text = f.read().decode(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                for name, pattern in SIGNALS.items():
                    if pattern.search(line):
                        found[name] += 1
    return found
