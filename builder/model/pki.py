"""The cluster's certificate authority and the certificates it issues (Python `cryptography`).

Boundary: key and certificate generation, their files under output/<cluster>/pki/, and reading
them back. Which certificates a node gets (names, owners) is decided by `builder.model.tlsplan`
from the roles; this module only issues what it is asked for.

Files (folder 0700): `ca.crt` (public: published as an artifact), `ca.key` (0600, never leaves
this folder), `nodes/<node>/<name>.crt|.key` (0600; each travels only in its node's seed) and
`operator.crt|.key`, a client certificate for the operator's patronictl/etcdctl/curl and the lab,
and `prometheus.crt|.key`, the client certificate Prometheus scrapes with (monitoring on).
The CA is made once, with the secrets, and never regenerated: a missing half or a file that
cannot be read back stops the build (new keys would lock the running cluster out). Node
certificates are re-issued from the same CA when `rotate` is asked for, when their names no
longer match the model (an address changed), or when they were not signed by this CA.

Keys are ECDSA P-256 (RHEL 8's DEFAULT crypto policy, OpenSSL 1.1.1, Go and Python accept
them); certificates are X.509 v3 with SANs, serverAuth and/or clientAuth.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.model import pkifiles

WARN_DAYS = 30
_BACKDATE = dt.timedelta(minutes=5)  # clock skew between the build host and the nodes


@dataclass(frozen=True)
class CertSpec:
    """What a certificate must say: subject CN, SANs and usages."""

    common_name: str
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    server: bool = True
    client: bool = True

    def sans(self) -> list[x509.GeneralName]:
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in self.ips]
        return names


@dataclass(frozen=True)
class Issued:
    """A key and its certificate, PEM text."""

    key_pem: str
    cert_pem: str

    @property
    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem.encode())

    @property
    def not_after(self) -> dt.datetime:
        return self.cert.not_valid_after_utc


@dataclass(frozen=True)
class Pki:
    """The CA (its key stays on the build host) and every certificate issued for the cluster."""

    ca: Issued
    operator: Issued
    nodes: dict[str, dict[str, Issued]] = field(default_factory=dict)  # node -> name -> pair
    reissued: tuple[str, ...] = ()  # "node/name" re-issued by this load
    prometheus: Issued | None = None  # Prometheus' client certificate (monitoring.enabled)

    def key_values(self) -> list[str]:
        """Every private key (PEM), e.g. to look for leaks."""
        keys = [self.ca.key_pem, self.operator.key_pem]
        keys += [self.prometheus.key_pem] if self.prometheus else []
        return keys + [p.key_pem for certs in self.nodes.values() for p in certs.values()]


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def make_ca(cluster: str, days: int) -> Issued:
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgha"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"pgha {cluster} cluster CA")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - _BACKDATE)
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return Issued(_key_pem(key), _cert_pem(cert))


def issue(ca: Issued, spec: CertSpec, days: int) -> Issued:
    """A new key and a certificate for it, signed by the CA."""
    ca_key = serialization.load_pem_private_key(ca.key_pem.encode(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca_cert = ca.cert
    key = _key()
    usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if spec.server else []) + (
        [ExtendedKeyUsageOID.CLIENT_AUTH] if spec.client else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pgha"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - _BACKDATE)
        .not_valid_after(min(_now() + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_key.public_key()), critical=False)
    )
    if spec.sans():
        builder = builder.add_extension(x509.SubjectAlternativeName(spec.sans()), critical=False)
    return Issued(_key_pem(key), _cert_pem(builder.sign(ca_key, hashes.SHA256())))


def signed_by(pair: Issued, ca: Issued) -> bool:
    try:
        pair.cert.verify_directly_issued_by(ca.cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def matches(pair: Issued, spec: CertSpec) -> bool:
    """The certificate says what the spec asks for (CN and the exact set of SANs), and its
    key is the one beside it."""
    cert = pair.cert
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = set(sans)
    except x509.ExtensionNotFound:
        have = set()
    key = serialization.load_pem_private_key(pair.key_pem.encode(), password=None)
    same_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo,
    ) == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return bool(cn) and cn[0].value == spec.common_name and have == set(spec.sans()) and same_key


# ---- files -------------------------------------------------------------------------------

def _corrupt(path: Path, why: str) -> PghaError:
    return PghaError(
        f"cluster CA file {path} is unusable: {why}",
        hint="restore output/<cluster>/pki/ from your backup; only if the cluster was never "
             "deployed, delete that folder to make a new CA",
    )


def _read_pair(crt: Path, key: Path) -> Issued:
    try:
        pair = Issued(key.read_text(), crt.read_text())
        _ = pair.cert
        serialization.load_pem_private_key(pair.key_pem.encode(), password=None)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise _corrupt(crt if not crt.exists() else key, f"cannot read it back "
                       f"({type(exc).__name__})") from None
    return pair


def _write_pair(crt: Path, key: Path, pair: Issued, crt_mode: int = 0o600) -> None:
    for folder in [*reversed(crt.parent.parents), crt.parent]:
        if not folder.exists():
            folder.mkdir(mode=0o700)  # pki/nodes/<node>: private like pki/ itself
    atomic_write(key, pair.key_pem, mode=0o600)
    atomic_write(crt, pair.cert_pem, mode=crt_mode)


def load_or_create_ca(folder: Path, cluster: str, days: int, adopt: bool = False) -> Issued:
    """The cluster's CA from folder/ca.crt + ca.key, made (once) when neither exists. An
    existing CA must sit in a private folder and be the one this tool made (pki/ca.origin),
    unless `adopt` (then its subject is logged and it is recorded as adopted)."""
    crt, key = folder / "ca.crt", folder / "ca.key"
    if crt.exists() and key.exists():
        pkifiles.check_private(folder, key)
        ca = _read_pair(crt, key)
        if not matches_key(ca):
            raise _corrupt(key, "the key does not belong to ca.crt")
        pkifiles.check_origin(folder, ca.cert, cluster, adopt)
        return ca
    if crt.exists() or key.exists():
        missing = key if crt.exists() else crt
        raise _corrupt(missing, "missing (the other half of the CA is there)")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    ca = make_ca(cluster, days)
    _write_pair(crt, key, ca, crt_mode=0o644)
    pkifiles.record_origin(folder, ca.cert, "made")
    return ca


def matches_key(pair: Issued) -> bool:
    key = serialization.load_pem_private_key(pair.key_pem.encode(), password=None)
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == pair.cert.public_key().public_bytes(*fmt)


def ensure(ca: Issued, crt: Path, key: Path, spec: CertSpec, days: int,
           rotate: bool) -> tuple[Issued, bool]:
    """The pair at crt/key if it still fits spec and the CA, else a new one (saved).
    Returns (pair, re-issued?)."""
    if crt.exists() and key.exists() and not rotate:
        try:
            pair = Issued(key.read_text(), crt.read_text())
            if signed_by(pair, ca) and matches(pair, spec):
                return pair, False
        except (OSError, UnicodeDecodeError, ValueError, TypeError):
            pass  # an unreadable node certificate is simply issued again
    pair = issue(ca, spec, days)
    _write_pair(crt, key, pair)
    return pair, True


def expiring(pairs: dict[str, Issued], now: dt.datetime | None = None,
             days: int = WARN_DAYS) -> list[tuple[str, dt.datetime]]:
    """(label, notAfter) of every certificate that expires within `days` (or has expired)."""
    limit = (now or _now()) + dt.timedelta(days=days)
    return [(label, p.not_after) for label, p in sorted(pairs.items()) if p.not_after <= limit]
