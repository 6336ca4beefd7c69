"""The pgha-firstboot command line: options, exit codes, and the top-level flow.

Boundary: parses argv, sets up logging, then: find the seed (sources), validate it (seed), stop
if this instance is already done, else apply it (apply). Every expected failure becomes one
line on stderr/journal and the exit code documented in --help; a traceback only with -v.
"""

import argparse
import glob
import os
import sys

from pgha_agent import __version__, apply, log, rootfs, seed, services, sources, urltrust
from pgha_agent.errors import (EXIT_CODES_HELP, EXIT_INTERNAL, EXIT_OK, AgentError,
                               SeedNotFound, SeedUnreadable, UsageError)
from pgha_agent.log import LOG

DESCRIPTION = """Configure this node from its pgha seed (docs/seed-format.md) and start its
services: hostname, static network, the seed's files (atomically, with owner and mode),
firewalld services, role services in order with health checks, then a done marker
/var/lib/pgha/done-<instance_id>. Runs once per instance id; a bad seed writes nothing."""

SEED_ORDER = """seed discovery (unless --seed is given), first present source wins:
  1. kernel command line: pgha.seed=URL or ds=nocloud;s=URL   (<root>/proc/cmdline or --cmdline)
  2. block device labelled cidata (only with --root /), mounted read-only
  3. directory /etc/pgha/seed, then /var/lib/cloud/seed/nocloud (must hold pgha/seed.json)
  4. URL in /etc/pgha/seed-url
URL seeds fetch <url>/pgha/seed.json, over https only, verified against the cluster CA
(never the system trust store) and sending the host's token, as `pgha-build serve` expects:
  CA     --seed-ca FILE, else /etc/pgha/seed-ca.crt, else the CA the seed server offers at
         /pki/ca.crt if its SHA-256 equals pgha.seed_ca= on the kernel command line (with
         pgha.seed_ca=, a CA file must match it too)
  token  pgha.seed_token= on the kernel command line, else /etc/pgha/seed-token
  http   refused unless pgha.seeds_over_http=1 or --seeds-over-http (lab only)
"""


def _url_options(p):
    """How URL seeds are fetched: retries, timeouts, whom to trust (urltrust.py)."""
    p.add_argument("--url-retries", type=int, default=10, metavar="N",
                   help="extra attempts when fetching a URL seed (default: 10)")
    p.add_argument("--url-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="timeout of each URL attempt (default: 10)")
    p.add_argument("--url-retry-delay", type=float, default=2.0, metavar="SECONDS",
                   help="first delay between URL attempts, doubled each time, at most 30 "
                        "(default: 2)")
    p.add_argument("--seed-ca", metavar="FILE",
                   help="the cluster CA (PEM) an https seed server must prove itself with "
                        "(default: /etc/pgha/seed-ca.crt under --root, else pgha.seed_ca=)")
    p.add_argument("--seeds-over-http", action="store_true",
                   help="lab only: allow a plain http seed URL (passwords and keys in clear "
                        "text); the same as pgha.seeds_over_http=1 on the kernel command line")


def parser():
    p = argparse.ArgumentParser(
        prog="pgha-firstboot", description=DESCRIPTION, epilog=SEED_ORDER + "\n" + EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", metavar="PATH_OR_URL",
                   help="use this seed (directory, ISO image, seed.json file or http(s) URL) "
                        "instead of discovery")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="treat DIR as the node's / for every path (default: /)")
    p.add_argument("--cmdline", metavar="TEXT",
                   help="kernel command line to use instead of <root>/proc/cmdline")
    p.add_argument("--services", choices=("systemd", "process"), default="systemd",
                   help="how to start role services: systemd units (a node) or direct "
                        "processes from the seed's argv (tests, lab) (default: systemd)")
    p.add_argument("--netns", metavar="NAME",
                   help="process starter only: run services under `ip netns exec NAME`")
    p.add_argument("--network", choices=("auto", "always", "never"), default="auto",
                   help="write the NetworkManager connection: auto = unless cloud-init "
                        "configured the network (default: auto)")
    p.add_argument("--health-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="how long to wait for each service's health checks (default: 300)")
    _url_options(p)
    p.add_argument("--check", action="store_true",
                   help="find and validate the seed, print a summary, change nothing")
    p.add_argument("--force", action="store_true",
                   help="apply even if this instance id is already done")
    p.add_argument("-v", "--verbose", action="store_true", help="debug output")
    p.add_argument("--version", action="version", version="pgha-firstboot " + __version__)
    return p


def _done_markers(root):
    return sorted(glob.glob(root.path(apply.MARKER_DIR + "/done-*")))


def _locate(root, args):
    """The seed, or None when there is nothing to do: no seed can be found or read but this node
    is already configured (a detached ISO, a seed server that is gone). Such a node does not
    wait on URL retries at every boot: it tries each source once."""
    configured = _done_markers(root) if not (args.check or args.force) else []
    settings = urltrust.Settings(root, sources.read_cmdline(root, args.cmdline),
                                 args.seed_ca and os.path.abspath(args.seed_ca),
                                 args.seeds_over_http)
    fetch = sources.FetchOptions(settings, 0 if configured else args.url_retries,
                                 args.url_timeout, args.url_retry_delay)
    if args.seed:
        return sources.explicit(args.seed, fetch)
    try:
        return sources.discover(root, args.cmdline, fetch)
    except (SeedNotFound, SeedUnreadable) as exc:
        if not configured:
            raise
        report = LOG.info if isinstance(exc, SeedNotFound) else LOG.warning
        report("%s; this node is already configured (%s): nothing to do", exc,
               os.path.basename(configured[-1]))
        return None


def _run(args):
    root = rootfs.Root(args.root)
    if args.services == "systemd" and not root.live and not args.check:
        raise UsageError("--services systemd needs --root / (use --services process with "
                         "--root {})".format(args.root))
    starter = services.make(args.services, root, args.netns)
    found = _locate(root, args)
    if found is None:
        return EXIT_OK
    checked = seed.validate(found.data, root)
    LOG.info("seed ok (%s): %s", found.origin, checked.summary())
    if args.check:
        return EXIT_OK
    marker = apply.marker_path(checked.instance_id)
    if root.exists(marker) and not args.force:
        LOG.info("instance %s is already configured (%s): nothing to do", checked.instance_id,
                 marker)
        return EXIT_OK
    apply.apply(root, checked, starter, found.origin, args.network, args.health_timeout)
    return EXIT_OK


def main(argv=None):
    args = parser().parse_args(argv)
    if not os.path.isdir(args.root):
        parser().error("--root {}: not a directory".format(args.root))
    if args.netns and args.services != "process":
        parser().error("--netns needs --services process")
    os.umask(0o022)
    log.setup(args.verbose, os.path.abspath(args.root) == "/")
    try:
        return _run(args)
    except AgentError as exc:
        LOG.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        LOG.error("interrupted")
        return 130
    except Exception as exc:  # a bug: one line, the traceback with -v
        LOG.error("internal error: %s: %s (rerun with -v for the traceback)",
                  type(exc).__name__, exc, exc_info=True)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
