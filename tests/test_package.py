"""The tool as a user gets it from pip: `python -m build` makes an sdist and a wheel (the wheel
from the sdist, so both are complete), the wheel goes into a fresh venv, and the commands run
from a folder with no source tree in sight. Also: one version, and nothing but the package in
the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from builder import __version__

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist + wheel built from a copy of the tracked files (no outputs, no caches)."""
    src = tmp_path_factory.mktemp("src")
    files = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                cwd=REPO).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(src)], cwd=src)
    return out


def test_sdist_and_wheel_carry_the_data_and_one_version(dist: Path) -> None:
    wheel = next(dist.glob("pgha_build-*.whl"))
    sdist = next(dist.glob("pgha_build-*.tar.gz"))
    assert wheel.name.startswith(f"pgha_build-{__version__}-")
    assert sdist.name == f"pgha_build-{__version__}.tar.gz"
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("builder/resources/roles/db/role.yaml",
                   "builder/resources/roles/common/agent/pgha-firstboot",
                   "builder/resources/roles/common/agent/pgha_agent/seed.py",
                   "builder/resources/specs/pgha-role.spec.j2",
                   "builder/resources/specs/rpmlint.toml",
                   "builder/resources/kickstart/role.ks.j2",
                   "builder/resources/examples/cluster.yaml"):
        assert needed in names, f"{needed} missing from the wheel"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    dist_info = f"pgha_build-{__version__}.dist-info"
    assert not [n for n in names if n.split("/")[0] not in ("builder", dist_info)]
    with tarfile.open(sdist) as tar:
        members = tar.getnames()
    assert f"pgha_build-{__version__}/roles/haproxy/role.yaml" in members


@pytest.mark.skipif(not shutil.which("rpmbuild"), reason="rpmbuild is needed: scripts/setup")
def test_wheel_in_a_fresh_venv_builds_from_any_folder(dist: Path, tmp_path: Path) -> None:
    wheel = next(dist.glob("pgha_build-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
        cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PGHA_CLUSTER")}
    env["PATH"] = f"{env_dir / 'bin'}:{env['PATH']}"
    where = run([str(py), "-c", "import builder; print(builder.__file__)"], work, env).stdout
    assert where.startswith(str(env_dir)), f"builder imported from {where}, not the venv"
    tool = str(env_dir / "bin" / "pgha-build")
    assert __version__ in run([tool, "--version"], work, env).stdout
    run([tool, "init", "cluster.yaml"], work, env)
    run([tool, "-c", "cluster.yaml", "check"], work, env)
    run([tool, "-c", "cluster.yaml", "build"], work, env)
    run([tool, "-c", "cluster.yaml", "rpms", "--lint"], work, env)
    rpms = sorted(p.name for p in (work / "output" / "pgha" / "rpms").glob("*.noarch.rpm"))
    assert [r.split("-0")[0] for r in rpms] == ["pgha-common", "pgha-role-backup",
                                                "pgha-role-db", "pgha-role-haproxy"], rpms
    kickstarts = sorted(p.name for p in (work / "output" / "pgha" / "kickstart").glob("*.ks"))
    assert kickstarts == ["db.ks", "haproxy.ks"]  # lb1's backup role rides in haproxy's image


def test_pyproject_lists_every_builder_package_and_maps_the_data_folders() -> None:
    """pyproject.toml names the packages explicitly (it maps specs/, kickstart/ and roles/ into
    builder.resources): a new builder/ subpackage must be added there or the wheel lacks it."""
    import tomllib

    conf = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts)
             for p in (REPO / "builder").rglob("__init__.py")}
    assert found <= set(conf["packages"]), f"add to pyproject.toml: {found - set(conf['packages'])}"
    for name in ("specs", "kickstart", "roles"):
        assert conf["package-dir"][f"builder.resources.{name}"] == name
        assert (REPO / name).is_dir() and not (REPO / "builder" / "resources" / name).exists()
