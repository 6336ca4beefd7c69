"""Pure-Python dependencies that no repository provides for RHEL 8 (`python_deps:`).

The known case: patroni-etcd needs python3.12-dns, which PGDG builds for EL-9 only (see
docs/rhel8.md). Each entry names the RPM to make, the sdist (a local file: nothing is fetched)
and its sha256, which the build checks before it unpacks anything. builder/stages/pydeps.py
builds the noarch RPM into the pgha repository, signed like the pgha packages. No I/O here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from builder.model.types import RpmName

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
SdistPath = Annotated[str, Field(pattern=r"^/[A-Za-z0-9\-._~/+,:@=]{1,1023}\.(?:tar\.gz|tgz)$")]


class PythonDep(BaseModel):
    """One pure-Python package built from its source release into the pgha repository."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RpmName = Field(description="the RPM to make, as the dependency names it, e.g. "
                                      "python3.12-dns")
    sdist: SdistPath = Field(description="absolute path of the source release (.tar.gz), e.g. "
                                         "dnspython-2.6.1.tar.gz from PyPI")
    sha256: Sha256 = Field(description="sha256 of the sdist (PyPI lists it): checked first")
    python: Literal["3.12"] = Field(default="3.12",
                                    description="the RHEL 8 Python it installs for")
