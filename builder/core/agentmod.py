"""Single modules of the first-boot agent (roles/common/agent/pgha_agent),
loaded by builder as they are, so one definition serves a node and the build host: readiness
(the lab) and envfile (deepcheck). Only modules that import nothing from pgha_agent load alone.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

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
