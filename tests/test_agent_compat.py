"""The agent runs on RHEL 8's platform-python 3.6 with the standard library only: vermin says
so (and is shown to catch a 3.8+ construct), every import is stdlib or pgha_agent, and Python
3.6 itself compiles every file when it is installed."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_agent_support import AGENT, AGENT_DIR, PY36

VERMIN_ARGS = ["-t=3.6-", "--no-tips", "--violations"]


def vermin(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("vermin")
    if exe is None:
        pytest.fail("vermin is required (pip install vermin; see .ci/requirements-test.txt)")
    return subprocess.run(
        [exe, *VERMIN_ARGS, str(path)], capture_output=True, text=True, check=False
    )


def agent_sources() -> list[Path]:
    return sorted(AGENT_DIR.rglob("*.py")) + [AGENT]


def test_vermin_finds_nothing_above_python36():
    res = vermin(AGENT_DIR)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Target versions not met" not in res.stdout


@pytest.mark.parametrize(
    "construct",
    [
        "import sys\nif (n := len(sys.argv)) > 1:\n    print(n)\n",
        "from dataclasses import dataclass\n",
        "from __future__ import annotations\n",
        "import subprocess\nsubprocess.run(['true'], capture_output=True)\n",
    ],
    ids=["walrus", "dataclasses", "future-annotations", "capture_output"],
)
def test_vermin_check_fails_on_a_newer_construct(tmp_path, construct):
    copy = tmp_path / "agent"
    shutil.copytree(AGENT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pgha_agent" / "newer.py").write_text(construct)
    res = vermin(copy)
    assert res.returncode != 0
    assert "newer.py" in res.stdout


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_standard_library_only_and_no_builder_imports():
    for path in agent_sources():
        foreign = _imports(path) - set(sys.stdlib_module_names) - {"pgha_agent"}
        assert not foreign, f"{path.name} imports {sorted(foreign)}"


def test_modules_have_docstrings_and_stay_small():
    for path in agent_sources():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no module docstring"
        assert len(path.read_text().splitlines()) < 400, path.name
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= 40, f"{path.name}:{node.name} is {length} lines"


def test_entry_script_uses_platform_python():
    first = AGENT.read_text().splitlines()[0]
    assert first == "#!/usr/libexec/platform-python"
    assert AGENT.stat().st_mode & 0o111


def test_python36_compiles_every_file(tmp_path):
    if not PY36.exists():
        pytest.skip("Python 3.6 is not installed here (vermin still checks)")
    for path in agent_sources():
        code = "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')"
        res = subprocess.run(
            [str(PY36), "-c", code, str(path)], capture_output=True, text=True, check=False
        )
        assert res.returncode == 0, res.stderr
