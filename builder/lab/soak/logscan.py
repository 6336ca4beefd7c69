"""What the nodes' logs say happened during a soak: pg_rewind runs and failures, promotions,
demotions for lost DCS access, and the replica failures Patroni users report after failovers
("requested starting point ... is ahead of the WAL flush position", timelines that are not
in the new primary's history). Counted from the bytes each log gained during the run.
"""

from __future__ import annotations

from pathlib import Path

# name -> text that marks it (case-sensitive, one count per line)
SIGNALS: dict[str, str] = {
    "pg_rewind_runs": "running pg_rewind",
    "pg_rewind_failures": "Failed to rewind",
    "promotions": "promoted self to leader",
    "dcs_lost_demotions": "demoting self because DCS is not accessible",
    "wal_ahead_of_flush": "requested starting point",
    "timeline_not_in_history": "is not a child of",
    "crash_recoveries": "database system was interrupted",
    "reinitialized": "removing data directory",
}


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
                for name, marker in SIGNALS.items():
                    if marker in line:
                        found[name] += 1
    return found
