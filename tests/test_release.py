"""`pgha-build release` end to end over real HTTP against the local fake forge."""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import test_release_fakeapi as fakeapi
from click.testing import CliRunner, Result
from test_release_fakeapi import REPO, TOKEN, FakeForge

from builder.cli import cli, release_cmds
from builder.core import state
from builder.core.httpclient import RetryPolicy
from builder.core.paths import OutputPaths
from builder.model import loading as config
from builder.release.forge import repo_from_remote

fake_github = fakeapi.fake_github  # the fixtures, shared with the fake's own tests
fake_gitea = fakeapi.fake_gitea
SECRET = "s3cr3t-Superuser-Pa55word"
PUBLISHED = ["SHA256SUMS", "db.ks", "db.qcow2", "manifest.json",
             "pgha-db-1.0-1.el8.noarch.rpm", "pgha-db-1.0-1.el8.src.rpm"]


def write_build(root: Path, files: dict[str, tuple[str, bytes, dict[str, Any]]]) -> None:
    """A build folder with manifest.json and SHA256SUMS in builder/manifest.py's format."""
    entries = []
    for rel, (kind, data, extra) in sorted(files.items()):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        entry = {"kind": kind, "path": rel, "secret": False, "size": len(data),
                 "sha256": hashlib.sha256(data).hexdigest(), **extra}
        entries.append(entry)
    manifest = {"manifest_version": 1, "model_schema_version": 1, "tool": "pgha-build test",
                "cluster": root.name, "platform": "rhel8", "postgres_version": 16,
                "source_date_epoch": 1767225600, "artifacts": entries}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    sums = "".join(f"{e['sha256']}  {e['path']}\n" for e in entries if not e["secret"])
    (root / "SHA256SUMS").write_text(sums)
    # What the build steps record (the release checks manifest.json against it).
    arts = [state.Artifact(**{k: v for k, v in e.items() if k != "size"}) for e in entries]
    state.save(OutputPaths(root), "test-build", "key", arts)


def default_files() -> dict[str, tuple[str, bytes, dict[str, Any]]]:
    return {
        "rpms/pgha-db-1.0-1.el8.noarch.rpm": ("rpm", b"RPM" * 4000, {"role": "db"}),
        "rpms/pgha-db-1.0-1.el8.src.rpm": ("srpm", b"SRPM" * 100, {"role": "db"}),
        "rpms/repodata/repomd.xml": ("repodata", b"<repomd/>", {}),
        "specs/pgha-db.spec": ("spec", b"Name: pgha-db\n", {"role": "db"}),
        "kickstart/db.ks": ("kickstart", b"# role kickstart\n", {"role": "db"}),
        "kickstart/db1.ks": ("kickstart", f"rootpw {SECRET}\n".encode(),
                             {"role": "db", "host": "db1", "secret": True}),
        "seeds/db1/user-data": ("seed", f"password: {SECRET}\n".encode(),
                                {"host": "db1", "secret": True}),
        "images/db.qcow2": ("image", bytes(range(256)) * 300, {"role": "db"}),
    }


@pytest.fixture
def out(tmp_path: Path) -> Path:
    output = tmp_path / "output"
    root = output / config.load(None).name
    write_build(root, default_files())
    (root / "secrets.yaml").write_text("version: 1\ncluster: pgha\n"
                                       "superuser:\n  username: postgres\n"
                                       f"postgres:\n  superuser_password: {SECRET}\n"
                                       "etcd:\n  tokens: [short, another-long-token-value]\n")
    return output


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    slept: list[float] = []
    monkeypatch.setattr(release_cmds, "make_policy",
                        lambda: RetryPolicy(sleep=slept.append, timeout=10))
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("GH_TOKEN", raising=False)
    yield slept


def release(out: Path, fake: FakeForge, *args: str, verbose: tuple[str, ...] = ()) -> Result:
    argv = [*verbose, "-o", str(out), "release", "--tag", "v1.4.0", "--repo", REPO,
            "--api-url", fake.api_url, *args]
    return CliRunner().invoke(cli, argv)


def everything(result: Result) -> str:
    text = result.stdout + result.stderr
    if result.exc_info and not isinstance(result.exception, SystemExit):
        text += "".join(traceback.format_exception(*result.exc_info))
    return text


def local(out: Path, rel: str) -> bytes:
    return (out / "pgha" / rel).read_bytes()


