"""Reading the bytes of pgha/seed.json from one place: a directory, an ISO file, a block device
or a URL (over the opener pgha_agent.urltrust builds).

Boundary: each reader returns the raw bytes (nothing is parsed here) or raises SeedUnreadable
with one line. Anything mounted or extracted lives in a temporary directory outside --root and
is unmounted/removed before the reader returns. URLs are retried with a timeout per attempt.
"""

import os
import shutil
import stat
import socket
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.parse

from pgha_agent import run
from pgha_agent.errors import ApplyFailed, SeedUnreadable
from pgha_agent.log import LOG

SEED_JSON = "pgha/seed.json"
MAX_SEED_BYTES = 16 * 1024 * 1024
ISO_MAGIC_OFFSET = 0x8001


def read_dir(directory):
    """Bytes of <directory>/pgha/seed.json, or None if the directory holds no seed."""
    path = os.path.join(directory, SEED_JSON)
    if not os.path.exists(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_SEED_BYTES + 1)
    except OSError as exc:
        raise SeedUnreadable("cannot read seed {}: {}".format(path, exc.strerror))


def is_iso(path):
    """True if the file has an ISO 9660 volume descriptor ("CD001" at 0x8001)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(ISO_MAGIC_OFFSET)
            return fh.read(5) == b"CD001"
    except OSError:
        return False


def read_iso(path):
    """Bytes of pgha/seed.json inside an ISO image (a file or a block device): xorriso (no root
    needed) or a loop mount."""
    if run.which("xorriso"):
        tmp = tempfile.mkdtemp(prefix="pgha-seed-")
        # xorriso takes a block device that is not an optical drive only as stdio:<path>.
        indev = "stdio:" + path if stat.S_ISBLK(os.stat(path).st_mode) else path
        try:
            out = os.path.join(tmp, "seed.json")
            run.run(["xorriso", "-osirrox", "on", "-indev", indev,
                     "-extract", "/" + SEED_JSON, out], error=SeedUnreadable)
            data = read_dir_file(out)
            if data is None:
                raise SeedUnreadable("ISO {} holds no /{}".format(path, SEED_JSON))
            return data
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if os.geteuid() == 0:
        return read_mounted(path, ["-o", "loop,ro"])
    raise SeedUnreadable("cannot read ISO {}: install xorriso or run as root (loop mount)".format(
        path))


def read_dir_file(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        return fh.read(MAX_SEED_BYTES + 1)


def read_device(device):
    """Bytes of pgha/seed.json on a block device, mounted read-only; where the kernel cannot
    mount it (no iso9660 support, as in a container) an ISO 9660 device is read with xorriso."""
    try:
        return read_mounted(device, ["-o", "ro"])
    except SeedUnreadable as exc:
        if not (is_iso(device) and run.which("xorriso")):
            raise
        LOG.info("cannot mount %s (%s): reading it with xorriso instead", device, exc)
        return read_iso(device)


def read_mounted(device, options):
    """Mount device read-only on a temporary directory, read the seed, unmount."""
    mnt = tempfile.mkdtemp(prefix="pgha-cidata-")
    try:
        run.run(["mount"] + options + [device, mnt], error=SeedUnreadable)
        try:
            data = read_dir(mnt)
        finally:
            try:
                run.run(["umount", mnt], error=ApplyFailed)
            except ApplyFailed as exc:
                LOG.warning("could not unmount %s: %s", mnt, exc)
        if data is None:
            raise SeedUnreadable("{} holds no {}".format(device, SEED_JSON))
        return data
    finally:
        if not os.path.ismount(mnt):
            shutil.rmtree(mnt, ignore_errors=True)


def seed_url(base):
    """The seed.json URL for a seed base URL (`http://h/db1/` -> `http://h/db1/pgha/seed.json`)."""
    if base.endswith(".json"):
        return base
    return base.rstrip("/") + "/" + SEED_JSON


def redact(url):
    """A URL without user:password, fit for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += ":{}".format(parts.port)
    return urllib.parse.urlunsplit((parts.scheme, "***@" + netloc, parts.path, parts.query, ""))


def _permanent(exc):
    """4xx answers (other than timeouts/throttling) will not get better by retrying."""
    return isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 \
        and exc.code not in (408, 425, 429)


def _get_once(url, timeout, trust, limit):
    """One GET through trust's opener (pgha_agent.urltrust: TLS context, token, no redirects),
    bounded as a whole (connect, headers and body) by `timeout` seconds: a server that answers a
    byte at a time cannot stretch an attempt. The request runs in a daemon thread; on timeout
    the thread is abandoned (it dies with the process, its socket timeout ends it sooner) and
    the attempt counts as failed."""
    box = {}

    def work():
        try:
            with trust.opener.open(trust.request(url), timeout=timeout) as resp:
                box["resp"] = resp
                box["data"] = resp.read(limit + 1)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="pgha-fetch")
    worker.daemon = True
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # abandoned: closing the response would wait for its reader's lock
        raise socket.timeout("no complete answer within {:g} s".format(timeout))
    if "error" in box:
        raise box["error"]
    return box["data"]


def certificate_failure(reason):
    """A TLS verification failure (wrong CA, wrong host name): permanent, never retried."""
    if isinstance(reason, ssl.CertificateError):
        return True
    return isinstance(reason, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(reason)


def _why(exc, trust):
    """(one-line reason, permanent?) for a failed attempt."""
    reason = getattr(exc, "reason", None) or exc
    if isinstance(exc, urllib.error.HTTPError):
        text = "HTTP {} {}".format(exc.code, exc.reason)
        if exc.code == 403:
            text += (" (the seed server hands a seed only to its own host's address with that "
                     "host's token: check pgha.seed_token= and the URL's host name)")
        return text, _permanent(exc)
    if certificate_failure(reason):
        return ("the server's certificate does not verify against the cluster CA {}: {}".format(
            trust.origin, reason), True)
    return reason, False


def fetch(url, retries, timeout, delay, trust, limit=MAX_SEED_BYTES):
    """GET url with up to `retries` extra attempts, `timeout` seconds each, backing off."""
    attempts = retries + 1
    for attempt in range(1, attempts + 1):
        try:
            data = _get_once(url, timeout, trust, limit)
            LOG.info("fetched %s (attempt %d/%d)", redact(url), attempt, attempts)
            return data
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason, permanent = _why(exc, trust)
            if permanent or attempt == attempts:
                raise SeedUnreadable("cannot fetch seed {} after {} attempt(s): {}".format(
                    redact(url), attempt, reason))
            wait = min(delay * (2 ** (attempt - 1)), 30.0)
            LOG.warning("fetching %s failed (attempt %d/%d: %s); retrying in %.1fs",
                        redact(url), attempt, attempts, reason, wait)
            time.sleep(wait)
    raise SeedUnreadable("cannot fetch seed {}".format(redact(url)))
