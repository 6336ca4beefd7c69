"""Sign the pgha RPMs (rpmsign --addsign) and the repository metadata (repomd.xml.asc).

The key (builder.model.signing): by default an RSA key made for the cluster on its first build
and kept in output/<cluster>/signing/ (0700, not an artifact: never in a seed, an RPM, an image,
the manifest or a release); or the organisation's key named by `signing.key_id` in
`signing.gnupghome`. Only the public key leaves: RPM-GPG-KEY-pgha beside the RPMs, which every
kickstart carries and imports from a file, and which the nodes' pgha.repo names with
gpgcheck=1 and repo_gpgcheck=1.

Reproducible: gpg signs at a fixed time, the later of SOURCE_DATE_EPOCH and the key's creation
(RSA PKCS#1 v1.5 signatures are deterministic), so the same inputs and the same key give
byte-identical signed RPMs. gpg runs with a short --homedir (a symlink in a fresh mkdtemp
folder: gpg-agent's socket path must stay under 108 bytes) and the agent it started is stopped
afterwards, unless the keyring is the organisation's own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.log import log
from builder.core.run import Runner, require
from builder.model.signing import KEY_FILE, NODE_KEY_PATH

KEY_ALGO = "rsa3072"  # RHEL 8's rpm 4.14 verifies RSA (and DSA) signatures, not EdDSA
_LOCK = threading.Lock()


@dataclass(frozen=True)
class SigningKey:
    """A secret key that can sign, found in `home`."""

    home: Path
    fingerprint: str
    created: int
    public: str  # ASCII-armored public key
    own_agent: bool  # the cluster's keyring: stop the gpg-agent we started

    @property
    def long_id(self) -> str:
        """The key id as `rpm -q --qf '%{RSAHEADER:pgpsig}'` prints it."""
        return self.fingerprint[-16:].lower()

    def sign_time(self, epoch: int) -> int:
        return max(epoch, self.created)


def cluster_home(ctx: Context) -> Path:
    return ctx.out.root / "signing"


@contextmanager
def gpg_home(home: Path, own_agent: bool) -> Iterator[Path]:
    """A short path to `home` for gpg (its agent socket lives there), the agent stopped after."""
    short = Path(tempfile.mkdtemp(prefix="pgha-gpg-"))
    link = short / "h"
    link.symlink_to(home.resolve())
    try:
        yield link
    finally:
        if own_agent and shutil.which("gpgconf"):
            Runner().run(["gpgconf", "--homedir", str(link), "--kill", "gpg-agent"],
                         check=False)
        shutil.rmtree(short, ignore_errors=True)


def _gpg(ctx: Context, home: Path, *args: str) -> str:
    proc = ctx.runner.run(["gpg", "--homedir", str(home), "--batch", "--no-tty",
                           "--pinentry-mode", "loopback", *args],
                          env={"LC_ALL": "C", "TZ": "UTC"})
    return proc.stdout.decode(errors="replace")


def _secret_key(ctx: Context, home: Path, key_id: str | None) -> tuple[str, int] | None:
    """(fingerprint, creation time) of a usable signing key `key_id` (None: the first) in
    `home`, or None."""
    proc = ctx.runner.run(["gpg", "--homedir", str(home), "--batch", "--no-tty", "--with-colons",
                           "--list-secret-keys", *(["--", key_id] if key_id else [])],
                          check=False,
                          env={"LC_ALL": "C"})
    if proc.returncode != 0:
        return None
    fields = [line.split(":") for line in proc.stdout.decode(errors="replace").splitlines()]
    for i, f in enumerate(fields):
        if f[0] == "sec" and f[1] not in ("e", "r", "d", "i") and "s" in f[11].lower():
            fpr = next((g[9] for g in fields[i + 1:] if g[0] == "fpr"), "")
            if fpr:
                return fpr.upper(), int(f[5])
    return None


def generate_key(ctx: Context, target: Path) -> None:
    """Make the cluster's key (no passphrase: the folder is the protection, like pki/ca.key)
    in a new folder, then move it to `target` (no half-made key is ever found there)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=".signing-", dir=target.parent))
    except OSError as exc:
        raise PghaError(f"signing: cannot make the cluster's signing key in {target}: "
                        f"{exc.strerror}",
                        hint="make the output folder writable (-o), or name the organisation's "
                             "key (signing.key_id)") from None
    try:
        with gpg_home(fresh, own_agent=True) as short:
            uid = f"pgha-build cluster {ctx.cluster.name} RPM signing"
            _gpg(ctx, short, "--passphrase", "", "--quick-generate-key", uid, KEY_ALGO,
                 "sign", "never")
        os.replace(fresh, target)
        log.info("signing: made the cluster's RPM signing key in %s", target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def signing_key(ctx: Context) -> SigningKey:
    """The key that signs this cluster's packages (made on first use when it is the cluster's).
    One per run: later steps reuse it."""
    found = ctx.results.get("signing-key")
    if isinstance(found, SigningKey):
        return found
    require("gpg")
    chosen = ctx.cluster.signing
    if chosen.key_id:
        home = Path(chosen.gnupghome or os.environ.get("GNUPGHOME")
                    or Path.home() / ".gnupg")
        own, wanted = False, chosen.key_id
    else:
        home, own, wanted = cluster_home(ctx), True, None
    with _LOCK:
        if own and not (home / "pubring.kbx").exists():
            generate_key(ctx, home)
        with gpg_home(home, own) as short:
            match = _secret_key(ctx, short, wanted)
            if match is None:
                raise _no_key(chosen.key_id, home)
            public = _gpg(ctx, short, "--armor", "--export-options", "export-minimal",
                          "--export", match[0])
    key = SigningKey(home, match[0], match[1], public, own)
    ctx.put("signing-key", key)
    return key


def _no_key(key_id: str | None, home: Path) -> PghaError:
    if key_id:
        return PghaError(f"signing: no usable secret key {key_id} in {home}",
                         hint="import the organisation's signing key there (gpg --import), or "
                              "set signing.gnupghome to the keyring that holds it; the key must "
                              "be able to sign and be neither expired nor revoked")
    return PghaError(f"signing: {home} holds no signing key of this cluster",
                     hint=f"remove {home} to have a new key made (then re-import the new "
                          f"{KEY_FILE} on every node), or restore it from your backup")


def sign_rpms(ctx: Context, key: SigningKey, rpms: list[Path]) -> None:
    """rpmsign --addsign each file in place, at the key's fixed signing time."""
    if not rpms:
        return
    require("rpmsign", "gpg")
    when = key.sign_time(ctx.epoch)
    with _LOCK, gpg_home(key.home, key.own_agent) as short:
        extra = f"--batch --pinentry-mode loopback --faked-system-time {when}!"
        ctx.runner.run(["rpmsign", "--addsign",
                        "--define", f"_gpg_name {key.fingerprint}",
                        "--define", f"_gpg_path {short}",
                        "--define", f"__gpg {shutil.which('gpg')}",
                        "--define", f"_gpg_sign_cmd_extra_args {extra}",
                        *[str(p) for p in rpms]],
                       env={"LC_ALL": "C", "TZ": "UTC", "GNUPGHOME": str(short)})


def sign_file(ctx: Context, key: SigningKey, path: Path) -> Path:
    """An armored detached signature `path`.asc (dnf's repo_gpgcheck reads repomd.xml.asc)."""
    require("gpg")
    sig = path.with_name(path.name + ".asc")
    sig.unlink(missing_ok=True)
    with _LOCK, gpg_home(key.home, key.own_agent) as short:
        args = ["--faked-system-time", f"{key.sign_time(ctx.epoch)}!", "--local-user",
                key.fingerprint, "--armor", "--detach-sign", "--output", str(sig), str(path)]
        _gpg(ctx, short, *args)
    return sig


def write_public_key(ctx: Context, key: SigningKey, folder: Path) -> Path:
    from builder.core.fsutil import atomic_write

    path = folder / KEY_FILE
    if not path.exists() or path.read_text() != key.public:
        atomic_write(path, key.public)
    return path


def kickstart_context(ctx: Context, role_packages: list[str]) -> dict[str, object]:
    """What kickstart/partials/post-pgha-verify.ks.j2 needs: the public key, where nodes keep
    it, and the pgha packages that must be installed and signed by it."""
    packages = ["pgha-common", *[p for p in role_packages if p != "pgha-common"]]
    return {"pgha_key": signing_key(ctx), "pgha_key_path": NODE_KEY_PATH,
            "pgha_packages": packages, "carried_keys": mirror_keys(ctx)}


def mirror_dir(ctx: Context) -> Path:
    """Where `pgha-build mirror` writes the mirror (builder/stages/mirror.py)."""
    return ctx.out.root / "mirror"


def mirror_keys(ctx: Context) -> dict[str, str]:
    """With repos.mirror: the sources' key files (name -> armored text) the kickstarts carry
    and write to /etc/pki/rpm-gpg (imported from files, nothing fetched); else empty."""
    if not ctx.cluster.repos.mirror:
        return {}
    keys = mirror_dir(ctx) / "keys"
    if not keys.is_dir():
        raise PghaError(f"repos.mirror is set but {keys} does not exist",
                        hint="run `pgha-build mirror` on the connected build host first (or copy "
                             "its output/<cluster>/mirror/ here), or unset repos.mirror")
    return {p.name: p.read_text() for p in sorted(keys.iterdir()) if p.name != KEY_FILE}
