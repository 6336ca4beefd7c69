"""python_deps: a pure-Python sdist built by real rpmbuild into the pgha repository as a noarch
RPM, signed, installable, importable, and closing the depsolve gate's known gap (python3.12-dns
missing on EL-8) against the stand-in repositories."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import rhel8_repos
from conftest import have

from builder.core.context import Context
from builder.core.errors import ConfigError, PghaError
from builder.model import loading as config
from builder.model.signing import KEY_FILE
from builder.stages import depsolve, pipeline

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not have("rpmbuild", "createrepo_c", "dnf"),
                                 reason="needs rpmbuild, createrepo_c, dnf")]


def make_sdist(dest: Path, project: str = "dnspython", version: str = "2.6.1",
               extra: dict[str, str] | None = None) -> Path:
    """A small pure-Python sdist laid out as PyPI's are (top folder, PKG-INFO)."""
    top = f"{project}-{version}"
    files = {
        "PKG-INFO": (f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\n"
                     "Summary: DNS toolkit (stand-in)\nLicense: ISC\n\nlong text\n"),
        "pyproject.toml": "[build-system]\nrequires = ['hatchling']\n",
        "dns/__init__.py": "version = '2.6.1'\n",
        "dns/resolver.py": "def resolve(name):\n    return name\n",
        "tests/__init__.py": "",
        "tests/test_x.py": "def test_x():\n    pass\n",
        **(extra or {}),
    }
    path = dest / f"{top}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime = len(data), 1700000000
            tar.addfile(info, io.BytesIO(data))
    return path


def dep(path: Path, name: str = "python3.12-dns") -> dict[str, str]:
    return {"name": name, "sdist": str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Context:
    tmp = tmp_path_factory.mktemp("pydeps")
    sdist = make_sdist(tmp)
    ctx = Context.create(config.from_data({"name": "chainpy", "python_deps": [dep(sdist)]}),
                         tmp / "out")
    pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS, pipeline.MANIFEST])
    return ctx


def rpmq(*args: str) -> str:
    return subprocess.run(["rpm", *args], capture_output=True, text=True, check=True).stdout


def test_the_sdist_becomes_a_signed_noarch_rpm_in_the_pgha_repo(built: Context,
                                                                 tmp_path: Path) -> None:
    rpm = built.out.rpms / "python3.12-dns-2.6.1-1pgha.el8.noarch.rpm"
    assert rpm.is_file() and (built.out.rpms / "python3.12-dns-2.6.1-1pgha.el8.src.rpm").is_file()
    provides = rpmq("-qp", "--provides", str(rpm))
    assert "python3.12-dns = 2.6.1-1pgha.el8" in provides
    assert "python3.12dist(dnspython) = 2.6.1" in provides
    assert "python(abi) = 3.12" in rpmq("-qp", "--requires", str(rpm))
    files = rpmq("-qpl", str(rpm)).split()
    site = "/usr/lib/python3.12/site-packages"
    assert f"{site}/dns/resolver.py" in files
    assert f"{site}/dnspython-2.6.1.dist-info/METADATA" in files
    assert not any("/tests" in f for f in files)
    db = tmp_path / "db"
    db.mkdir()
    subprocess.run(["rpm", "--dbpath", str(db), "--import", str(built.out.rpms / KEY_FILE)],
                   check=True)
    assert "digests signatures OK" in rpmq("--dbpath", str(db), "--define",
                                           "_pkgverify_level signature", "-K", str(rpm))
    import gzip

    (primary,) = (built.out.rpms / "repodata").glob("*-primary.xml.gz")
    assert "<name>python3.12-dns</name>" in gzip.decompress(primary.read_bytes()).decode()
    # installed, Python finds it and its metadata
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["rpm", "--root", str(root), "-i", "--nodeps", "--nosignature",
                    str(rpm)], check=True, capture_output=True)
    code = ("import dns.resolver, importlib.metadata as m; "
            "print(dns.resolver.resolve('x'), m.version('dnspython'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root / site.lstrip("/"))},
                         check=True).stdout
    assert out.split() == ["x", "2.6.1"]


def test_it_closes_the_gap_the_gate_finds(built: Context, standin_repos: dict[str, Path],
                                          tmp_path: Path) -> None:
    """AppStream without python3.12-dns (the EL-8 case): the gate names it; with python_deps
    the pgha repository provides it and the db role resolves."""
    paths = dict(standin_repos)
    rhel8_repos.without(paths["appstream"], tmp_path / "appstream", "python3.12-dns")
    paths["appstream"] = tmp_path / "appstream"
    repos = rhel8_repos.cluster_repos(paths)
    bare = Context.create(config.from_data({"name": "chainpy", "repos": repos}), tmp_path / "o")
    pipeline.run_steps(bare, [pipeline.SPECS, pipeline.RPMS])
    with pytest.raises(depsolve.DepsolveFailed) as err:
        depsolve.run(bare, ["db"])
    assert any("python3.12-dns" in p for p in err.value.problems)
    assert "python_deps" in str(err.value.hint)
    fixed = Context.create(config.from_data({
        "name": "chainpy", "repos": repos,
        "python_deps": [d.model_dump() for d in built.cluster.python_deps]}), tmp_path / "o")
    pipeline.run_steps(fixed, [pipeline.SPECS, pipeline.RPMS])
    (result,) = depsolve.run(fixed, ["db"])
    assert result.resolved["python3.12-dns"] == ("2.6.1-1pgha.el8", "pgha")


def test_a_wrong_or_native_sdist_is_refused(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path)
    wrong = {**dep(sdist), "sha256": "0" * 64}
    ctx = Context.create(config.from_data({"python_deps": [wrong]}), tmp_path / "o")
    with pytest.raises(PghaError, match="has sha256") as err:
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    assert err.value.hint and "PyPI" in err.value.hint
    (tmp_path / "n").mkdir()
    native = make_sdist(tmp_path / "n", extra={"dns/_speed.c": "int x;\n"})
    ctx = Context.create(config.from_data({"python_deps": [dep(native)]}), tmp_path / "o2")
    with pytest.raises(PghaError, match="not pure Python"):
        pipeline.run_steps(ctx, [pipeline.SPECS, pipeline.RPMS])
    with pytest.raises(ConfigError) as bad:
        config.from_data({"python_deps": [{"name": "python3.12-dns", "sdist": "relative.tgz",
                                           "sha256": "0" * 64}]})
    assert "python_deps[0].sdist" in " ".join(bad.value.problems)
