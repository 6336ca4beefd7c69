"""Secrets: generated once, reused, rotated on demand, 0600, and a corrupt file is an error."""

from __future__ import annotations

import stat

import pytest

from builder.core.errors import PghaError
from builder.core.paths import OutputPaths
from builder.model import secrets


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_generated_once_and_reused(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    first = secrets.load_or_create(out, "pgha")
    assert _mode(out.secrets) == 0o600
    assert secrets.load_or_create(out, "pgha") == first
    assert len(set(first.values())) == len(secrets.CREDENTIALS) + 1  # + the backup passphrase
    assert first.backup_cipher in first.values()
    assert all(len(v) == secrets.PASSWORD_LENGTH and v.isalnum() for v in first.values())


def test_rotation_replaces_every_password(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    first = secrets.load_or_create(out, "pgha")
    second = secrets.load_or_create(out, "pgha", rotate=True)
    # Every password changes; the backup repository's passphrase does not (a new one would
    # make every existing backup unreadable).
    assert set(first.values()) & set(second.values()) == {first.backup_cipher}
    assert secrets.load_or_create(out, "pgha") == second
    assert _mode(out.secrets) == 0o600


def test_loose_mode_is_tightened(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    secrets.load_or_create(out, "pgha")
    out.secrets.chmod(0o644)
    secrets.load_or_create(out, "pgha")
    assert _mode(out.secrets) == 0o600


@pytest.mark.parametrize("text", [
    "{{{ not yaml", "- a list\n", "version: 1\n", "version: 9\nsuperuser: {}\n",
    "",
])
def test_corrupt_file_is_one_line_error_and_kept(tmp_path, text):
    out = OutputPaths(tmp_path / "pgha")
    out.root.mkdir(parents=True)
    out.secrets.write_text(text)
    with pytest.raises(PghaError) as err:
        secrets.load_or_create(out, "pgha")
    assert str(out.secrets) in err.value.message
    assert "\n" not in err.value.message
    assert "--rotate-secrets" in (err.value.hint or "")
    assert out.secrets.read_text() == text  # never silently regenerated


def test_bad_password_is_corrupt(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    sec = secrets.load_or_create(out, "pgha")
    out.secrets.write_text(out.secrets.read_text().replace(sec.rewind.password, "short"))
    with pytest.raises(PghaError, match="rewind.password"):
        secrets.load_or_create(out, "pgha")


def test_backup_passphrase_added_once_to_an_older_file(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    first = secrets.load_or_create(out, "pgha")
    text = out.secrets.read_text()
    older = "\n".join(ln for ln in text.splitlines() if not ln.startswith("backup_cipher"))
    out.secrets.write_text(older + "\n")
    again = secrets.load_or_create(out, "pgha")
    assert again.superuser == first.superuser and again.backup_cipher
    assert again.backup_cipher != first.backup_cipher  # new: nothing used the file's before
    assert secrets.load_or_create(out, "pgha") == again  # written back: stable from now on
    assert _mode(out.secrets) == 0o600


def test_short_backup_passphrase_is_corrupt(tmp_path):
    out = OutputPaths(tmp_path / "pgha")
    secrets.load_or_create(out, "pgha")
    text = out.secrets.read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("backup_cipher"))
    out.secrets.write_text(text.replace(line, "backup_cipher: short"))
    with pytest.raises(PghaError, match="backup_cipher"):
        secrets.load_or_create(out, "pgha")
