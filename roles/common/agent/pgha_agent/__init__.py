"""pgha_agent: the first-boot agent of a pgha node (run as /usr/libexec/pgha/pgha-firstboot).

Boundary: this package runs on the node, under RHEL 8's platform-python 3.6, with the standard
library only. It never imports from builder/; the only contract with the builder is
docs/seed-format.md (pgha/seed.json, schema_version 1).

Modules: cli (arguments, exit codes, the flow), sources and readers (finding and reading the
seed), seed (validation), rootfs (paths under --root, atomic writes, ownership), system (hostname,
network, firewall), services (systemd and process starters), health (tcp/http checks and the
cluster's failover readiness), readiness (can the Patroni cluster fail over: shared with the lab),
apply (the ordered steps), run (the only subprocess caller besides the process starter), log.
"""

__version__ = "0.1.0"
SCHEMA_VERSIONS = (1,)
