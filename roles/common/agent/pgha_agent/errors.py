"""The agent's expected failures and their exit codes (documented in --help).

Boundary: every failure the agent expects raises an AgentError subclass carrying its exit code;
cli.main turns it into one log line and that exit code. Anything else is a bug (exit 1).
"""

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_NO_SEED = 3
EXIT_BAD_SEED = 4
EXIT_APPLY = 5
EXIT_SERVICE = 6

EXIT_CODES_HELP = """exit codes:
  0  configured, or nothing to do (this instance id is already done)
  1  internal error (a bug: rerun with -v for the traceback)
  2  usage error (bad options)
  3  no seed found, or the seed could not be read (device, ISO, URL after retries)
  4  seed rejected (bad JSON, schema version, checksum, missing field, role not in the image);
     nothing was written
  5  applying the seed failed (writing a file, hostname, network, firewall, systemctl)
  6  a service did not start or its health check timed out (no done marker: the next run
     retries)
"""


class AgentError(Exception):
    """An expected failure: one clear line and an exit code."""

    exit_code = EXIT_INTERNAL


class UsageError(AgentError):
    exit_code = EXIT_USAGE


class SeedNotFound(AgentError):
    """No seed source is present at all."""

    exit_code = EXIT_NO_SEED


class SeedUnreadable(AgentError):
    """A seed source is present (or was given) but reading it failed."""

    exit_code = EXIT_NO_SEED


class SeedInvalid(AgentError):
    exit_code = EXIT_BAD_SEED


class ApplyFailed(AgentError):
    exit_code = EXIT_APPLY


class ServiceFailed(AgentError):
    exit_code = EXIT_SERVICE
