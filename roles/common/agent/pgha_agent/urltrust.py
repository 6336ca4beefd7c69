"""How a URL seed is fetched: which CA the server must prove itself with, which token is sent,
and whether plain http is allowed at all.

Boundary: builds the opener and headers readers.fetch uses; reads nothing but the kernel
command line, the CA/token files below and (with a pin only) the CA the seed server offers.
A seed holds the node's passwords and private keys, so:
- https only: the server's certificate must chain to the cluster CA (never the system trust
  store) and name the URL's host. The CA comes from --seed-ca FILE, else
  /etc/pgha/seed-ca.crt (the PXE host kickstart writes it), else, when the kernel command line
  pins it (pgha.seed_ca=<SHA-256 of the CA's DER>), from <server>/pki/ca.crt (`pgha-build
  serve`), fetched untrusted (and without the token) and accepted only if its fingerprint
  equals the pin. With a pin, a CA file must match it too.
- the host's token (pgha.seed_token=, else /etc/pgha/seed-token) goes as
  `Authorization: Bearer <token>`, as `pgha-build serve` expects; it is never logged.
- plain http only with the explicit lab option (pgha.seeds_over_http=1 or --seeds-over-http).
- no redirects (the token would follow them), no proxies.
"""

import hashlib
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request

from pgha_agent import readers
from pgha_agent.errors import SeedUnreadable
from pgha_agent.log import LOG

CA_FILE = "/etc/pgha/seed-ca.crt"
TOKEN_FILE = "/etc/pgha/seed-token"
CA_PATH = "/pki/ca.crt"  # where `pgha-build serve` offers the cluster CA on the seed port
MAX_CA_BYTES = 64 * 1024
_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Settings(object):
    """What the operator gave: kernel command line text, --seed-ca, --seeds-over-http."""

    def __init__(self, root, cmdline, ca_file=None, allow_http=False):
        self.root = root
        self.cmdline = cmdline or ""
        self.ca_file = ca_file
        self.allow_http = allow_http or cmdline_value(self.cmdline, "pgha.seeds_over_http") \
            in ("1", "yes", "true", "lab")


class Trust(object):
    """An opener (TLS context, no redirects, no proxies) and the request headers."""

    def __init__(self, context, token, origin):
        handlers = [urllib.request.ProxyHandler({}), _NoRedirect()]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        self.opener = urllib.request.build_opener(*handlers)
        self.headers = {"Authorization": "Bearer " + token} if token else {}
        self.origin = origin

    def request(self, url):
        return urllib.request.Request(url, headers=self.headers)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise SeedUnreadable("seed server answered {} {} (a redirect to {}): refused, a seed is "
                             "fetched only from the URL given".format(
                                 code, msg, _strip_query(newurl)))


def _strip_query(url):
    """The URL without user:password@, query or fragment: fit for a log line."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def cmdline_value(cmdline, key):
    """The value of the last KEY=VALUE token on a kernel command line, or None."""
    value = None
    for token in (cmdline or "").split():
        if token.startswith(key + "="):
            value = token[len(key) + 1:]
    return value


def _read_small(path, what):
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_CA_BYTES + 1)
    except OSError as exc:
        raise SeedUnreadable("cannot read {} {}: {}".format(what, path, exc.strerror))


def fingerprint(pem_bytes, where):
    """SHA-256 (hex) of the DER of the one certificate in PEM text."""
    try:
        text = pem_bytes.decode("ascii")
        if len(pem_bytes) > MAX_CA_BYTES or text.count("BEGIN CERTIFICATE") != 1:
            raise ValueError("not exactly one PEM certificate")
        der = ssl.PEM_cert_to_DER_cert(text.strip() + "\n")
    except (UnicodeDecodeError, ValueError) as exc:
        raise SeedUnreadable("the seed CA from {} is not a PEM certificate ({})".format(
            where, exc))
    return hashlib.sha256(der).hexdigest()


def _pin(settings):
    pin = cmdline_value(settings.cmdline, "pgha.seed_ca")
    if pin is not None and not _HEX64.match(pin):
        raise SeedUnreadable("pgha.seed_ca= on the kernel command line is not a SHA-256 (64 "
                             "lower-case hex digits): copy it from the host's PXE entry")
    return pin


def token(settings):
    """The host's seed token (32 hex digits) or None; never logged."""
    value = cmdline_value(settings.cmdline, "pgha.seed_token")
    where = "pgha.seed_token= on the kernel command line"
    if value is None and settings.root.exists(TOKEN_FILE):
        data = _read_small(settings.root.path(TOKEN_FILE), "seed token file")
        value = data.decode("ascii", "replace").strip()
        where = TOKEN_FILE
    if value is not None and not _HEX32.match(value):
        raise SeedUnreadable("{} is not a seed token (32 lower-case hex digits): copy it from "
                             "the host's PXE entry".format(where))
    return value


