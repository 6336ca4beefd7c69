"""check --deep with the real patroni, haproxy and etcd; broken configs must fail."""

from __future__ import annotations

import pytest

from builder.core.errors import ValidationFailed
from builder.model.secrets import load_or_create
from builder.stages import deepcheck, seeds
from tests.conftest import have

pytestmark = pytest.mark.integration


def test_every_generated_config_passes(ctx):
    if not have("patroni", "haproxy", "etcd"):
        pytest.fail("patroni, haproxy and etcd are required: run scripts/setup")
    checked = deepcheck.run(ctx)
    assert len(checked) == 7  # 3 patroni.yml, 3 etcd.conf, 1 haproxy.cfg


def _broken(ctx, suffix, old, new, monkeypatch):
    render = seeds.render_seed

    def patched(c, node, sec, root_prefix=""):
        seed = render(c, node, sec, root_prefix)
        for f in seed["files"]:
            if f["path"].endswith(suffix) and node.name in ("db2", "lb1"):
                assert old in f["content"]
                f["content"] = f["content"].replace(old, new)
        return seed

    monkeypatch.setattr(seeds, "render_seed", patched)


@pytest.mark.parametrize(("suffix", "old", "new", "tool"), [
    ("patroni.yml", "ttl: 30", "ttl: thirty", "patroni --validate-config"),
    ("haproxy.cfg", "balance roundrobin", "balance nonsense", "haproxy -c"),
    ("etcd.conf", "ETCD_INITIAL_CLUSTER_STATE=new", "ETCD_INITIAL_CLUSTER_STATE=bogus", "etcd"),
])
def test_broken_config_fails_with_one_line(ctx, monkeypatch, caplog, suffix, old, new, tool):
    _broken(ctx, suffix, old, new, monkeypatch)
    with pytest.raises(ValidationFailed) as err:
        deepcheck.run(ctx)
    assert tool in err.value.message and suffix in err.value.message
    assert "\n" not in err.value.message
    host = "lb1" if suffix == "haproxy.cfg" else "db2"
    assert f"{host} /etc/" in err.value.message
    for value in load_or_create(ctx.out, "pgha").values():
        assert value not in err.value.message and value not in caplog.text


def test_localize_etcd_rewrites_every_url(tmp_path):
    envs = {"db1": {"ETCD_NAME": "db1", "ETCD_INITIAL_CLUSTER":
                    "db1=http://10.0.0.1:2380,db2=http://10.0.0.2:2380"},
            "db2": {"ETCD_NAME": "db2", "ETCD_INITIAL_CLUSTER":
                    "db1=http://10.0.0.1:2380,db2=http://10.0.0.2:2380"}}
    out = deepcheck.localize_etcd(envs, tmp_path)
    assert out["db1"]["ETCD_INITIAL_CLUSTER"] == out["db2"]["ETCD_INITIAL_CLUSTER"]
    assert "10.0.0" not in str(out)
    assert out["db1"]["ETCD_LISTEN_PEER_URLS"] in out["db1"]["ETCD_INITIAL_CLUSTER"]


def test_missing_tool_is_a_clear_error(ctx, monkeypatch):
    from builder.core.errors import ToolMissing

    monkeypatch.setattr("shutil.which", lambda tool: None if tool == "haproxy" else "/bin/x")
    with pytest.raises(ToolMissing, match="haproxy"):
        deepcheck.run(ctx)
