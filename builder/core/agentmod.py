"""Single modules of the first-boot agent (roles/common/agent/pgha_agent),
loaded by builder as they are, so one definition serves a node and the build host: readiness
(the lab), envfile (deepcheck) and schema (every seed the builder renders is checked against the
seed schema the agent reads). `standalone` loads a module that imports nothing from pgha_agent
on its own; `package_module` imports one from the agent's package (pgha_agent in sys.modules).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cache
from types import ModuleType
from typing import Any

from builder.core.paths import AGENT_DIR


@cache
def standalone(name: str) -> ModuleType:
    """pgha_agent/<name>.py as a module of its own (not the pgha_agent package)."""
    spec = importlib.util.spec_from_file_location(f"pgha_agent_{name}",
                                                  AGENT_DIR / "pgha_agent" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def package_module(name: str) -> ModuleType:
    """pgha_agent.<name> imported from the agent's own package (the builder has no other
    pgha_agent)."""
    sys.path.insert(0, str(AGENT_DIR))
    try:
        return importlib.import_module(f"pgha_agent.{name}")
    finally:
        sys.path.remove(str(AGENT_DIR))


@cache
def seed_schema() -> dict[str, Any]:
    """The seed schema (pgha_agent/seed_schema.json), compiled by the agent's own loader."""
    loaded: dict[str, Any] = package_module("schema").load()
    return loaded
