"""TLS in a node's seed: the CA certificate and the node's own keys and certificates.

Boundary: pure; turns the roles' `certificates` and the cluster's PKI (Secrets.tls, see
builder.model.tlsplan) into seed.json `files` entries. Each node's keys travel only in its own
seed; the CA key never leaves output/<cluster>/pki/. Keys are 0600 (or 0640 with the reading
service's group, as HAProxy's combined PEM), owned by the service that reads them.
"""

from __future__ import annotations

from typing import Any

from builder.core.fsutil import sha256_bytes
from builder.model.cluster import Node
from builder.model.platform import Layout
from builder.model.roles import Role
from builder.model.secrets import Secrets
from builder.stages import render


def entry(path: str, owner: str, group: str, mode: str, content: str) -> dict[str, Any]:
    return {"path": path, "owner": owner, "group": group, "mode": mode,
            "sha256": sha256_bytes(content.encode()), "content": content}


def ca_file(secrets: Secrets, lay: Layout) -> list[dict[str, Any]]:
    """The CA certificate (public) every node trusts, when TLS is on."""
    if secrets.tls is None:
        return []
    return [entry(f"{lay.tls_dir}/ca.crt", "root", "root", "0644", secrets.tls.ca.cert_pem)]


def cert_files(role: Role, node: Node, secrets: Secrets,
               logical: dict[str, Any]) -> list[dict[str, Any]]:
    """The role's certificates for this node (none when TLS is off)."""
    if secrets.tls is None:
        return []
    pairs = secrets.tls.nodes.get(node.name, {})
    folder = logical["layout"].tls_dir
    out = []
    for cert in role.certificates:
        pair = pairs[cert.name]
        owner = render.render_string(cert.owner, logical)
        group = render.render_string(cert.group, logical)
        if cert.combined:
            out.append(entry(f"{folder}/{cert.name}.pem", owner, group, cert.key_mode,
                             pair.cert_pem + pair.key_pem))
        else:
            out.append(entry(f"{folder}/{cert.name}.crt", owner, group, "0644", pair.cert_pem))
            out.append(entry(f"{folder}/{cert.name}.key", owner, group, cert.key_mode,
                             pair.key_pem))
    return out


def https_fields(role: Role, probe_tls: bool, client_cert: str | None, secrets: Secrets,
                 lay: Layout, verify_client: str) -> dict[str, Any]:
    """Extra fields of an http health check when it is HTTPS: the CA to verify the service and,
    when the service requires client certificates, the certificate to present."""
    if not probe_tls or secrets.tls is None:
        return {}
    fields: dict[str, Any] = {"cafile": f"{lay.tls_dir}/ca.crt"}
    if client_cert and verify_client == "required":
        cert = next(c for c in role.certificates if c.name == client_cert)
        if cert.combined:
            fields["certfile"] = f"{lay.tls_dir}/{cert.name}.pem"
        else:
            fields["certfile"] = f"{lay.tls_dir}/{cert.name}.crt"
            fields["keyfile"] = f"{lay.tls_dir}/{cert.name}.key"
    return fields
