"""No secret leaves the seeds: a full build, every other artifact and the logs searched."""

from __future__ import annotations

import io
import logging
import subprocess
from pathlib import Path

import pytest
from support import RecordingRunner

from builder.core import log
from builder.core.context import Context
from builder.model import loading as config
from builder.model import secrets
from builder.stages import pipeline

pytestmark = pytest.mark.integration


def _extract_rpms(rpms: list[Path], dest: Path) -> list[Path]:
    for rpm in rpms:
        target = dest / rpm.name
        target.mkdir(parents=True)
        payload = subprocess.run(["rpm2cpio", str(rpm)], capture_output=True, check=True).stdout
        subprocess.run(["cpio", "-idm", "--quiet"], input=payload, cwd=target, check=True)
    return [p for p in dest.rglob("*") if p.is_file()]


def test_secrets_only_in_seeds(tmp_path):
    ctx = Context.create(config.load(None), tmp_path / "out", RecordingRunner())
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log.log.addHandler(handler)
    old_level = log.log.level
    log.log.setLevel(logging.DEBUG)
    try:
        pipeline.run_steps(ctx, pipeline.BUILD)
    finally:
        log.log.removeHandler(handler)
        log.log.setLevel(old_level)
    values = secrets.load(ctx.out.secrets).values()
    root = ctx.out.root
    others = [p for p in root.rglob("*") if p.is_file() and p != ctx.out.secrets
              and ctx.out.seeds not in p.parents]
    rpms = sorted(ctx.out.rpms.glob("*.rpm"))
    assert rpms and ctx.out.manifest in others and ctx.out.sha256sums in others
    assert list(ctx.out.kickstart.glob("*.ks"))
    others += _extract_rpms(rpms, tmp_path / "payloads")
    texts = {str(p): p.read_bytes() for p in others}
    texts["log"] = stream.getvalue().encode()
    texts["messages"] = "\n".join(ctx.messages).encode()
    texts["argv"] = repr(ctx.runner.calls).encode()
    for value in values:
        leaks = [name for name, data in texts.items() if value.encode() in data]
        assert not leaks, f"a secret leaked into {leaks}"
    seed_texts = [p.read_bytes() for p in ctx.out.seeds.rglob("*") if p.is_file()]
    for value in values:
        assert any(value.encode() in data for data in seed_texts)
    # the ISO carries the seed too (Rock Ridge keeps file contents as they are)
    assert any(values[0].encode() in p.read_bytes() for p in ctx.out.seeds.glob("*.iso"))
