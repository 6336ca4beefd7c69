"""Seeds: the seed.json contract, rooted rendering for the lab, and the `seeds` stage on disk."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess

import pytest

from builder.core.errors import ToolFailed
from builder.model import tlsplan
from builder.model.platform import ROOTED_FIELDS, layout
from builder.model.secrets import generate
from builder.stages import seeds


def _sec(ctx):
    """The cluster's passwords and PKI (made once per output folder, as a build does)."""
    return tlsplan.load_secrets(ctx.out, ctx.cluster)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_seed_json_follows_the_contract(ctx):
    seed = seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx))
    assert seed["schema_version"] == 1 and seed["cluster"] == "pgha"
    assert seed["instance_id"].startswith("pgha-db1-")
    assert seed["node"] == {"name": "db1", "fqdn": "db1.pgha.lab", "address": "10.77.0.11",
                            "prefix": 24, "gateway": "10.77.0.1", "dns": ["10.77.0.1"],
                            "domain": "pgha.lab", "mac": None}
    assert seed["roles"] == ["db"]
    assert [s["name"] for s in seed["services"]] == ["etcd", "pgbackrest", "patroni",
                                                   "pgha-exporter"]
    assert seed["services"][0] == {"name": "etcd", "user": "etcd", "argv": ["/usr/bin/etcd"],
                                   "env_file": "/etc/etcd/etcd.conf"}
    assert seed["services"][2]["argv"] == ["/usr/bin/patroni", "/etc/patroni/patroni.yml"]
    assert seed["disable_services"] == ["postgresql-16"]
    assert seed["firewall_services"] == []  # every db port is limited by source
    assert ('rule family="ipv4" source address="10.77.0.12/32" service name="pgha-etcd" accept'
            in seed["firewall_rules"])
    assert {"kind": "http", "url": "https://10.77.0.11:8008/health", "service": "patroni",
            "expect": [200, 503], "cafile": "/etc/pgha/tls/ca.crt"} in seed["health"]
    assert {"kind": "tcp", "host": "10.77.0.11", "port": 2379, "service": "etcd"} in seed["health"]
    assert seed["protected_dirs"] == ["/var/lib/pgsql/16/data"]
    for f in seed["files"]:
        assert set(f) == {"path", "owner", "group", "mode", "sha256", "content"}
        assert f["sha256"] == hashlib.sha256(f["content"].encode()).hexdigest()
    patroni = next(f for f in seed["files"] if f["path"] == "/etc/patroni/patroni.yml")
    assert (patroni["owner"], patroni["group"], patroni["mode"]) == ("postgres", "postgres", "0600")


def test_instance_id_is_stable_and_follows_content(ctx):
    node = ctx.cluster.node("db1")
    a = seeds.render_seed(ctx, node, _sec(ctx))["instance_id"]
    assert seeds.render_seed(ctx, node, _sec(ctx))["instance_id"] == a
    assert seeds.render_seed(ctx, node, generate().with_tls(_sec(ctx).tls))["instance_id"] != a


def test_layout_rooted_prefixes_places_not_binaries():
    lay = layout("debian12", 15)
    rooted = lay.rooted("/lab/db1/")
    for field in ROOTED_FIELDS:
        assert getattr(rooted, field) == "/lab/db1" + getattr(lay, field)
    assert rooted.pg_bin_dir == lay.pg_bin_dir and rooted.patroni_bin == lay.patroni_bin
    assert lay.rooted("") is lay


def test_root_prefix_moves_contents_and_argv_not_file_paths(ctx):
    plain = seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx))
    lab = seeds.render_seed(ctx, ctx.cluster.node("db1"), _sec(ctx), root_prefix="/srv/lab/db1")
    assert [f["path"] for f in lab["files"]] == [f["path"] for f in plain["files"]]
    assert lab["protected_dirs"] == plain["protected_dirs"]
    assert lab["services"][0]["env_file"] == "/srv/lab/db1/etc/etcd/etcd.conf"
    assert lab["services"][2]["argv"] == ["/usr/bin/patroni", "/srv/lab/db1/etc/patroni/patroni.yml"]
    assert lab["services"][1]["argv"] == [
        "/usr/bin/pgbackrest", "--config=/srv/lab/db1/etc/pgbackrest/pgbackrest.conf", "server"]
    text = lab["files"][0]["content"]
    assert 'data_dir: "/srv/lab/db1/var/lib/pgsql/16/data"' in text
    assert 'unix_socket_directories: "/srv/lab/db1/run/postgresql"' in text
    assert 'bin_dir: "/usr/pgsql-16/bin"' in text
    assert "ETCD_DATA_DIR=/srv/lab/db1/var/lib/etcd/pgha.etcd" in lab["files"][1]["content"]