def _context(pem_text):
    context = ssl.create_default_context(cadata=pem_text)  # verifies chain and host name
    versions = getattr(ssl, "TLSVersion", None)  # Python 3.7+
    if versions is not None:
        context.minimum_version = versions.TLSv1_2
    else:  # platform-python 3.6
        context.options |= ssl.OP_NO_TLSv1 | ssl.OP_NO_TLSv1_1
    return context


def _ca_from_file(settings, pin):
    path = settings.ca_file or (settings.root.path(CA_FILE) if settings.root.exists(CA_FILE)
                                else None)
    if path is None:
        return None
    data = _read_small(path, "seed CA")
    have = fingerprint(data, path)
    if pin is not None and have != pin:
        raise SeedUnreadable("the seed CA {} (sha256 {}) does not match pgha.seed_ca={} on the "
                             "kernel command line: refusing it".format(path, have[:16],
                                                                       pin[:16]))
    return data.decode("ascii"), "{} (sha256 {})".format(path, have[:16])


def _ca_from_server(url, pin, fetch):
    """The CA the seed server offers, accepted only because its fingerprint equals the pin."""
    parts = urllib.parse.urlsplit(url)
    ca_url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, CA_PATH, "", ""))
    blind = ssl.create_default_context()
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # the pin below is what makes it trusted
    data = readers.fetch(ca_url, fetch.retries, fetch.timeout, fetch.delay,
                         Trust(blind, None, "pin"), limit=MAX_CA_BYTES)
    have = fingerprint(data, ca_url)
    if have != pin:
        raise SeedUnreadable("the CA offered at {} (sha256 {}) does not match pgha.seed_ca={} "
                             "on the kernel command line: refusing the seed server".format(
                                 ca_url, have[:16], pin[:16]))
    return data.decode("ascii"), "{} (matches pgha.seed_ca)".format(ca_url)


def for_url(url, settings, fetch):
    """The Trust to fetch `url` with, or SeedUnreadable saying why it cannot be trusted."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "http":
        if not settings.allow_http:
            raise SeedUnreadable(
                "refusing to fetch the seed over plain http (it holds the node's passwords and "
                "keys): use the https URL of `pgha-build serve`'s seed port, or in a lab only "
                "boot with pgha.seeds_over_http=1 (pgha-firstboot --seeds-over-http)")
        LOG.warning("seed over plain http (lab option pgha.seeds_over_http): passwords and keys "
                    "cross the network in clear text")
        return Trust(None, token(settings), "plain http (lab only)")
    pin = _pin(settings)
    found = _ca_from_file(settings, pin)
    if found is None and pin is not None:
        found = _ca_from_server(url, pin, fetch)
    if found is None:
        raise SeedUnreadable(
            "cannot verify the seed server: no cluster CA (boot with pgha.seed_ca=<sha256> from "
            "the host's PXE entry, or install the CA as {} or give --seed-ca FILE)".format(CA_FILE))
    pem, origin = found
    try:
        context = _context(pem)
    except (ssl.SSLError, ValueError) as exc:
        raise SeedUnreadable("the seed CA {} cannot be loaded: {}".format(origin, exc))
    secret = token(settings)
    LOG.info("seed server must prove itself with the cluster CA %s; %s", origin,
             "sending the host's token" if secret else "no host token (pgha.seed_token=) to send")
    return Trust(context, secret, origin)

