"""manifest.json and SHA256SUMS are exactly the output folder's artifacts (stages/manifest.py).

The property test runs random sequences of commands (specs, rpms, kickstart [--role], seeds
[--host], build) and cluster edits (database node count, a repository URL, a port) through the
real CLI, and after each command checks: `sha256sum -c SHA256SUMS` passes, the manifest lists
exactly the artifact files present, each with its sha256 and size, and nothing of a node the
cluster no longer has.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from builder.cli import cli
from builder.core.paths import EXAMPLE_CLUSTER
from builder.stages.manifest import NOT_ARTIFACTS

pytestmark = pytest.mark.integration

COMMANDS = [["specs"], ["rpms"], ["kickstart"], ["kickstart", "--role", "db"],
            ["kickstart", "--role", "haproxy"], ["seeds"], ["seeds", "--host", "db1"],
            ["build"]]
EDITS = [("db_nodes", 3), ("db_nodes", 5),
         ("baseos", "http://mirror.pgha.lab/a/"), ("baseos", "http://mirror.pgha.lab/b/"),
         ("postgres_port", 5432), ("postgres_port", 5433)]


def cluster_data(edits: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE_CLUSTER.read_text())
    lb = [n for n in data["nodes"] if "haproxy" in n["roles"]]
    dbs = [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"}
           for i in range(1, edits.get("db_nodes", 3) + 1)]
    data["nodes"] = dbs + lb
    data["repos"]["baseos"] = edits.get("baseos", data["repos"]["baseos"])
    data["ports"]["postgres"] = edits.get("postgres_port", 5432)
    return data


def present(root: Path) -> set[str]:
    """Every regular file of the folder but the bookkeeping and the key store (whose public
    CA certificate is an artifact: TLS is on in these clusters)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.is_symlink()
            and p.relative_to(root).parts[0] not in NOT_ARTIFACTS} | {"pki/ca.crt"}


def check_folder(root: Path, nodes: set[str]) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert set(listed) == present(root)
    for rel, art in listed.items():
        data = (root / rel).read_bytes()
        assert art["sha256"] == hashlib.sha256(data).hexdigest(), rel
        assert art["size"] == len(data), rel
        assert art.get("host") in (None, *nodes), rel
    sums = (root / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in sums) == sorted(
        p for p, a in listed.items() if not a["secret"])
    proc = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=root, check=False,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


step = st.one_of(st.sampled_from(COMMANDS).map(lambda c: ("run", c)),
                 st.sampled_from(EDITS).map(lambda e: ("edit", e)))


@settings(max_examples=5, deadline=None, derandomize=True, database=None,
          phases=[Phase.generate], suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=3, max_size=6))
def test_any_sequence_of_commands_and_edits_keeps_the_manifest_exact(
        steps: list[tuple[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cluster_file, out = Path(tmp) / "cluster.yaml", Path(tmp) / "output"
        edits: dict[str, Any] = {}
        cluster_file.write_text(yaml.safe_dump(cluster_data(edits)))
        for kind, value in [("run", ["build"]), *steps]:
            if kind == "edit":
                edits[value[0]] = value[1]
                cluster_file.write_text(yaml.safe_dump(cluster_data(edits)))
                continue
            result = CliRunner().invoke(cli, ["-c", str(cluster_file), "-o", str(out), *value])
            assert result.exit_code == 0, result.output
            nodes = {n["name"] for n in cluster_data(edits)["nodes"]}
            check_folder(out / "pgha", nodes)


def test_the_reported_sequences(tmp_path: Path) -> None:
    """The two sequences of the report: a repo URL change then `kickstart --role db`, and a
    build with 6 nodes then with 4 (db4's and db5's seeds removed, with a log line)."""
    cluster_file, out = tmp_path / "cluster.yaml", tmp_path / "output"

    def run(edits: dict[str, Any], *argv: str) -> str:
        cluster_file.write_text(yaml.safe_dump(cluster_data(edits)))
        result = CliRunner().invoke(cli, ["-c", str(cluster_file), "-o", str(out), *argv])
        assert result.exit_code == 0, result.output
        check_folder(out / "pgha", {n["name"] for n in cluster_data(edits)["nodes"]})
        return result.output

    run({}, "build")
    run({"baseos": "http://mirror.pgha.lab/other/"}, "kickstart", "--role", "db")
    run({"db_nodes": 5}, "build")
    assert (out / "pgha" / "seeds" / "db5-cidata.iso").is_file()
    said = run({"db_nodes": 3}, "build")
    assert not (out / "pgha" / "seeds" / "db5-cidata.iso").exists()
    assert not (out / "pgha" / "seeds" / "db4").exists() or not any(
        (out / "pgha" / "seeds" / "db4").rglob("*.json"))
    assert "removed seeds/db5-cidata.iso" in said
