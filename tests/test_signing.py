"""Signed pgha RPMs: rpmsign with the cluster's (or the organisation's) key, the key never leaves
the secret area, a tampered or unsigned package is refused, gpgcheck is asked for everywhere,
and the kickstarts' %post verifies the installed packages against the key it carries.

Real tools throughout: gpg, rpmsign, rpm -K with a temporary rpmdb (`--dbpath`), rpm --root
installs, pykickstart's RHEL 8 parser; the %post section runs for real with bash."""

from __future__ import annotations

import configparser
import os
import shutil
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from pykickstart.parser import KickstartParser
from pykickstart.version import RHEL8, makeVersion

from builder.cli import cli
from builder.core.context import Context
from builder.core.errors import ConfigError, PghaError
from builder.images import cloudimage
from builder.model import loading as config
from builder.model import roles
from builder.model.signing import KEY_FILE, NODE_KEY_PATH
from builder.stages import kickstart, pipeline, signing

pytestmark = pytest.mark.integration


def rpm_of(ctx: Context, name: str) -> Path:
    (path,) = ctx.out.rpms.glob(f"{name}-[0-9]*.noarch.rpm")
    return path


def checksig(db: Path, *rpms: Path) -> subprocess.CompletedProcess[str]:
    """`rpm -K` as dnf's gpgcheck asks it: a signature by an imported key is required."""
    return subprocess.run(["rpm", "--dbpath", str(db), "--define", "_pkgverify_level signature",
                           "-K", *map(str, rpms)], capture_output=True, text=True, check=False)


@pytest.fixture
def keydb(built: Context, tmp_path: Path) -> Path:
    """A temporary rpmdb holding only the pgha key, imported from the built key file."""
    db = tmp_path / "rpmdb"
    db.mkdir()
    subprocess.run(["rpm", "--dbpath", str(db), "--import", str(built.out.rpms / KEY_FILE)],
                   check=True)
    return db


def test_every_package_is_signed_by_the_cluster_key(built: Context, keydb: Path) -> None:
    rpms = sorted(built.out.rpms.glob("*.rpm"))
    assert len(rpms) == 8
    result = checksig(keydb, *rpms)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("digests signatures OK") == 8
    key = signing.signing_key(built)
    sig = subprocess.run(["rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}", str(rpms[0])],
                         capture_output=True, text=True, check=True).stdout
    assert sig.endswith(f"Key ID {key.long_id}")


def test_a_tampered_or_unsigned_rpm_is_refused(built: Context, keydb: Path,
                                              tmp_path: Path) -> None:
    good = rpm_of(built, "pgha-role-db")
    tampered = tmp_path / "tampered.rpm"
    data = bytearray(good.read_bytes())
    data[len(data) - 200] ^= 0x01  # one bit of the payload
    tampered.write_bytes(bytes(data))
    result = checksig(keydb, tampered)
    assert result.returncode != 0 and "NOT OK" in result.stdout, result.stdout
    unsigned = tmp_path / "unsigned.rpm"
    shutil.copy(good, unsigned)
    subprocess.run(["rpmsign", "--delsign", str(unsigned)], capture_output=True, check=True)
    result = checksig(keydb, unsigned)
    assert result.returncode != 0 and "SIGNATURES NOT OK" in result.stdout, result.stdout
    # and a good one is refused without the key: the check is the key, not the format
    empty = tmp_path / "empty-db"
    empty.mkdir()
    assert checksig(empty, good).returncode != 0
    assert checksig(keydb, good).returncode == 0


def test_repomd_signature_verifies(built: Context, tmp_path: Path) -> None:
    home = tmp_path / "g"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty"]
    subprocess.run([*gpg, "--import", str(built.out.rpms / KEY_FILE)], check=True,
                   capture_output=True)
    repodata = built.out.rpms / "repodata"
    ok = subprocess.run([*gpg, "--verify", str(repodata / "repomd.xml.asc"),
                         str(repodata / "repomd.xml")], capture_output=True, check=False)
    changed = tmp_path / "repomd.xml"
    changed.write_bytes((repodata / "repomd.xml").read_bytes().replace(b"<revision>",
                                                                        b"<revision>1"))
    bad = subprocess.run([*gpg, "--verify", str(repodata / "repomd.xml.asc"), str(changed)],
                         capture_output=True, check=False)
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    assert ok.returncode == 0 and bad.returncode != 0