def test_creates_release_and_uploads_only_publishable(out: Path, fake_github: FakeForge,
                                                      sleeps: list[float]) -> None:
    result = release(out, fake_github, "--prerelease")
    assert result.exit_code == 0, everything(result)
    assert "(created): 6 uploaded, 0 skipped, 0 replaced" in result.stdout
    (rel,) = fake_github.releases.values()
    assert rel["tag_name"] == "v1.4.0" and rel["prerelease"] and not rel["draft"]
    assert fake_github.names() == PUBLISHED
    assets = {a["name"]: a for a in fake_github.assets.values()}
    assert assets["db.qcow2"]["data"] == local(out, "images/db.qcow2")
    assert assets["pgha-db-1.0-1.el8.noarch.rpm"]["content_type"] == "application/x-rpm"
    assert assets["manifest.json"]["content_type"] == "application/json"
    sha = hashlib.sha256(local(out, "kickstart/db.ks")).hexdigest()
    assert assets["db.ks"]["label"] == f"sha256:{sha}"
    uploads = [e for e in fake_github.log if e["path"].startswith("/uploads/")]
    assert all(e["headers"]["Content-Length"] for e in uploads)
    assert sleeps == []


def test_netrc_cannot_replace_the_token(out: Path, fake_github: FakeForge, sleeps: list[float],
                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets a ~/.netrc entry override a plain Authorization header: ours must win."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password not-the-token\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    result = release(out, fake_github)
    assert result.exit_code == 0, everything(result)
    assert fake_github.names() == PUBLISHED


@pytest.mark.parametrize("digest", [True, False], ids=["digest", "label"])
def test_rerun_skips_identical_assets(out: Path, fake_github: FakeForge, sleeps: list[float],
                                      digest: bool) -> None:
    fake_github.expose_digest = digest
    assert release(out, fake_github).exit_code == 0
    before = len(fake_github.writes())
    result = release(out, fake_github)
    assert result.exit_code == 0, everything(result)
    assert "0 uploaded, 6 skipped, 0 replaced" in result.stdout
    assert len(fake_github.writes()) == before


def test_differing_asset_is_an_error_without_replace(out: Path, fake_github: FakeForge,
                                                     sleeps: list[float]) -> None:
    rel = fake_github.add_release("v1.4.0")
    fake_github.add_asset(rel["id"], "db.ks", b"something else\n")
    result = release(out, fake_github)
    assert result.exit_code == 1
    assert "asset db.ks on release v1.4.0 differs" in result.stderr
    assert "--replace" in result.stderr
    assert fake_github.writes() == []


def test_replace_never_leaves_release_without_asset(out: Path, fake_github: FakeForge,
                                                    sleeps: list[float]) -> None:
    rel = fake_github.add_release("v1.4.0")
    fake_github.add_asset(rel["id"], "db.qcow2", b"old image")
    result = release(out, fake_github, "--replace")
    assert result.exit_code == 0, everything(result)
    assert "5 uploaded, 0 skipped, 1 replaced" in result.stdout
    for entry in fake_github.log:
        assert {"db.qcow2", "db.qcow2.pgha-tmp"} & set(entry["names"]), entry["path"]
    order = [e["method"] for e in fake_github.writes()
             if "db.qcow2" in e["query"] or e["method"] in ("DELETE", "PATCH")]
    assert order == ["POST", "DELETE", "PATCH"]  # upload as tmp, delete old, rename
    (asset,) = [a for a in fake_github.assets.values() if a["name"] == "db.qcow2"]
    assert asset["data"] == local(out, "images/db.qcow2")
    assert fake_github.names() == PUBLISHED


@pytest.mark.parametrize("name", ["seeds/db1/user-data", "kickstart/db1.ks", "db1.ks",
                                  "secrets.yaml", "seeds/db2/meta-data"])
def test_secrets_refused_even_by_name(out: Path, fake_github: FakeForge, sleeps: list[float],
                                      name: str) -> None:
    result = release(out, fake_github, "--only", name)
    assert result.exit_code == 1
    assert "refusing to publish" in result.stderr
    assert fake_github.log == []


def test_secret_value_inside_an_artifact_is_refused(out: Path, fake_github: FakeForge,
                                                    sleeps: list[float]) -> None:
    files = default_files()
    files["kickstart/db.ks"] = ("kickstart", f"# x\nuser --password={SECRET}\n".encode(),
                                {"role": "db"})
    write_build(out / "pgha", files)
    result = release(out, fake_github)
    assert result.exit_code == 1
    assert "kickstart/db.ks: it contains the value of 'postgres.superuser_password'" \
        in result.stderr
    assert SECRET not in everything(result)
    assert fake_github.writes() == []


def test_changed_artifact_is_an_error(out: Path, fake_github: FakeForge,
                                      sleeps: list[float]) -> None:
    path = out / "pgha" / "rpms/pgha-db-1.0-1.el8.noarch.rpm"
    path.write_bytes(b"RPM" * 3999 + b"XYZ")
    result = release(out, fake_github)
    assert result.exit_code == 1
    assert "rpms/pgha-db-1.0-1.el8.noarch.rpm changed since the build" in result.stderr
    assert fake_github.log == []


def test_asset_size_limit(out: Path, fake_github: FakeForge, sleeps: list[float]) -> None:
    result = release(out, fake_github, "--max-asset-size", "50000")
    assert result.exit_code == 1
    assert "images/db.qcow2 is 75.00 KiB; release assets must be under 48.83 KiB" \
        in result.stderr
    assert "hint: publish a compressed image" in result.stderr
    assert fake_github.log == []


def test_asset_count_limit_checked_before_uploading(out: Path, fake_github: FakeForge,
                                                    sleeps: list[float]) -> None:
    rel = fake_github.add_release("v1.4.0")
    for i in range(996):
        fake_github.add_asset(rel["id"], f"old-{i}.bin", b"x")
    result = release(out, fake_github)
    assert result.exit_code == 1
    assert "would hold 1002 assets; the limit is 1000" in result.stderr
    assert fake_github.writes() == []


def test_rate_limits_5xx_and_dropped_connection(out: Path, fake_github: FakeForge,
                                                sleeps: list[float]) -> None:
    fake_github.fault("GET", "/releases/tags/", primary=7)
    fake_github.fault("POST", r"/releases$", secondary=3)
    fake_github.fault("POST", "/uploads/", status=502)
    fake_github.fault("POST", "/uploads/", drop=True, starter=True)
    fake_github.fault("PATCH", "/releases/", secondary=2, code=403)
    result = release(out, fake_github, "--notes", str(out / "pgha" / "SHA256SUMS"))
    assert result.exit_code == 0, everything(result)
    assert fake_github.names(state=None) == PUBLISHED  # the starter leftover is gone
    assert any(e.get("status") == 422 for e in fake_github.log)  # it was there, then deleted
    assert 5 <= sleeps[0] <= 8 and sleeps[1] == 3 and len(sleeps) >= 4
    assert "primary rate limit reached" in result.stderr
    assert "secondary rate limit (Retry-After 3s)" in result.stderr
    assert "server error 502" in result.stderr
    assert "connection problem" in result.stderr


def test_rate_limit_wait_too_long_gives_up(out: Path, fake_github: FakeForge,
                                           sleeps: list[float]) -> None:
    fake_github.fault("GET", "/releases/tags/", primary=5000)
    result = release(out, fake_github)
    assert result.exit_code == 1
    assert "primary rate limit reached" in result.stderr and "longer than" in result.stderr
    assert sleeps == []


def test_token_never_printed(out: Path, fake_github: FakeForge, sleeps: list[float]) -> None:
    fake_github.fault("POST", "/uploads/", status=503)
    fake_github.fault("POST", "/uploads/", drop=True)
    ok = release(out, fake_github, verbose=("-vv", "--debug"))
    assert ok.exit_code == 0, everything(ok)
    bad = CliRunner().invoke(cli, ["-v", "--debug", "-o", str(out), "release", "--tag", "v2",
                                   "--repo", "acme/missing", "--api-url", fake_github.api_url])
    assert bad.exit_code != 0 and "404" in everything(bad)
    for result in (ok, bad):
        assert TOKEN not in everything(result)


def test_dry_run_makes_no_writes(out: Path, fake_github: FakeForge,
                                 sleeps: list[float]) -> None:
    result = release(out, fake_github, "--dry-run")
    assert result.exit_code == 0, everything(result)
    assert "would create release v1.4.0" in result.stderr
    assert "would have 6 uploaded" in result.stdout
    assert fake_github.writes() == [] and fake_github.releases == {}
    rel = fake_github.add_release("v1.4.0")
    fake_github.add_asset(rel["id"], "db.ks", b"different\n")
    result = release(out, fake_github, "--dry-run", "--replace")
    assert result.exit_code == 0, everything(result)
    assert "would replace db.ks" in result.stderr
    assert fake_github.writes() == []


def test_draft_release_is_found_and_reused(out: Path, fake_github: FakeForge,
                                           sleeps: list[float]) -> None:
    fake_github.add_release("v1.4.0", draft=True)
    result = release(out, fake_github, "--only", "db.ks")
    assert result.exit_code == 0, everything(result)
    assert len(fake_github.releases) == 1 and fake_github.names() == ["db.ks"]


def test_unknown_repo_and_missing_token(out: Path, fake_github: FakeForge,
                                        sleeps: list[float],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(cli, ["-o", str(out), "release", "--tag", "v1", "--repo",
                                      "acme/nope", "--api-url", fake_github.api_url])
    assert result.exit_code == 1 and "HTTP 404" in result.stderr and "hint:" in result.stderr
    monkeypatch.delenv("GITHUB_TOKEN")
    result = release(out, fake_github)
    assert result.exit_code == 2 and "set GITHUB_TOKEN or GH_TOKEN" in result.stderr
    monkeypatch.setenv("GH_TOKEN", TOKEN)
    assert release(out, fake_github, "--only", "db.ks").exit_code == 0


def test_gitea_multipart_upload_and_rerun(out: Path, fake_gitea: FakeForge,
                                          sleeps: list[float]) -> None:
    result = release(out, fake_gitea)
    assert result.exit_code == 0, everything(result)
    assert fake_gitea.names() == PUBLISHED
    (asset,) = [a for a in fake_gitea.assets.values() if a["name"] == "db.qcow2"]
    assert asset["data"] == local(out, "images/db.qcow2")
    before = len(fake_gitea.writes())
    result = release(out, fake_gitea)
    assert "0 uploaded, 6 skipped" in result.stdout  # compared by downloading (no digest)
    assert len(fake_gitea.writes()) == before


def test_gitea_replace(out: Path, fake_gitea: FakeForge, sleeps: list[float]) -> None:
    rel = fake_gitea.add_release("v1.4.0")
    fake_gitea.add_asset(rel["id"], "db.ks", b"old\n")
    result = release(out, fake_gitea, "--replace", "--forge", "gitea")
    assert result.exit_code == 0, everything(result)
    for entry in fake_gitea.log:
        assert {"db.ks", "db.ks.pgha-tmp"} & set(entry["names"])
    assert fake_gitea.names() == PUBLISHED


@pytest.mark.parametrize("url,repo", [
    ("git@github.com:acme/pgha.git", "acme/pgha"),
    ("https://github.com/acme/pgha", "acme/pgha"),
    ("https://ghe.example.com/acme/pgha.git\n", "acme/pgha"),
    ("ssh://git@gitea.example.com:2222/acme/pgha.git", "acme/pgha"),
    ("/srv/git/pgha.git", None),
])
def test_repo_from_remote(url: str, repo: str | None) -> None:
    assert repo_from_remote(url) == repo


@pytest.mark.integration
def test_release_of_a_real_build(built: Any, fake_github: FakeForge, sleeps: list[float]) -> None:
    """The real build's manifest: RPMs, SRPMs, role kickstarts go up; no secret ever does."""
    out = built.out.root.parent
    result = release(out, fake_github)
    assert result.exit_code == 0, everything(result)
    manifest = json.loads(built.out.manifest.read_text())
    expected = {Path(e["path"]).name for e in manifest["artifacts"]
                if e["kind"] in ("rpm", "srpm", "kickstart", "image", "ca-cert", "gpgkey")
                and not e["secret"]
                and not e.get("host")} | {"SHA256SUMS", "manifest.json"}
    assert set(fake_github.names()) == expected
    assert any(n.endswith(".src.rpm") for n in expected)
    assert "ca.crt" in expected  # the cluster CA certificate is public; its key never goes up
    assert "RPM-GPG-KEY-pgha" in expected  # the signing key's public half; signing/ never
    assert not any("signing" in n or "private-keys" in n for n in fake_github.names())
    secret_names = {Path(e["path"]).name for e in manifest["artifacts"] if e["secret"]}
    assert not secret_names & set(fake_github.names())
    again = release(out, fake_github)
    assert f"0 uploaded, {len(expected)} skipped, 0 replaced" in again.stdout