def test_cidata_files(ctx):
    node = ctx.cluster.node("db2")
    files = seeds.seed_files(ctx, node, seeds.render_seed(ctx, node, _sec(ctx)))
    assert sorted(files) == sorted(seeds.SEED_FILES)
    import yaml

    meta = yaml.safe_load(files["meta-data"])
    assert meta["local-hostname"] == "db2" and meta["instance-id"].startswith("pgha-db2-")
    net = yaml.safe_load(files["network-config"])
    eth = net["ethernets"]["eth0"]
    assert net["version"] == 2 and eth["addresses"] == ["10.77.0.12/24"]
    assert eth["routes"] == [{"to": "0.0.0.0/0", "via": "10.77.0.1"}]
    assert files["user-data"].startswith("#cloud-config\n")
    assert json.loads(files["pgha/seed.json"])["node"]["name"] == "db2"


@pytest.mark.integration
def test_stage_writes_private_folders_and_cidata_isos(ctx):
    arts = seeds.write_seeds(ctx, secrets=_sec(ctx)).artifacts
    assert [a.path for a in arts if not a.secret] == ["pki/ca.crt"]  # public: clients need it
    arts = [a for a in arts if a.secret]
    assert len(arts) == 5 * len(ctx.cluster.nodes)
    root = ctx.out.seeds
    assert _mode(root) == 0o700
    for node in ctx.cluster.nodes:
        folder = root / node.name
        assert _mode(folder) == 0o700 and _mode(folder / "pgha") == 0o700
        for rel in seeds.SEED_FILES:
            assert _mode(folder / rel) == 0o600
        iso = root / f"{node.name}-cidata.iso"
        assert _mode(iso) == 0o600
        listing = subprocess.run(["xorriso", "-indev", str(iso), "-ls", "/", "/pgha"],
                                 capture_output=True, text=True, check=True).stdout
        for name in ("meta-data", "network-config", "user-data", "seed.json"):
            assert f"'{name}'" in listing
        blkid = subprocess.run(["blkid", str(iso)], capture_output=True, text=True,
                               check=False).stdout
        assert 'LABEL="cidata"' in blkid and 'TYPE="iso9660"' in blkid
    assert not list(root.glob(".*"))  # no temporary leftovers


@pytest.mark.integration
def test_iso_is_reproducible_and_stage_cached(ctx):
    seeds.write_seeds(ctx, ["db1"], _sec(ctx))
    iso = ctx.out.seeds / "db1-cidata.iso"
    first = iso.read_bytes()
    calls = ctx.runner.ran("xorriso")
    seeds.write_seeds(ctx, ["db1"], _sec(ctx))
    assert ctx.runner.ran("xorriso") == calls  # up to date: nothing rebuilt
    iso.unlink()
    shutil.rmtree(ctx.out.seeds / "db1")
    seeds.write_seeds(ctx, ["db1"], _sec(ctx))
    assert iso.read_bytes() == first


@pytest.mark.integration
def test_failed_iso_leaves_no_half_seed(ctx, monkeypatch):
    seeds.write_seeds(ctx, ["db1"], _sec(ctx))
    before = (ctx.out.seeds / "db1" / "pgha" / "seed.json").read_text()

    def broken(argv, **kwargs):
        raise ToolFailed("xorriso failed", argv=list(map(str, argv)), stderr_tail="boom")

    monkeypatch.setattr(ctx.runner, "run", broken)
    ctx.force = True
    with pytest.raises(ToolFailed):
        seeds.write_seeds(ctx, ["db1"], generate().with_tls(_sec(ctx).tls))
    assert sorted(p.name for p in ctx.out.seeds.iterdir()) == ["db1", "db1-cidata.iso"]
    assert (ctx.out.seeds / "db1" / "pgha" / "seed.json").read_text() == before
