"""The lab runs the user's artifacts (builder.lab.artifacts): after `build`, `lab up` boots the
nodes with output/<cluster>/'s secrets and CA, from RPMs built beside the user's and listed in
the same manifest, and `lab status` names that manifest by its sha256. Root, real processes."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from labclusters import cluster_data

from builder.cli import cli
from builder.core.paths import OutputPaths
from builder.lab import lab as labmod
from builder.lab import status
from builder.model import loading, tlsplan

pytestmark = pytest.mark.lab

DATA = cluster_data("truthart", "10.88.0", (38000, 38001, 38002))


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.rpm")}


@pytest.fixture(scope="module")
def built() -> Iterator[tuple[Path, labmod.Lab, dict[str, str]]]:
    output = Path(tempfile.mkdtemp(prefix="pgha-truthart-"))
    cluster_file = output / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump(DATA))
    result = CliRunner().invoke(cli, ["-c", str(cluster_file), "-o", str(output), "build"])
    assert result.exit_code == 0, result.output
    folder = output / "truthart"
    user_rpms = _digests(folder / "rpms")
    cluster = loading.load(cluster_file)
    the_lab = labmod.Lab.of(labmod.lab_cluster(cluster), output, source=cluster)
    labmod.down(the_lab)
    try:
        labmod.up(the_lab, timeout=180)
        yield folder, the_lab, user_rpms
    finally:
        labmod.down(the_lab)
        shutil.rmtree(output, ignore_errors=True)


def test_the_nodes_run_with_the_outputs_ca_and_secrets(
        built: tuple[Path, labmod.Lab, dict[str, str]]) -> None:
    folder, the_lab, _ = built
    cluster = the_lab.source
    assert cluster is not None
    sec = tlsplan.load_secrets(OutputPaths(folder), cluster)
    assert sec.tls is not None
    ca = (folder / "pki" / "ca.crt").read_text()
    for node in the_lab.cluster.nodes:
        dirs = the_lab.node_dirs(node.name)
        seed = json.loads((dirs.seed / "pgha" / "seed.json").read_text())
        on_node = {f["path"]: (dirs.root / f["path"].lstrip("/")).read_text()
                   for f in seed["files"]}
        assert ca in on_node.values(), node.name
        everything = "\n".join(on_node.values())
        if node.name.startswith("db"):
            assert sec.replication.password in everything
            assert sec.superuser.password in everything
    assert the_lab.sql().can_write()  # the output's superuser password opens the cluster


def test_the_lab_rpms_sit_beside_the_users_in_one_manifest(
        built: tuple[Path, labmod.Lab, dict[str, str]]) -> None:
    folder, the_lab, user_rpms = built
    assert _digests(folder / "rpms") == user_rpms  # the user's RPMs are untouched
    lab_rpms = _digests(folder / "debian12" / "rpms")
    assert set(lab_rpms) == set(user_rpms)  # the same packages, built for the lab's platform
    assert _digests(the_lab.ctx.out.rpms) == lab_rpms  # the lab installs exactly those
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {a["path"]: a for a in manifest["artifacts"]}
    for name, digest in lab_rpms.items():
        art = listed[f"debian12/rpms/{name}"]
        assert art["sha256"] == digest and art["platform"] == "debian12"
    assert manifest["platform"] == "rhel8"
    proc = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=folder,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_lab_status_prints_the_digest_of_the_manifest_that_runs(
        built: tuple[Path, labmod.Lab, dict[str, str]]) -> None:
    folder, the_lab, _ = built
    digest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    data = status.collect(the_lab)
    assert data["artifacts"]["manifest_sha256"] == digest and data["artifacts"]["current"]
    assert f"sha256 {digest}" in status.table(data)