def test_the_secret_key_never_leaves_the_secret_area(built: Context) -> None:
    """Nothing the build publishes or installs holds the private key material."""
    home = signing.cluster_home(built)
    assert (home.stat().st_mode & 0o077) == 0
    private = [p.read_bytes() for p in (home / "private-keys-v1.d").glob("*.key")]
    assert private
    import json

    manifest = json.loads(built.out.manifest.read_text())
    paths = [a["path"] for a in manifest["artifacts"]]
    assert "rpms/RPM-GPG-KEY-pgha" in paths
    assert not any(p.startswith("signing/") for p in paths)
    assert "signing/" not in built.out.sha256sums.read_text()
    for rel in paths:
        blob = (built.out.root / rel).read_bytes()
        assert b"PGP PRIVATE KEY" not in blob, rel
        for secret in private:
            assert secret[len(secret) // 2:len(secret) // 2 + 48] not in blob, rel
    # inside the packages too (the payload is compressed: list and read it with rpm2cpio)
    for rpm in built.out.rpms.glob("*.noarch.rpm"):
        files = subprocess.run(["rpm", "-qlp", str(rpm)], capture_output=True, text=True,
                               check=True).stdout
        assert "signing" not in files and "private-keys" not in files


def ks_post(text: str, log: str) -> str:
    handler = makeVersion(RHEL8)
    KickstartParser(handler, errorsAreFatal=True).readKickstartFromString(text)
    (script,) = [s for s in handler.scripts if s.logfile == log]
    assert script.errorOnFail
    return str(script.script)


VERIFY_LOG = "/root/ks-post-pgha-verify.log"


def run_verify(script: str, root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The %post section for real, against an installed root: `rpm` is the real rpm with
    --root, and the key's node path is put under the root."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "rpm"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("rpm")} --root {root} "$@"\n')
    wrapper.chmod(0o755)
    text = script.replace("/etc/pki/rpm-gpg", f"{root}/etc/pki/rpm-gpg")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", text], capture_output=True, text=True, env=env,
                          check=False)


def install(root: Path, *rpms: Path) -> None:
    subprocess.run(["rpm", "--root", str(root), "-i", "--nodeps", "--noscripts",
                    "--nosignature", *map(str, rpms)], capture_output=True, check=True)


