"""Which OpenPGP key signs the pgha RPMs and the pgha repository's metadata (`signing:`).

Default: a key made for the cluster, kept in the build's secret area
(output/<cluster>/signing/, never in a seed, an RPM, an image or a release asset). An
organisation's own key: `key_id` (its fingerprint) and, when not the default GnuPG home,
`gnupghome` (the folder holding its keyring). Only the public key travels: RPM-GPG-KEY-pgha in
the repository, the PXE tree and the release; the kickstarts carry it and import it from a file.
No I/O here: builder/stages/signing.py does the work. See docs/signing.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

KEY_FILE = "RPM-GPG-KEY-pgha"
# Where nodes keep the pgha key: the kickstarts write it there and import it; pgha.repo names it.
NODE_KEY_PATH = f"/etc/pki/rpm-gpg/{KEY_FILE}"

# A full v4 fingerprint (40 hex digits) or a long key id (16): short ids collide.
KeyId = Annotated[str, Field(pattern=r"^(?:[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})$")]
GnupgHome = Annotated[str, Field(pattern=r"^/[A-Za-z0-9\-._~/+,:@=]{0,1023}$")]


class Signing(BaseModel):
    """The key that signs the pgha RPMs (rpmsign) and repodata/repomd.xml (repomd.xml.asc)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: KeyId | None = Field(
        default=None,
        description="fingerprint (or long key id) of the organisation's signing key; "
                    "default: a 4096-bit RSA key made for the cluster in output/<cluster>/signing/")
    gnupghome: GnupgHome | None = Field(
        default=None,
        description="absolute path of the GnuPG home holding key_id's secret key "
                    "(default: $GNUPGHOME or ~/.gnupg); only with key_id")

    @model_validator(mode="after")
    def _home_needs_key(self) -> Signing:
        if self.gnupghome and not self.key_id:
            raise ValueError("gnupghome needs key_id (the fingerprint of the key to sign with)")
        return self
