"""Helpers shared by the tests (not part of the product)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.core.run import Runner


@dataclass
class RecordingRunner(Runner):
    """A runner that records every argv and still runs the real tool."""

    calls: list[list[str]] = field(default_factory=list)

    def run(
        self, argv: Sequence[str | Path], **kwargs: Any
    ) -> subprocess.CompletedProcess[bytes]:
        self.calls.append([str(a) for a in argv])
        return super().run(argv, **kwargs)

    def ran(self, tool: str) -> int:
        return sum(1 for c in self.calls if Path(c[0]).name == tool)
