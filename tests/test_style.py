"""The code checks DESIGN.md asks for: ruff (lint) over the project and mypy over builder/."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from builder.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff")
    assert ruff, "ruff is missing: run scripts/setup"
    proc = subprocess.run([ruff, "check", "builder", "tests", "bench"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_mypy_is_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "builder"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
