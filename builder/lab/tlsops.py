"""TLS in the running lab: certificate rotation applied to live nodes, and what each service serves
(for the lab tests and `pgha-build lab rotate-certs`). Boundary: rotation issues new node
certificates from the lab cluster's CA (tlsplan.load_secrets(rotate_certs=True), the same code
as `pgha-build seeds --rotate-certs`), renders every node's seed again and runs each node's own
first-boot agent on it (lifecycle.apply_seeds, the one changed-seed path), as an operator would
on a configured VM. The agent writes the new files and sends the running services their reload
signal (Patroni SIGHUP: PostgreSQL and REST certificates; HAProxy SIGUSR2); etcd reads its
certificates at each handshake. Nothing is restarted and no data directory is touched. The
probes open TLS connections to a node's address (after the lab's route check) and return the
serial number of the certificate the service presents.
"""

from __future__ import annotations

import socket
import ssl
import struct
from typing import Any

from cryptography import x509

from builder.lab import artifacts, lifecycle, net
from builder.lab.lab import Lab
from builder.model import tlsplan

# PostgreSQL's SSLRequest: length 8, code 80877103 (the server answers one byte, "S" or "N").
SSL_REQUEST = struct.pack("!II", 8, 80877103)


def rotate_certs(lab: Lab, timeout: float = 120) -> dict[str, Any]:
    """New node certificates from the same CA, applied to every running node by its agent.
    They are issued in output/<cluster>/pki/ (the user's, what the lab runs) and copied to
    the lab's folder, as `lab up` does."""
    sec = tlsplan.load_secrets(lab.output, lab.cluster, rotate_certs=True)
    artifacts.copy_keys(lab.output, lab.ctx.out)
    applied_s = lifecycle.apply_seeds(lab, secrets=sec, timeout=timeout)
    assert sec.tls is not None
    return {"reissued": list(sec.tls.reissued), "applied_s": applied_s}


def _context(lab: Lab) -> ssl.SSLContext:
    pki = lab.ctx.out.pki
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(str(pki / "operator.crt"), str(pki / "operator.key"))
    return context


def served_serial(lab: Lab, address: str, port: int, postgres: bool = False) -> int:
    """The serial number of the certificate the service at address:port presents (verified
    against the lab's CA and the address); PostgreSQL first gets its SSLRequest."""
    net.assert_local_route(lab.runner, lab.net, address)
    with socket.create_connection((address, port), timeout=5) as raw:
        if postgres:
            raw.sendall(SSL_REQUEST)
            if raw.recv(1) != b"S":
                raise ConnectionError(f"{address}:{port} refused SSL")
        with _context(lab).wrap_socket(raw, server_hostname=address) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number
