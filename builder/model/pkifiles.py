"""Who may have touched the cluster CA: the pki/ folder's owner and mode, and the CA's origin.

`pki/ca.origin` (JSON) records the fingerprint of the CA this tool made, or of a CA the user
adopted on purpose (`pgha-build seeds --adopt-ca`). A CA key that is not the recorded one is
refused: someone who can plant `ca.key` would otherwise get every node to trust their
certificates. A CA made before ca.origin existed is recognised by its subject (`O=pgha,
CN=pgha <cluster> cluster CA`) and recorded. Pure checks plus one small file; no model here.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from builder.core.errors import PghaError
from builder.core.fsutil import atomic_write
from builder.core.log import log

ORIGIN = "ca.origin"


def _fix(path: Path, what: str, hint: str) -> PghaError:
    return PghaError(f"{path} {what}", hint=hint)


def check_private(folder: Path, key: Path) -> None:
    """pki/ and pki/ca.key belong to this user (or root), and no one else may write the
    folder or read the key."""
    me = (os.getuid(), 0)
    for path, bits, mode in ((folder, 0o022, "700"), (key, 0o077, "600")):
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise _fix(path, "is a symlink", f"keep the CA in a real folder: restore {folder} "
                       "from your backup")
        if st.st_uid not in me:
            raise _fix(path, f"belongs to uid {st.st_uid}, not to you: whoever owns it can "
                       "swap the cluster CA", "chown it to yourself and check its content")
        if st.st_mode & bits:
            raise _fix(path, f"has mode {stat.S_IMODE(st.st_mode):04o}: others could read or "
                       "replace the CA key", f"chmod {mode} {path}; if others could read the "
                       "key, treat the CA as compromised (make a new one and redeploy)")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def record_origin(folder: Path, cert: x509.Certificate, how: str) -> None:
    body = {"how": how, "sha256": fingerprint(cert), "subject": cert.subject.rfc4514_string()}
    atomic_write(folder / ORIGIN, json.dumps(body, sort_keys=True) + "\n", mode=0o600)


def _recorded(folder: Path) -> str | None:
    try:
        data = json.loads((folder / ORIGIN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("sha256") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _ours(cert: x509.Certificate, cluster: str) -> bool:
    return cert.subject.rfc4514_string() == f"CN=pgha {cluster} cluster CA,O=pgha"


def check_origin(folder: Path, cert: x509.Certificate, cluster: str, adopt: bool) -> None:
    """Refuse a CA this tool did not make (or was not told to adopt)."""
    recorded, fp = _recorded(folder), fingerprint(cert)
    if recorded == fp:
        return
    subject = cert.subject.rfc4514_string()
    if adopt:
        log.warning("adopting the CA in %s: subject %s, sha256 %s", folder, subject, fp)
        record_origin(folder, cert, "adopted")
    elif recorded is None and _ours(cert, cluster):
        record_origin(folder, cert, "made")  # made before ca.origin was written
    else:
        raise PghaError(
            f"{folder / 'ca.key'} is not the CA pgha-build made for this cluster (subject "
            f"{subject[:120]!r}, sha256 {fp[:16]}...)",
            hint="restore pki/ from your backup; if it is your organisation's CA on purpose, "
                 "run `pgha-build seeds --adopt-ca` once")
