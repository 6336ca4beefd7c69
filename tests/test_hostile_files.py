"""The hostile-input test for the files the builder and the agent read besides the cluster
file (issue 27), companion to tests/test_hostile.py: secrets.yaml, .treeinfo, manifest.json and
the seed JSON, with fuzzed *structure* (any subtree replaced by lists, mappings, numbers,
booleans, null or odd text; keys added and removed), not only fuzzed strings.

Property for each: the reader either refuses with its own one-line error, or what it accepts
obeys the rules: user names are PostgreSQL identifiers, tree paths stay inside the tree,
published files lie inside the output folder and match the build's record, and a seed is
accepted only if it validates. Never another exception (a traceback). Bounded for CI:
PGHA_HYPOTHESIS_EXAMPLES (default 80) per property, derandomized.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agent_support import AGENT_DIR, make_root, make_seed
from test_images_support import TREEINFO, make_tree
from test_release import default_files, write_build

from builder.core.errors import PghaError
from builder.core.paths import OutputPaths
from builder.model import secrets
from builder.release import publish
from builder.stages import installsrc

sys.path.insert(0, str(AGENT_DIR))

from pgha_agent import seed as agent_seed
from pgha_agent.errors import SeedInvalid

EXAMPLES = int(os.environ.get("PGHA_HYPOTHESIS_EXAMPLES", "80"))
SETTINGS = settings(max_examples=EXAMPLES, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

ODD_TEXT = st.sampled_from([
    "", " ", "\n", "../../etc/passwd", "/etc/hostname", "a\nb: c", "%2e%2e/x", "all", "pg_x",
    "x" * 300, "ü", "\x00", "$(id)", "--", "0", "1e999", "images/pxeboot/vmlinuz",
    "secrets.yaml", "pki/ca.key", "replicator", "0" * 64,
])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                    st.floats(allow_nan=True), st.text(max_size=40), ODD_TEXT)
TREES = st.recursive(SCALARS, lambda kids: st.one_of(
    st.lists(kids, max_size=4),
    st.dictionaries(st.one_of(st.text(max_size=12), ODD_TEXT), kids, max_size=4)),
    max_leaves=12)


def _mutate(data: Any, draw: st.DataObject, depth: int = 0) -> Any:
    """data with one subtree replaced, one key removed or one key added (structure fuzzing);
    a string leaf is replaced by odd text half of the time, any structure otherwise."""
    if isinstance(data, str):
        return draw.draw(st.one_of(ODD_TEXT, st.text(max_size=40), TREES))
    if depth > 5 or not isinstance(data, (dict, list)) or not data or draw.draw(
            st.integers(0, 7)) == 0:
        return draw.draw(TREES)
    if isinstance(data, dict):
        key = draw.draw(st.sampled_from(sorted(data, key=str)))
        action = draw.draw(st.sampled_from(["into", "into", "into", "into", "drop", "add"]))
        out = dict(data)
        if action == "drop":
            del out[key]
        elif action == "add":
            out[draw.draw(st.one_of(st.text(max_size=12), ODD_TEXT))] = draw.draw(TREES)
        else:
            out[key] = _mutate(data[key], draw, depth + 1)
        return out
    i = draw.draw(st.integers(0, len(data) - 1))
    return [*data[:i], _mutate(data[i], draw, depth + 1), *data[i + 1:]]


def _one_line(err: PghaError) -> None:
    assert "\n" not in err.message and "\n" not in (err.hint or "")


# --- secrets.yaml ---------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_secrets_yaml_structure(tmp_path: Path, data: st.DataObject) -> None:
    valid = yaml.safe_load(secrets.dump("pgha", secrets.generate()))
    text = yaml.safe_dump(_mutate(valid, data), allow_unicode=True)
    try:
        sec = secrets.parse(tmp_path / "secrets.yaml", text)
    except PghaError as err:
        _one_line(err)
        return
    for name in secrets.CREDENTIALS:
        assert secrets.user_name_problem(getattr(sec, name).username) is None
        assert all(c in secrets.ALPHABET for c in getattr(sec, name).password)


# --- .treeinfo ------------------------------------------------------------------------------

TREE_VALUES = st.one_of(ODD_TEXT, st.text(max_size=30), st.sampled_from(
    ["images/pxeboot/vmlinuz", "boot/../../../etc/hostname", "link/vmlinuz", "link", "BaseOS",
     "images/pxeboot/initrd.img", "./images/pxeboot/vmlinuz"]))


@SETTINGS
@given(kernel=TREE_VALUES, initrd=TREE_VALUES, repo=TREE_VALUES, junk=st.text(max_size=60))
def test_treeinfo_paths_stay_inside_the_tree(tmp_path_factory: pytest.TempPathFactory,
                                             kernel: str, initrd: str, repo: str,
                                             junk: str) -> None:
    base = tmp_path_factory.mktemp("ti")
    (base / "secret").write_text("not for the tree\n")
    tree = make_tree(base / "tree")
    (tree / "link").symlink_to(base)  # a symlink that leaves the tree
    text = TREEINFO.format(name="Red Hat Enterprise Linux", version="8.10")
    text = (text.replace("kernel = images/pxeboot/vmlinuz", f"kernel = {kernel}")
            .replace("initrd = images/pxeboot/initrd.img", f"initrd = {initrd}")
            .replace("repository = BaseOS", f"repository = {repo}") + junk)
    (tree / ".treeinfo").write_text(text, errors="surrogateescape")
    try:
        src = installsrc.load(str(tree))
    except installsrc.SourceError as err:
        _one_line(err)
        return
    real = tree.resolve()
    for rel in (src.kernel, src.initrd):
        assert real in (real / rel).resolve().parents
    for url in installsrc.media_repos(src).values():
        assert url.startswith(real.as_uri()) and "/../" not in url


# --- manifest.json --------------------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_manifest_structure(tmp_path_factory: pytest.TempPathFactory,
                            data: st.DataObject) -> None:
    out = OutputPaths(tmp_path_factory.mktemp("m") / "output" / "pgha")
    write_build(out.root, default_files())
    (out.root.parent.parent / "hostname").write_text("outside\n")
    manifest = json.loads(out.manifest.read_text())
    out.manifest.write_text(json.dumps(_mutate(manifest, data)))
    try:
        items = publish.collect(out)
    except PghaError as err:
        _one_line(err)
        return
    root = out.root.resolve()
    for item in items:
        assert root in item.path.resolve().parents
        if item.rel not in ("manifest.json", "SHA256SUMS"):
            assert item.rel in default_files() and not item.rel.startswith(("seeds/", "pki/"))
            assert item.rel != "kickstart/db1.ks"


# --- the seed JSON (the agent) --------------------------------------------------------------

@SETTINGS
@given(data=st.data())
def test_seed_json_structure(tmp_path_factory: pytest.TempPathFactory,
                             data: st.DataObject) -> None:
    from pgha_agent.rootfs import Root

    root = Root(str(make_root(tmp_path_factory.mktemp("r") / "root")))
    raw = json.dumps(_mutate(make_seed(), data)).encode()
    try:
        checked = agent_seed.validate(raw, root)
    except SeedInvalid as exc:
        assert "\n" not in str(exc)
        return
    # accepted: validating it again gives the same, and its paths are canonical
    assert agent_seed.validate(raw, root).data == checked.data
    for entry in checked.data["files"]:
        assert entry["path"].startswith("/") and "/../" not in entry["path"]
