"""rpmbuild's settings shared by every package this tool builds (the role packages and the
python_deps): RHEL 8 dist tag, xz payload, fixed build host, times clamped to
SOURCE_DATE_EPOCH, a private rpmdb."""

from __future__ import annotations

from pathlib import Path

DIST = ".el8"


def rpmbuild_defines(topdir: Path) -> list[str]:
    defines = {
        "_topdir": str(topdir),
        "dist": DIST,
        "_buildhost": "pgha-build",
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_binary_payload": "w6.xzdio",
        "_source_payload": "w6.xzdio",
        "_docdir_fmt": "%%{NAME}",
        "_dbpath": str(topdir / "rpmdb"),
    }
    args = []
    for name, value in defines.items():
        args += ["--define", f"{name} {value}"]
    return args
