"""Files and options the builder reads besides the cluster file (issue 27): manifest.json
entries, the pki/ folder, the build index, --notes, --repo, --api-url, -o."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_release import default_files, write_build

from builder.cli import cli
from builder.core import fastpath
from builder.core.errors import PghaError
from builder.core.paths import OutputPaths
from builder.model import loading, pki, pkifiles, tlsplan
from builder.release import forge, publish


@pytest.fixture
def build(tmp_path: Path) -> OutputPaths:
    out = OutputPaths(tmp_path / "output" / "pgha")
    write_build(out.root, default_files())
    return out


def _edit_manifest(out: OutputPaths, rel: str, **change: object) -> None:
    data = json.loads(out.manifest.read_text())
    for entry in data["artifacts"]:
        if entry["path"] == rel:
            entry.update(change)
    out.manifest.write_text(json.dumps(data))


@pytest.mark.parametrize(("change", "needle"), [
    ({"path": "/etc/hostname"}, "not a plain path inside the output folder"),
    ({"path": "../../../etc/hostname"}, "not a plain path inside the output folder"),
    ({"path": "rpms/./x.rpm"}, "not a plain path"),
    ({"sha256": None}, "no sha256"),
    ({"size": True}, "no size"),
    ({"sha256": "0" * 64}, "differ from the build's record"),
])
def test_manifest_entry_is_refused(build: OutputPaths, change: dict, needle: str) -> None:
    _edit_manifest(build, "rpms/pgha-db-1.0-1.el8.noarch.rpm", **change)
    with pytest.raises(publish.ReleaseError, match=needle):
        publish.collect(build)


def test_manifest_entry_no_step_recorded_is_refused(build: OutputPaths) -> None:
    (build.root / "extra.rpm").write_bytes(b"x")
    data = json.loads(build.manifest.read_text())
    data["artifacts"].append({"kind": "rpm", "path": "extra.rpm", "secret": False, "size": 1,
                              "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"})
    build.manifest.write_text(json.dumps(data))
    with pytest.raises(publish.ReleaseError, match="no build step recorded"):
        publish.collect(build)


def test_per_host_kickstart_relabelled_in_the_manifest_is_refused(build: OutputPaths) -> None:
    _edit_manifest(build, "kickstart/db1.ks", host=None, secret=False)
    with pytest.raises(publish.ReleaseError, match="differ from the build's record"):
        publish.collect(build)


def test_artifact_symlinked_out_of_the_output_is_refused(build: OutputPaths,
                                                         tmp_path: Path) -> None:
    rel = "images/db.qcow2"
    target = tmp_path / "elsewhere"
    os.rename(build.root / rel, target)
    (build.root / rel).symlink_to(target)
    with pytest.raises(publish.ReleaseError, match="outside the output folder"):
        publish.collect(build)


def test_the_intact_build_collects(build: OutputPaths) -> None:
    names = {i.name for i in publish.collect(build)}
    assert "db.qcow2" in names and "db1.ks" not in names


@pytest.mark.parametrize("url", ["http://api.example.com", "http://10.0.0.1/api/v3",
                                 "https://u:p@api.example.com", "https://[::1", "https://h:99999",
                                 "ftp://h/", "https://h/\nx"])
def test_forge_api_url_is_refused(url: str) -> None:
    with pytest.raises(PghaError):
        forge.connect(url, "acme/pgha", "tok", "auto")


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080", "http://localhost:1/api/v1",
                                 "http://[::1]:9/", "https://api.example.com"])
def test_forge_api_url_is_accepted(url: str) -> None:
    assert forge.connect(url, "acme/pgha", "tok", "auto").repo == "acme/pgha"


@pytest.mark.parametrize("repo", ["../..", "a/..", "./x", "a/b/c", "a", "a/b c", "ä/b",
                                  "a/b\n", "a/" + "b" * 101])
def test_repo_that_is_not_owner_name_is_refused(repo: str) -> None:
    with pytest.raises(PghaError, match="OWNER/NAME"):
        forge.check_repo(repo)


@pytest.mark.parametrize("url", ["https://127.0.0.1:99999", "https://[::1", "http://10.1.1.1",
                                 "https://admin:pw@h"])
def test_f5_apply_url_is_one_line(tmp_path: Path, url: str) -> None:
    from builder.f5 import apply

    with pytest.raises(PghaError):
        apply.base_url(url)


def test_notes_dev_zero_fifo_and_non_utf8_are_one_line(tmp_path: Path, build: OutputPaths,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    latin = tmp_path / "latin.md"
    latin.write_bytes(b"caf\xe9\n")
    monkeypatch.setenv("GITHUB_TOKEN", "tok")
    for notes, needle in (("/dev/zero", "not a regular file"), (str(fifo), "not a regular file"),
                          (str(latin), "not UTF-8")):
        res = CliRunner().invoke(cli, ["-o", str(build.root.parent), "release", "--tag", "v1",
                                       "--repo", "a/b", "--notes", notes, "--dry-run"])
        assert res.exit_code != 0 and needle in res.output, res.output
        assert "Traceback" not in res.output


@pytest.mark.parametrize("index", ["", "[]", '{"x": 1}', '{"x": {"root": "/etc", "files": {}}}',
                                   '{"x": {"root": 1, "files": []}}', "\x00\xff"])
def test_a_build_index_that_does_not_parse_is_rebuilt(tmp_path: Path, index: str) -> None:
    (tmp_path / fastpath.INDEX_NAME).write_text(index, errors="surrogateescape")
    assert fastpath.fresh(tmp_path, "x") is None
    root = tmp_path / "pgha"
    root.mkdir()
    (root / "manifest.json").write_text('{"artifacts": []}')
    fastpath.record(tmp_path, "d" * 64, root)
    assert fastpath.fresh(tmp_path, "d" * 64) == root


@pytest.mark.parametrize("output", ["dir\ndhcp-option=3,1.2.3.4", "a\rb", "x$(id)", 'q"uote'])
def test_output_path_that_would_inject_is_refused(tmp_path: Path, output: str) -> None:
    res = CliRunner().invoke(cli, ["-o", str(tmp_path / output), "pxe"])
    assert res.exit_code == 2 and "output folder" in res.output
    assert not any(tmp_path.iterdir())


# --- the pki/ folder --------------------------------------------------------------------

def _pki(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    pki.load_or_create_ca(folder, "pgha", 3650)
    return folder


def test_ca_made_here_is_reused_and_recorded(tmp_path: Path) -> None:
    folder = _pki(tmp_path)
    first = (folder / "ca.crt").read_text()
    assert (folder / pkifiles.ORIGIN).is_file()
    assert pki.load_or_create_ca(folder, "pgha", 3650).cert_pem == first


@pytest.mark.parametrize(("path", "mode"), [("ca.key", 0o644), ("ca.key", 0o666),
                                            (".", 0o777), (".", 0o770)])
def test_loose_modes_are_refused(tmp_path: Path, path: str, mode: int) -> None:
    folder = _pki(tmp_path)
    os.chmod(folder / path, mode)
    with pytest.raises(PghaError, match=f"mode {mode:04o}") as err:
        pki.load_or_create_ca(folder, "pgha", 3650)
    assert "chmod" in (err.value.hint or "")


def test_a_planted_ca_is_refused_unless_adopted(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    folder = _pki(tmp_path)
    other = pki.make_ca("evil", 365)
    (folder / "ca.crt").write_text(other.cert_pem)
    (folder / "ca.key").write_text(other.key_pem)
    with pytest.raises(PghaError, match="not the CA pgha-build made") as err:
        pki.load_or_create_ca(folder, "pgha", 3650)
    assert "CN=pgha evil cluster CA" in err.value.message
    assert "--adopt-ca" in (err.value.hint or "")
    import logging
    logging.getLogger("pgha").propagate = True
    with caplog.at_level(logging.WARNING, logger="pgha"):
        assert pki.load_or_create_ca(folder, "pgha", 3650, adopt=True).cert_pem == other.cert_pem
    assert "adopting the CA" in caplog.text and "CN=pgha evil cluster CA" in caplog.text
    assert pki.load_or_create_ca(folder, "pgha", 3650).cert_pem == other.cert_pem


def test_a_ca_from_before_the_origin_file_is_recognised(tmp_path: Path) -> None:
    folder = _pki(tmp_path)
    (folder / pkifiles.ORIGIN).unlink()
    pki.load_or_create_ca(folder, "pgha", 3650)
    assert (folder / pkifiles.ORIGIN).is_file()


def test_seeds_adopt_ca_option(tmp_path: Path) -> None:
    out = OutputPaths(tmp_path / "o" / "pgha")
    cluster = loading.from_data({})
    tlsplan.load_secrets(out, cluster)
    other = pki.make_ca("org", 365)
    (out.pki / "ca.crt").write_text(other.cert_pem)
    (out.pki / "ca.key").write_text(other.key_pem)
    res = CliRunner().invoke(cli, ["-o", str(tmp_path / "o"), "seeds", "--host", "db1"])
    assert res.exit_code == 1 and "--adopt-ca" in res.output
    res = CliRunner().invoke(cli, ["-o", str(tmp_path / "o"), "seeds", "--adopt-ca"])
    assert res.exit_code == 0, res.output
    assert "CN=pgha org cluster CA" in res.output
    assert stat.S_IMODE((out.pki / pkifiles.ORIGIN).stat().st_mode) == 0o600
