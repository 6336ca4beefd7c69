"""Who may fetch a seed from `pgha-build serve`, and over what.

A seed holds the host's passwords and private keys. `serve` hands it out only:
- over HTTPS, on `image.seed_port`, with a certificate issued by the cluster CA
  (pki/serve.crt; plain HTTP on the repos.pgha port only with `image.seeds_over_http`, a lab
  option that `check` and `serve` warn about);
- to a request from the host's own address that carries the host's token
  (`Authorization: Bearer <token>`), compared in constant time.

The token is HMAC-SHA256(serve.key, host) (128 bits shown as 32 hex digits); serve.key is 32
random bytes in output/<cluster>/serve.key (0600), made once. The token and the CA's SHA-256
fingerprint travel on the host's kernel command line (its PXE entry: `pgha.seed_token=`,
`pgha.seed_ca=`); the host kickstart carries the CA certificate, and its %post checks the
certificate against the fingerprint before it fetches the seed with `curl --cacert`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.paths import OutputPaths
from builder.model import pki
from builder.model.cluster import Cluster

KEY_FILE = "serve.key"
TOKEN_HEX = 32


def _key_path(out: OutputPaths) -> Path:
    return out.root / KEY_FILE


def token_key(out: OutputPaths) -> bytes:
    """The key all host tokens derive from (made once, 0600)."""
    path = _key_path(out)
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        text = secrets.token_hex(32)
        atomic_write(path, text + "\n", mode=0o600)
    except (OSError, UnicodeDecodeError) as exc:
        raise PghaError(f"cannot read {path}: {exc}", hint="restore it from your backup, or "
                        "delete it and run `pgha-build pxe` again (new tokens)") from None
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise PghaError(f"{path} is not 64 hex digits",
                        hint="delete it and run `pgha-build pxe` again (new tokens)")
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)
    return bytes.fromhex(text)


def host_token(key: bytes, host: str) -> str:
    return hmac.new(key, b"pgha-seed:" + host.encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]


def token_ok(key: bytes, host: str, header: str | None) -> bool:
    """The Authorization header carries the host's token (constant-time comparison)."""
    scheme, _, given = (header or "").partition(" ")
    expected = host_token(key, host)
    return hmac.compare_digest(given.strip().encode(), expected.encode()) and \
        scheme.lower() == "bearer"


def ca_pem(out: OutputPaths, cluster: Cluster) -> str:
    """The cluster CA certificate (made now if the build has none yet)."""
    if not cluster.tls.enabled:
        raise PghaError("seeds over HTTPS need the cluster CA, and TLS is off",
                        hint="turn tls on, or set image.seeds_over_http: true (lab only)")
    return pki.load_or_create_ca(out.pki, cluster.name, cluster.tls.ca_days).cert_pem


def ca_fingerprint(pem: str) -> str:
    der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def server_context(out: OutputPaths, cluster: Cluster, address: str) -> ssl.SSLContext:
    """A TLS context for `serve` with a certificate from the cluster CA naming `address`."""
    ca_pem(out, cluster)  # the same refusal when TLS is off
    ca = pki.load_or_create_ca(out.pki, cluster.name, cluster.tls.ca_days)
    ips = (address,) if _is_ip(address) else ()
    dns = () if ips else (address,)
    spec = pki.CertSpec("pgha-build serve", dns=dns, ips=ips, server=True, client=False)
    crt, key = out.pki / "serve.crt", out.pki / "serve.key"
    pki.ensure(ca, crt, key, spec, cluster.tls.cert_days, rotate=False)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(crt, key)
    return ctx


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
