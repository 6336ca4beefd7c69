"""`pgha-build seeds` and `pgha-build render` through click's CliRunner."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from builder.cli import cli
from builder.core.paths import OutputPaths
from builder.model import secrets


def _run(tmp_path, *args):
    return CliRunner().invoke(cli, ["-o", str(tmp_path / "out"), *args])


def test_render_prints_every_file_with_a_header(tmp_path):
    res = _run(tmp_path, "render", "--host", "db1")
    assert res.exit_code == 0, res.output
    headers = [ln for ln in res.output.splitlines() if ln.startswith("==> ")]
    assert headers == ["==> /etc/patroni/patroni.yml postgres:postgres 0600",
                       "==> /etc/etcd/etcd.conf root:root 0644",
                       "==> /etc/pgbackrest/pgbackrest.conf postgres:postgres 0640",
                       "==> /etc/pgha/tls/postgres.crt postgres:postgres 0644",
                       "==> /etc/pgha/tls/postgres.key postgres:postgres 0600",
                       "==> /etc/pgha/tls/pgbackrest.crt postgres:postgres 0644",
                       "==> /etc/pgha/tls/pgbackrest.key postgres:postgres 0600",
                       "==> /etc/pgha/tls/etcd.crt etcd:etcd 0644",
                       "==> /etc/pgha/tls/etcd.key etcd:etcd 0600",
                       "==> /etc/pgha/tls/ca.crt root:root 0644"]
    sec = secrets.load(OutputPaths(tmp_path / "out" / "pgha").secrets)
    assert sec.superuser.password in res.output


def test_render_one_file(tmp_path):
    res = _run(tmp_path, "render", "--host", "db3", "--file", "/etc/patroni/patroni.yml")
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.output)["name"] == "db3"
    res = _run(tmp_path, "render", "--host", "db3", "--file", "/etc/nope")
    assert res.exit_code == 1 and "db3 gets no file /etc/nope" in res.output


def test_unknown_host(tmp_path):
    res = _run(tmp_path, "render", "--host", "db9")
    assert res.exit_code == 1 and "unknown host 'db9'" in res.output


def test_corrupt_secrets_is_one_line(tmp_path):
    path = tmp_path / "out" / "pgha" / "secrets.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("version: [")
    res = _run(tmp_path, "render", "--host", "db1")
    assert res.exit_code == 1
    assert res.output.splitlines()[0] == f"error: secrets file {path} is corrupt: not valid YAML"


@pytest.mark.integration
def test_seeds_command_host_and_rotation(tmp_path):
    res = _run(tmp_path, "seeds", "--host", "lb1")
    assert res.exit_code == 0, res.output
    out = OutputPaths(tmp_path / "out" / "pgha")
    assert (out.seeds / "lb1-cidata.iso").is_file() and not (out.seeds / "db1").exists()
    manifest = json.loads(out.manifest.read_text())
    assert {a["path"] for a in manifest["artifacts"]} >= {"seeds/lb1/pgha/seed.json"}
    assert all(a["secret"] for a in manifest["artifacts"] if a["path"].startswith("seeds/"))
    assert "seeds/" not in out.sha256sums.read_text()
    before = secrets.load(out.secrets)
    seed = (out.seeds / "lb1" / "pgha" / "seed.json").read_text()
    assert _run(tmp_path, "seeds", "--host", "lb1").exit_code == 0
    assert secrets.load(out.secrets) == before
    res = _run(tmp_path, "seeds", "--host", "lb1", "--rotate-secrets")
    assert res.exit_code == 1 and "cannot be combined with --host" in res.output
    assert secrets.load(out.secrets) == before
    res = _run(tmp_path, "seeds", "--rotate-secrets")
    assert res.exit_code == 0, res.output
    after = secrets.load(out.secrets)
    assert after != before
    new_seed = (out.seeds / "lb1" / "pgha" / "seed.json").read_text()
    assert new_seed != seed and after.haproxy_stats.password in new_seed


@pytest.mark.integration
def test_lost_secrets_with_existing_seeds_refuse(tmp_path):
    """README: secrets are never regenerated silently. A missing secrets.yaml beside existing
    seeds is refused with a hint; --rotate-secrets says it on purpose."""
    assert _run(tmp_path, "seeds", "--host", "lb1").exit_code == 0
    out = OutputPaths(tmp_path / "out" / "pgha")
    seed = (out.seeds / "lb1" / "pgha" / "seed.json").read_bytes()
    out.secrets.unlink()
    for args in (("seeds",), ("render", "--host", "db1"), ("seeds", "--force")):
        res = _run(tmp_path, *args)
        assert res.exit_code == 1, res.output
        first = res.output.splitlines()[0]
        assert first.startswith(f"error: secrets file {out.secrets} is missing, but seeds")
        assert "hint: restore secrets.yaml from your backup" in res.output
        assert "--rotate-secrets" in res.output
        assert not out.secrets.exists()
        assert (out.seeds / "lb1" / "pgha" / "seed.json").read_bytes() == seed
    res = _run(tmp_path, "seeds", "--rotate-secrets")
    assert res.exit_code == 0, res.output
    assert out.secrets.exists() and (out.seeds / "lb1" / "pgha" / "seed.json").read_bytes() != seed
