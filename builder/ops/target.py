"""The running cluster as the operator reaches it: each db member's Patroni REST URL, the
cluster CA to verify them, the operator's client certificate and the REST password (changes
need both), all from output/<cluster>/ as `pgha-build build` left it.

Every request goes through `Target.call`; a member that does not answer is (0, reason).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builder.core.errors import PghaError
from builder.core.http import http, tls_context
from builder.core.paths import OutputPaths
from builder.model import roles, secrets
from builder.model.cluster import Cluster


@dataclass(frozen=True)
class Target:
    """Patroni members by name -> base URL ("https://10.0.0.11:8008")."""

    members: dict[str, str]
    auth: tuple[str, str]
    context: ssl.SSLContext | None = None
    # Called with each URL before a request (the lab checks the route stays local).
    guard: Callable[[str], None] = field(default=lambda _url: None)

    def call(self, name: str, method: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = 5) -> tuple[int, Any]:
        url = self.members[name] + path
        self.guard(url)
        auth = self.auth if method != "GET" else None
        return http(method, url, auth=auth, body=body, timeout=timeout, context=self.context)

    def first(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float = 5) -> tuple[str, Any]:
        """The first member that answers 200: (its name, its answer)."""
        errors = []
        for name in self.members:
            code, answer = self.call(name, method, path, body, timeout)
            if code == 200:
                return name, answer
            errors.append(f"{name}: {code or ''} {answer}".strip())
        raise PghaError(f"no Patroni member answered {method} {path}: " + "; ".join(errors),
                        hint="check that the cluster runs and that this machine reaches "
                             "Patroni's REST port of the db nodes")


def of_cluster(cluster: Cluster, output: Path) -> Target:
    """A real cluster's Target, from the files `pgha-build build` wrote (never makes new ones:
    a new CA or password would not match the running cluster)."""
    out = OutputPaths(output.absolute() / cluster.name)
    sec_file, pki = out.secrets, out.pki
    if not sec_file.exists():
        raise PghaError(f"no {sec_file}: the REST password of cluster {cluster.name} is in it",
                        hint="run from the folder the cluster was built in, or pass -o OUTPUT")
    restapi = secrets.load_or_create(out, cluster.name).restapi
    context = None
    if cluster.tls.enabled:
        need = [pki / "ca.crt", pki / "operator.crt", pki / "operator.key"]
        missing = [str(p) for p in need if not p.exists()]
        if missing:
            raise PghaError(f"missing {', '.join(missing)}: the cluster CA and the operator's "
                            "client certificate", hint="run from the folder the cluster was "
                            "built in, or pass -o OUTPUT (never build a new CA for it)")
        context = tls_context(str(need[0]), str(need[1]), str(need[2]))
    scheme = "https" if cluster.tls.enabled else "http"
    port = cluster.ports.patroni_rest
    members = {n.name: f"{scheme}://{n.address}:{port}"
               for n in roles.nodes_with(cluster.nodes, "postgres")}
    return Target(members, (restapi.username, restapi.password), context)
