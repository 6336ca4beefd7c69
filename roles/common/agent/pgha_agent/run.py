"""Running system commands: argv lists only, never a shell, logged at debug level.

Boundary: the only place that runs short-lived commands (systemctl, nmcli, hostnamectl,
firewall-cmd, blkid, mount, xorriso). Long-running role processes are started by
services.ProcessStarter, not here.
"""

import collections
import shlex
import shutil
import subprocess

from pgha_agent.errors import ApplyFailed
from pgha_agent.log import LOG

Result = collections.namedtuple("Result", "argv returncode stdout stderr")


def quote(argv):
    return " ".join(shlex.quote(a) for a in argv)


def which(tool):
    return shutil.which(tool)


def run(argv, check=True, timeout=120, error=ApplyFailed):
    """Run argv, capture its output; a non-zero exit raises `error` unless check is False."""
    LOG.debug("run: %s", quote(argv))
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True,
                              timeout=timeout)
    except FileNotFoundError:
        raise error("command not found: {}".format(argv[0]))
    except subprocess.TimeoutExpired:
        raise error("command timed out after {}s: {}".format(timeout, quote(argv)))
    result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:]
        raise error("command failed (exit {}): {}{}".format(
            proc.returncode, quote(argv), ": " + tail[0] if tail else ""))
    return result
