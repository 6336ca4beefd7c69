"""Where the seed comes from: an explicit --seed, else discovery in a fixed order.

Boundary: decides which source to use and logs it; readers.py does the reading. Order:
  1. kernel command line: pgha.seed=URL, or ds=nocloud[-net];s=URL (also seedfrom=URL);
  2. a block device labelled cidata/CIDATA (only when --root is /), mounted read-only;
  3. a seed directory: /etc/pgha/seed, then /var/lib/cloud/seed/nocloud (with pgha/seed.json);
  4. the URL in /etc/pgha/seed-url (first line that is not a comment).
A URL is fetched over https verified against the cluster CA, with the host's token
(urltrust.py); plain http only with the lab option.
The first source that is present wins. A present source that cannot be read is an error (it
does not fall through to the next one): the node was told where its seed is.
"""

import os

from pgha_agent import readers, run, urltrust
from pgha_agent.errors import SeedNotFound, SeedUnreadable
from pgha_agent.log import LOG

SEED_DIRS = ("/etc/pgha/seed", "/var/lib/cloud/seed/nocloud")
SEED_URL_FILE = "/etc/pgha/seed-url"
CIDATA_LABELS = ("cidata", "CIDATA")


class Found(object):
    """Raw seed bytes and a human description of where they came from."""

    def __init__(self, data, origin):
        if len(data) > readers.MAX_SEED_BYTES:
            raise SeedUnreadable("seed from {} is larger than {} bytes".format(
                origin, readers.MAX_SEED_BYTES))
        self.data = data
        self.origin = origin


class FetchOptions(object):
    """Retries and timeouts of URL seeds, and what decides whom to trust (urltrust.Settings)."""

    def __init__(self, settings, retries=10, timeout=10.0, delay=2.0):
        self.settings = settings
        self.retries = retries
        self.timeout = timeout
        self.delay = delay


def _is_url(text):
    return text.startswith(("http://", "https://"))


def _from_url(base, fetch, label):
    url = readers.seed_url(base)
    LOG.info("seed source: %s %s", label, readers.redact(url))
    trust = urltrust.for_url(url, fetch.settings, fetch)
    data = readers.fetch(url, fetch.retries, fetch.timeout, fetch.delay, trust)
    return Found(data, "{} {}".format(label, readers.redact(url)))


def from_path(path, label):
    """A seed directory, an ISO image, or a seed.json file."""
    if os.path.isdir(path):
        data = readers.read_dir(path)
        if data is None:
            raise SeedUnreadable("{} has no {}".format(path, readers.SEED_JSON))
        return Found(data, "{} directory {}".format(label, path))
    if not os.path.exists(path):
        raise SeedUnreadable("seed {} does not exist".format(path))
    if readers.is_iso(path):
        return Found(readers.read_iso(path), "{} ISO {}".format(label, path))
    data = readers.read_dir_file(path)
    return Found(data, "{} file {}".format(label, path))


def explicit(seed, fetch):
    """--seed PATH_OR_URL: no discovery."""
    if _is_url(seed):
        return _from_url(seed, fetch, "--seed URL")
    if seed.startswith("file://"):
        seed = seed[len("file://"):]
    LOG.info("seed source: --seed %s", seed)
    return from_path(os.path.abspath(seed), "--seed")


def cmdline_seed(cmdline):
    """The seed location named on a kernel command line, or None."""
    for token in cmdline.split():
        if token.startswith("pgha.seed="):
            return token[len("pgha.seed="):]
        if token.startswith("ds=nocloud"):
            for part in token.split(";")[1:]:
                key, _, value = part.partition("=")
                if key in ("s", "seedfrom") and value:
                    return value
    return None


def read_cmdline(root, cmdline):
    """The kernel command line: --cmdline if given, else <root>/proc/cmdline ("" if absent)."""
    if cmdline is not None:
        return cmdline
    try:
        with open(root.path("/proc/cmdline")) as fh:
            return fh.read()
    except OSError:
        LOG.debug("no %s to read", root.path("/proc/cmdline"))
        return ""


def _from_cmdline(root, cmdline, fetch):
    location = cmdline_seed(read_cmdline(root, cmdline))
    if location is None:
        return None
    if _is_url(location):
        return _from_url(location, fetch, "kernel command line")
    if location.startswith("file://"):
        location = location[len("file://"):]
    LOG.info("seed source: kernel command line %s", location)
    return from_path(root.path(location), "kernel command line")


def _from_device(root):
    if not root.live:
        LOG.debug("not probing block devices: --root is not /")
        return None
    if not run.which("blkid"):
        LOG.debug("blkid not found: not probing for a cidata device")
        return None
    for label in CIDATA_LABELS:
        result = run.run(["blkid", "-L", label], check=False)
        device = result.stdout.strip().splitlines()[0] if result.stdout.strip() else ""
        if result.returncode == 0 and device:
            LOG.info("seed source: block device %s (label %s), read-only", device, label)
            data = readers.read_device(device)
            return Found(data, "block device {} (label {})".format(device, label))
    return None


def _from_dirs(root):
    for node_dir in SEED_DIRS:
        data = readers.read_dir(root.path(node_dir))
        if data is not None:
            LOG.info("seed source: directory %s", node_dir)
            return Found(data, "directory {}".format(node_dir))
        LOG.debug("no seed in %s", node_dir)
    return None


def _from_url_file(root, fetch):
    path = root.path(SEED_URL_FILE)
    try:
        with open(path) as fh:
            lines = [x.strip() for x in fh if x.strip() and not x.strip().startswith("#")]
    except OSError:
        return None
    if not lines or not _is_url(lines[0]):
        raise SeedUnreadable("{} does not hold an http(s) URL".format(SEED_URL_FILE))
    return _from_url(lines[0], fetch, SEED_URL_FILE)


def discover(root, cmdline, fetch):
    """The first seed source present, in the documented order; SeedNotFound if none is."""
    for find in (lambda: _from_cmdline(root, cmdline, fetch), lambda: _from_device(root),
                 lambda: _from_dirs(root), lambda: _from_url_file(root, fetch)):
        found = find()
        if found is not None:
            return found
    raise SeedNotFound("no seed found: no pgha.seed= or ds=nocloud;s= on the kernel command line, "
                       "no cidata device, nothing in {}, no {}".format(
                           " or ".join(SEED_DIRS), SEED_URL_FILE))
