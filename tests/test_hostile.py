"""Hostile strings in every string field of the cluster file (hypothesis).

For each example one string field (or a pins / patroni.parameters key or value) gets a hostile
value: a valid value with a line break, quote, shell expansion, RPM macro, kickstart section,
YAML key or jinja2 tag spliced in, or arbitrary text. Either `check` rejects the file with
exit 2, or every artifact parses with its own parser and holds exactly what the model put
there: pykickstart sees the same commands and scripts as for the unmodified file (role and
host kickstarts), the seed's meta-data, network-config and user-data the same YAML keys, patroni.yml
(yaml.safe_load) has the same keys (parameters: exactly the model's), etcd.conf the same
variables, haproxy.cfg passes `haproxy -c` with the same sections, each spec the same
sections, and the agent accepts every seed. `test_rpm_scriptlets_are_ours` builds the RPMs
of a cluster with the most unusual valid pins and compares `rpm -qp --scripts`.

Bounded for CI: a fixed number of examples (PGHA_HYPOTHESIS_EXAMPLES, default 120), derandomized.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from test_agent_support import AGENT_DIR

from builder.cli import cli
from builder.core.context import Context
from builder.model import loading, roles, tlsplan
from builder.model.cluster import resolved_dict
from builder.pxe import tree as pxe
from builder.stages import deepcheck, kickstart, seeds, specs
from builder.stages import f5 as f5stage

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import seed as agent_seed

EXAMPLES = int(os.environ.get("PGHA_HYPOTHESIS_EXAMPLES", "120"))
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJslPnSAmYU/kKRD6jsUrKoYsRzD9lF+C7sxQ1O7COLi ops@x"
PAYLOADS = [
    "\n", "\r\n", '"', "'", "`id`", "$(id)", "${HOME}", "\\", "#", ";", "|", "&", " ", "\t",
    "\x00", "\u2028", "\x85", "é", "%", "%%", "%{lua: os.exit(7)}", "%{?_unitdir}",
    "%(touch /tmp/pgha-pwned)", "\n%pre\ntouch /tmp/pgha-pwned\n%end\n",
    '"\n%post --nochroot\ntouch /mnt/sysimage/pwned\n%end\n', "\n%pre -p /bin/sh\n",
    "\nRequires: evil\n", "\nrestapi:\n  listen: 0.0.0.0:1\n", ": x", "{a: 1}", "- x",
    "\n    server evil 192.0.2.1:5432\n", "\nETCD_EVIL=1\n", "{{ 7 * 7 }}", "{% raw %}",
    " --nochroot", "--interpreter=/bin/sh", "a" * 300, "..", "/../", "//",
]
EXTRA = {"admin.ssh_key": KEY, "image.install_source": "/srv/rhel-8.10.iso",
         "image.cloud_image": "/srv/rhel-8.10.qcow2", "nodes.0.mac": "52:54:00:12:34:56",
         "nodes.2.mac": "52:54:00:12:34:59"}


def _base(kind: str) -> dict[str, Any]:
    """The reference cluster with every optional string set; "haproxy": two load balancers
    and a virtual IP (keepalived too); "f5": a BIG-IP instead (as3.json, tmsh.txt)."""
    nodes = copy.deepcopy(resolved_dict(loading.from_data({}))["nodes"])
    if kind == "haproxy":
        nodes.append({"name": "lb2", "roles": ["haproxy"], "address": "10.77.0.9"})
        lb: dict[str, Any] = {"virtual_ip": "10.77.0.100"}
    else:
        nodes = nodes[:3]
        lb = {"kind": "f5", "virtual_ip": "10.77.0.50",
              "f5": {"self_ips": ["10.77.0.5", "10.77.0.6"], "tenant": "shop"}}
    data = resolved_dict(loading.from_data({"nodes": nodes, "load_balancer": lb}))
    data.pop("schema_version")
    data["pins"] = {"patroni": "4.0.4"}
    data["patroni"]["parameters"] = {"max_connections": 200, "shared_buffers": "1GB"}
    for dotted, value in EXTRA.items():
        _set(data, dotted, value)
    return data


def _set(data: Any, dotted: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in dotted.split(".")]
    for k in keys[:-1]:
        data = data[k]
    data[keys[-1]] = value


def _get(data: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        data = data[int(k) if k.isdigit() else k]
    return data


def _string_paths(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _string_paths(v, f"{prefix}{k}.")]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _string_paths(v, f"{prefix}{i}.")]
    return [prefix[:-1]] if isinstance(data, str) else []


BASES = {kind: _base(kind) for kind in ("haproxy", "f5")}
FIELDS = {kind: sorted(_string_paths(base)) + ["pins.<key>", "patroni.parameters.<key>"]
          for kind, base in BASES.items()}


@st.composite
def hostile(draw: st.DrawFn, base: str) -> str:
    payload = draw(st.sampled_from(PAYLOADS) | st.text(max_size=12))
    where = draw(st.sampled_from(["end", "start", "middle", "alone"]))
    if where == "alone":
        return payload
    if where == "end":
        return base + payload
    if where == "start":
        return payload + base
    cut = draw(st.integers(0, len(base)))
    return base[:cut] + payload + base[cut:]


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(BASES)))
    field = draw(st.sampled_from(FIELDS[kind]))
    data = copy.deepcopy(BASES[kind])
    if field.endswith("<key>"):
        parent = _get(data, field.rsplit(".", 1)[0])
        old = draw(st.sampled_from(sorted(parent)))
        parent[draw(hostile(old))] = parent.pop(old)
    else:
        value = draw(hostile(_get(data, field)))
        if ".roles." in field:
            assume(value not in roles.assignable_roles())
        _set(data, field, value)
    return kind, field, data


# --- what every artifact of a cluster holds, as its own parser sees it ------------------------

def _ks_shape(text: str) -> tuple[list[str], list[str]]:
    from pykickstart.parser import KickstartParser
    from pykickstart.version import RHEL8, makeVersion

    handler = makeVersion(RHEL8)
    KickstartParser(handler, errorsAreFatal=True).readKickstartFromString(text)
    lines = str(handler).split("\n%", 1)[0].splitlines()  # commands come before sections
    commands = sorted({ln.split()[0] for ln in lines if ln.strip() and ln[0].isalpha()})
    scripts = [f"{s.type}:{s.inChroot}:{s.interp}:{s.errorOnFail}:{s.logfile}" for s in handler.scripts]
    return commands, scripts


def _yaml_shape(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _yaml_shape(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_yaml_shape(v) for v in data]
    return type(data).__name__


def _sections(text: str, pattern: str) -> list[str]:
    return [ln.split()[0] for ln in text.splitlines() if re.match(pattern, ln)]


def artifacts(cluster_data: dict[str, Any], tmp: Path) -> dict[str, Any]:
    cluster = loading.from_data(cluster_data)
    ctx = Context.create(cluster, tmp / "out")
    sec = tlsplan.load_secrets(ctx.out, cluster)
    shapes: dict[str, Any] = {}
    for name, text in kickstart.render_all(ctx).items():
        shapes[f"ks:{name}"] = _ks_shape(text)
    for index, node in enumerate(cluster.nodes):
        shapes[f"host-ks:nodes[{index}]"] = _ks_shape(pxe.render_host(ctx, node))
    for role in specs.roles_in_use(ctx):
        text = specs.render_spec(ctx, specs.plan(ctx, role))
        shapes[f"spec:{role.name}"] = _sections(text, r"^%(pre|post|preun|postun|files|install|"
                                                      r"build|prep|description|changelog)\b")
    for index, node in enumerate(cluster.nodes):
        seed = seeds.render_seed(ctx, node, sec)
        agent_seed.validate(json.dumps(seed).encode(), _AnyRoot())
        for rel, text in seeds.seed_files(ctx, node, seed).items():
            if rel != "pgha/seed.json":
                shapes[f"nodes[{index}]:{rel}"] = _yaml_shape(yaml.safe_load(text))
        for f in seed["files"]:
            where = f"nodes[{index}]:{f['path']}"
            if f["path"].endswith("patroni.yml"):
                data = yaml.safe_load(f["content"])
                params = data["bootstrap"]["dcs"]["postgresql"].pop("parameters")
                expected = {k: v for k, v in cluster.patroni.parameters.items()}
                assert {k: params[k] for k in expected} == expected, where
                shapes[where] = _yaml_shape(data)
            elif f["path"].endswith("etcd.conf"):
                shapes[where] = sorted(deepcheck.parse_env(f["content"]))
            elif f["path"].endswith("haproxy.cfg"):
                shapes[where] = _sections(f["content"], r"^(global|defaults|listen|frontend|"
                                                        r"backend)\b")
            elif f["path"].endswith("keepalived.conf"):
                shapes[where] = _keepalived_shape(f["content"])
    if cluster.load_balancer.kind == "f5":
        files = f5stage.render_all(ctx)
        shapes["f5:as3.json"] = _yaml_shape(json.loads(files["as3.json"]))
        shapes["f5:tmsh.txt"] = _shell_shape(files["tmsh.txt"], tmp)
    return shapes


def _keepalived_shape(text: str) -> list[str]:
    """Block openings and the brace balance: a value cannot open or close a block."""
    words = re.findall(r"^\s*([A-Za-z_]+)[^\n{]*\{", text, flags=re.MULTILINE)
    assert text.count("{") == text.count("}")
    return words


def _shell_shape(text: str, tmp: Path) -> list[str]:
    """bash -n passes; the commands (first word of each line outside quotes) are the same."""
    script = tmp / "tmsh.sh"
    script.write_text(text)
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    return [ln.split()[0] for ln in text.splitlines() if ln.strip() and ln[0].isalpha()]


def _haproxy_ok(cluster_data: dict[str, Any], tmp: Path) -> None:
    ctx = Context.create(loading.from_data(cluster_data), tmp / "out")
    work = Path(tempfile.mkdtemp(prefix="pgha-h-"))  # short: HAProxy limits socket paths
    try:
        for f in deepcheck.collect(ctx, tlsplan.load_secrets(ctx.out, ctx.cluster), work):
            if f.check == "haproxy":
                path = work / f"{f.host}.cfg"
                path.write_text(f.content)
                proc = subprocess.run(["haproxy", "-c", "-f", str(path)], capture_output=True,
                                      text=True, check=False)
                assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _AnyRoot:
    def exists(self, node_path: str) -> bool:
        return True


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return {kind: artifacts(base, tmp_path_factory.mktemp(kind)) for kind, base in BASES.items()}


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.filter_too_much])
@given(mutation())
def test_hostile_value_is_rejected_or_contained(baseline: dict[str, dict[str, Any]],
                                                tmp_path: Path,
                                                case: tuple[str, str, dict[str, Any]]) -> None:
    kind, field, data = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    cluster_file = work / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    res = CliRunner().invoke(cli, ["-o", str(work / "out"), "-c", str(cluster_file), "check"])
    assert res.exception is None or isinstance(res.exception, SystemExit), (field, res.exception)
    if res.exit_code == 2:
        assert "Traceback" not in res.output
        event("rejected by check")
        return
    event(f"accepted: {field}")
    assert res.exit_code == 0, (field, res.output)
    assert artifacts(data, work) == baseline[kind], field
    _haproxy_ok(data, work)


def test_the_base_clusters_cover_every_artifact(baseline: dict[str, dict[str, Any]]) -> None:
    for fields in FIELDS.values():
        assert len(fields) > 30 and "admin.ssh_key" in fields and "repos.pgha" in fields
    assert "load_balancer.f5.tenant" in FIELDS["f5"]
    both = {k for shapes in baseline.values() for k in shapes}
    for suffix in ("patroni.yml", "etcd.conf", "haproxy.cfg", "keepalived.conf",
                   "network-config", "f5:as3.json", "f5:tmsh.txt"):
        assert any(k.endswith(suffix) for k in both), suffix
    assert any(k.startswith("ks:") for k in both) and any(k.startswith("host-ks:") for k in both)


@pytest.mark.integration
def test_rpm_scriptlets_are_ours(tmp_path: Path) -> None:
    """The most unusual valid pins and parameters: the RPMs' scriptlets equal the default's."""
    from builder.stages import pipeline

    def scripts(data: dict[str, Any], out: Path) -> dict[str, str]:
        ctx = Context.create(loading.from_data(data), out, force=True)
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
        return {p.name.split("-0")[0]: subprocess.run(
            ["rpm", "-qp", "--scripts", str(p)], capture_output=True, text=True,
            check=True).stdout for p in sorted(ctx.out.rpms.glob("*.noarch.rpm"))}

    odd = copy.deepcopy(BASES["haproxy"])
    odd["pins"] = {"patroni": "99:4.0.4~rc1^post+x-1.el8_10", "etcd": "3.5.17",
                   "patroni-etcd": "0:4.0.4"}
    odd["name"] = "p-9"
    assert scripts(odd, tmp_path / "odd") == scripts(BASES["haproxy"], tmp_path / "base")
