"""Code checks: ruff (lint) over the project, mypy over builder/, and no import circles between
builder's modules (top-level and lazy imports alike)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

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


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> Iterator[str]:
    """The builder modules one import statement loads (`from pkg import mod` loads pkg.mod)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
            base = ".".join([*anchor, base] if base else anchor)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    else:
        return
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            yield name


def _is_type_checking(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def import_graph() -> dict[str, set[str]]:
    """Every builder module (outside resources/) -> the builder modules it imports when it runs:
    at the top and inside functions (lazy); `if TYPE_CHECKING:` imports are for mypy only."""
    files = {_module_name(p): p for p in (PROJECT_ROOT / "builder").rglob("*.py")
             if "resources" not in p.relative_to(PROJECT_ROOT).parts}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        for block in [n for n in ast.walk(tree) if _is_type_checking(n)]:
            block.body = []  # annotations only: never run, so no circle at run time
        is_package = path.name == "__init__.py"
        graph[module] = {dep for node in ast.walk(tree)
                         for dep in _imported(node, module, is_package, known)
                         if dep != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None. Depth-first with colours."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep):], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_sees_lazy_and_indirect_circles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    tree = ast.parse("def f():\n    from builder.images import stage\n")
    known = {"builder", "builder.images", "builder.images.stage"}
    deps = {d for n in ast.walk(tree) for d in _imported(n, "builder.x", False, known)}
    assert deps == {"builder.images.stage"}
    assert _is_type_checking(ast.parse("if TYPE_CHECKING:\n    import builder\n").body[0])


def test_no_import_circles_between_builder_modules() -> None:
    graph = import_graph()
    assert "builder.images.common" in graph["builder.images.cloudimage"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


# The packages in layers, lowest first: a module imports only from its own package and from
# packages of lower layers (never upwards, never sideways). `if TYPE_CHECKING:` imports are for
# mypy only and do not count. The lab sits above the other capabilities: it runs what they make.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"core"}),
    frozenset({"model"}),
    frozenset({"stages"}),
    frozenset({"images", "pxe", "release", "f5", "ops"}),
    frozenset({"lab"}),
    frozenset({"cli"}),
)


def _package(module: str) -> str | None:
    """builder.images.stage -> images; builder (the top package) and builder.__main__ -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and _layer(parts[1]) >= 0) else None


def _layer(package: str) -> int:
    return next((i for i, layer in enumerate(LAYERS) if package in layer), -1)


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        src = _package(module)
        for dep in sorted(deps):
            dst = _package(dep)
            if src is None or dst is None or src == dst:
                continue
            if _layer(src) < 0 or _layer(dst) < 0 or _layer(dst) >= _layer(src):
                bad.append(f"{module} -> {dep}")
    return bad


def test_layer_check_sees_upward_sideways_and_unknown_packages() -> None:
    assert layer_violations({"builder.stages.x": {"builder.core.y", "builder.model.z"}}) == []
    assert layer_violations({"builder.core.x": {"builder.model.y"}}) == [
        "builder.core.x -> builder.model.y"]
    assert layer_violations({"builder.images.x": {"builder.pxe.y"}}) == [
        "builder.images.x -> builder.pxe.y"]
    assert layer_violations({"builder.newpkg.x": {"builder.core.y"}}) == [
        "builder.newpkg.x -> builder.core.y"]


def test_packages_import_only_downwards() -> None:
    """core < model < stages < capabilities (images, pxe, release, f5, ops) < lab < cli; a new
    package must be placed in LAYERS."""
    graph = import_graph()
    packages = {p for m in graph if (p := _package(m))}
    assert all(_layer(p) >= 0 for p in packages), f"place in LAYERS: {packages}"
    bad = layer_violations(graph)
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


# The modules that start processes, as builder/core/run.py's docstring lists them (and why).
PROCESS_STARTERS = {"builder.core.run", "builder.lab.hostpath", "builder.lab.nodes",
                    "builder.cli.lab_cmds", "builder.lab.preflight", "builder.lab.machine",
                    "builder.lab.machine_init", "builder.lab.monitor"}
_STARTS = {("subprocess", n) for n in ("Popen", "run", "call", "check_call", "check_output")}
_STARTS |= {("os", n) for n in ("execv", "execve", "execvp", "execvpe", "execl", "execlp",
                                "fork", "posix_spawn", "spawnv", "spawnve", "system", "popen")}


def test_processes_are_started_only_where_run_py_says() -> None:
    found = set()
    for path in (PROJECT_ROOT / "builder").rglob("*.py"):
        if "resources" in path.relative_to(PROJECT_ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name)
                    and (node.func.value.id, node.func.attr) in _STARTS):
                found.add(_module_name(path))
    assert found == PROCESS_STARTERS, "update builder/core/run.py's docstring and this list"
