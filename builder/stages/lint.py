"""rpmlint over the built packages with the project's configuration (specs/rpmlint.toml).

Each source RPM is linted on its own: rpmlint 2.4 reports `multiple-specfiles` when several
SRPMs are checked in one run.
"""

from __future__ import annotations

import re
import shutil

from builder.core.context import Context
from builder.core.errors import ValidationFailed
from builder.core.fsutil import atomic_write
from builder.core.paths import SPECS_DIR
from builder.core.run import require
from builder.model.signing import KEY_FILE
from builder.stages.rpms import RpmsResult

SUMMARY_RE = re.compile(r"(\d+) errors?, (\d+) warnings?")


def _trust_pgha_key(ctx: Context) -> None:
    """rpmlint checks each signature with `rpm -Kv`: give it (HOME is .work/) an rpmdb of its
    own that holds only the pgha key, never the system's."""
    work = ctx.out.work
    work.mkdir(parents=True, exist_ok=True)
    db = work / "rpmlint-rpmdb"
    shutil.rmtree(db, ignore_errors=True)
    db.mkdir()
    atomic_write(work / ".rpmmacros", f"%_dbpath {db}\n")
    key = ctx.out.rpms / KEY_FILE
    if not key.is_file():
        return  # rpmlint reports each package's unknown key
    ctx.runner.run(["rpm", "--dbpath", str(db), "--import",
                    str(key)], env={"HOME": str(work)})


def lint_rpms(ctx: Context) -> str:
    """rpmlint the packages the `rpms` step of this command built (or found up to date)."""
    require("rpmlint")
    built = ctx.result("rpms", RpmsResult)
    rpms = [built.rpms[name] for name in sorted(built.rpms)]
    srpms = [built.srpms[name] for name in sorted(built.srpms)]
    if not rpms:
        raise ValidationFailed("no RPMs to lint", hint="run `pgha-build rpms` first")
    errors = warnings = 0
    problems: list[str] = []
    env = {"HOME": str(ctx.out.work), "LC_ALL": "C.UTF-8"}
    _trust_pgha_key(ctx)
    for group in [rpms, *([s] for s in srpms)]:
        proc = ctx.runner.run(["rpmlint", "-c", str(SPECS_DIR / "rpmlint.toml"), *group],
                              env=env, check=False)
        text = proc.stdout.decode(errors="replace")
        match = SUMMARY_RE.search(text)
        if match is None:
            raise ValidationFailed(f"rpmlint gave no summary (exit {proc.returncode})",
                                   hint=proc.stderr.decode(errors="replace").strip()[-300:])
        errors += int(match.group(1))
        warnings += int(match.group(2))
        problems += [ln for ln in text.splitlines() if ": E: " in ln]
    if errors:
        raise ValidationFailed(f"rpmlint found {errors} error(s): {'; '.join(problems)}")
    return f"rpmlint: {len(rpms) + len(srpms)} packages, 0 errors, {warnings} warnings"
