"""Expected failures: each carries one clear line, an optional hint, and an exit code.

The CLI turns these into a single printed line (plus hint) and the exit code; anything else is a
bug and shows a traceback only with --debug.
"""

from __future__ import annotations

# Exit codes, documented in `pgha-build --help`.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_TOOL_MISSING = 3
EXIT_TOOL_FAILED = 4
EXIT_VALIDATION = 5

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 error; 2 invalid cluster file or usage; 3 a required tool is missing; "
    "4 an external tool failed; 5 a generated artifact failed validation."
)


class PghaError(Exception):
    """An expected failure with a one-line message and an optional hint."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(PghaError):
    """The cluster file is unreadable or invalid; `problems` lists every `path: message`."""

    exit_code = EXIT_CONFIG

    def __init__(
        self, message: str, problems: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint)
        self.problems = problems or []


class ToolMissing(PghaError):
    exit_code = EXIT_TOOL_MISSING


class ToolFailed(PghaError):
    exit_code = EXIT_TOOL_FAILED

    def __init__(self, message: str, argv: list[str], stderr_tail: str, hint: str | None = None):
        super().__init__(message, hint)
        self.argv = argv
        self.stderr_tail = stderr_tail


class ValidationFailed(PghaError):
    exit_code = EXIT_VALIDATION