@pytest.fixture
def installed(built: Context, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    install(root, rpm_of(built, "pgha-common"), rpm_of(built, "pgha-role-db"))
    return root


def test_kickstart_post_verifies_the_installed_packages(built: Context, installed: Path,
                                                        tmp_path: Path) -> None:
    text = kickstart.render_role(built, roles.get("db"))
    script = ks_post(text, VERIFY_LOG)
    assert f"cat > {NODE_KEY_PATH}" in script and f"rpm --import {NODE_KEY_PATH}" in script
    assert "https://" not in script and "http://" not in script  # never fetched
    result = run_verify(script, installed, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pgha: packages verified against key" in result.stdout


def test_kickstart_post_refuses_an_unsigned_package(built: Context, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    unsigned = tmp_path / rpm_of(built, "pgha-role-db").name
    shutil.copy(rpm_of(built, "pgha-role-db"), unsigned)
    subprocess.run(["rpmsign", "--delsign", str(unsigned)], capture_output=True, check=True)
    install(root, rpm_of(built, "pgha-common"), unsigned)
    script = ks_post(kickstart.render_role(built, roles.get("db")), VERIFY_LOG)
    result = run_verify(script, root, tmp_path)
    assert result.returncode == 1
    assert "pgha-role-db is not signed by the pgha key" in result.stderr


def test_kickstart_post_refuses_a_changed_header_or_file(built: Context, installed: Path,
                                                         tmp_path: Path) -> None:
    script = ks_post(kickstart.render_role(built, roles.get("db")), VERIFY_LOG)
    # a file changed after the install: rpm -V against the signed header's digests
    changed = installed / "usr/libexec/pgha/pgha-firstboot"
    original = changed.read_bytes()
    changed.write_bytes(original + b"\n# planted\n")
    result = run_verify(script, installed, tmp_path)
    assert result.returncode == 1 and "files of pgha-common differ" in result.stderr
    changed.write_bytes(original)
    assert run_verify(script, installed, tmp_path).returncode == 0
    # a header changed in the rpmdb: rpm checks its signature when it reads it
    (db,) = installed.rglob("rpmdb.sqlite")
    with sqlite3.connect(db) as con:
        rows = list(con.execute("SELECT hnum, blob FROM Packages"))
        hnum, blob = next((h, b) for h, b in rows if b"pgha-role-db" in b)
        at = bytes(blob).index(b"pgha-role-db")
        forged = bytearray(blob)
        forged[at + len("pgha-role-")] = ord("D")
        con.execute("UPDATE Packages SET blob = ? WHERE hnum = ?", (bytes(forged), hnum))
    result = run_verify(script, installed, tmp_path)
    assert result.returncode == 1
    assert "pgha-role-db is not installed or its header signature is bad" in result.stderr


def test_gpgcheck_is_asked_for_everywhere(built: Context, tmp_path: Path) -> None:
    """The nodes' pgha.repo (from the built pgha-common), the cloud image's build-time .repo
    and the composer source all check the pgha packages and metadata."""
    root = tmp_path / "root"
    root.mkdir()
    install(root, rpm_of(built, "pgha-common"))
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string((root / "etc/yum.repos.d/pgha.repo").read_text())
    pgha = cp["pgha"]
    assert pgha.getboolean("gpgcheck") and pgha.getboolean("repo_gpgcheck")
    assert pgha["gpgkey"] == f"file://{NODE_KEY_PATH}"
    assert pgha["baseurl"] == built.cluster.repos.pgha
    cp = configparser.ConfigParser(interpolation=None)
    cp.read_string(cloudimage.repo_file(built, deps_repo=False))
    assert cp["pgha-build"].getboolean("gpgcheck")
    assert cp["pgha-build"]["gpgkey"] == f"file://{NODE_KEY_PATH}"
    source = tomllib.loads(cloudimage.composer_sources(built)["pgha"])
    assert source["check_gpg"] and source["check_repogpg"]
    assert source["gpgkeys"] == [signing.signing_key(built).public]


def test_an_organisation_key_signs_instead(tmp_path: Path) -> None:
    home = tmp_path / "org-gnupg"
    home.mkdir(mode=0o700)
    gpg = ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--pinentry-mode", "loopback",
           "--passphrase", ""]
    try:
        subprocess.run([*gpg, "--quick-generate-key", "Example Org RPM signing", "rsa2048",
                        "sign", "never"], check=True, capture_output=True)
        listing = subprocess.run([*gpg, "--with-colons", "--list-secret-keys"], check=True,
                                 capture_output=True, text=True).stdout
        fpr = next(ln.split(":")[9] for ln in listing.splitlines() if ln.startswith("fpr:"))
        cluster = config.from_data({"signing": {"key_id": fpr, "gnupghome": str(home)}})
        ctx = Context.create(cluster, tmp_path / "out")
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    assert not signing.cluster_home(ctx).exists()  # no cluster key was made
    sig = subprocess.run(["rpm", "-qp", "--qf", "%{RSAHEADER:pgpsig}",
                          str(rpm_of(ctx, "pgha-common"))], capture_output=True, text=True,
                         check=True).stdout
    assert sig.endswith(f"Key ID {fpr[-16:].lower()}")
    assert "Example Org" in subprocess.run(
        ["gpg", "--show-keys"], input=(ctx.out.rpms / KEY_FILE).read_text(),
        capture_output=True, text=True, check=True).stdout


def test_a_missing_organisation_key_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "empty-gnupg"
    home.mkdir(mode=0o700)
    cluster = config.from_data({"signing": {"key_id": "0123456789ABCDEF",
                                            "gnupghome": str(home)}})
    with pytest.raises(PghaError, match="no usable secret key 0123456789ABCDEF") as err:
        signing.signing_key(Context.create(cluster, tmp_path / "out"))
    assert err.value.hint and "gpg --import" in err.value.hint
    with pytest.raises(ConfigError) as bad:
        config.from_data({"signing": {"gnupghome": str(home)}})
    assert "gnupghome needs key_id" in " ".join(bad.value.problems)


def test_the_cluster_key_is_made_once_and_reused(tmp_path: Path) -> None:
    """The real generator (conftest hands other tests one shared key): RSA, signs, kept."""
    ctx = Context.create(config.load(None), tmp_path / "out")
    target = signing.cluster_home(ctx)
    signing.real_generate_key(ctx, target)  # type: ignore[attr-defined]
    key = signing.signing_key(ctx)
    listing = subprocess.run(["gpg", "--show-keys", "--with-colons"], input=key.public,
                             capture_output=True, text=True, check=True).stdout
    pub = next(ln.split(":") for ln in listing.splitlines() if ln.startswith("pub:"))
    assert pub[3] == "1" and int(pub[2]) >= 3072  # RSA (rpm 4.14 on RHEL 8), >= 3072 bits
    again = Context.create(config.load(None), tmp_path / "out")
    assert signing.signing_key(again).fingerprint == key.fingerprint


def test_kickstart_command_and_cli_mention_signing(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-o", str(tmp_path / "o"), "kickstart", "--role", "db"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / "pgha" / "kickstart" / "db.ks").read_text().count(
        "BEGIN PGP PUBLIC KEY BLOCK") == 1
