"""pgha_agent: the first-boot agent of a pgha node (run as /usr/libexec/pgha/pgha-firstboot).

Boundary: this package runs on the node, under RHEL 8's platform-python 3.6, with the standard
library only. It never imports from builder/; the only contract with the builder is the seed
schema, seed_schema.json beside this file (pgha/seed.json, schema_version 1), which the builder
checks its seeds against too and docs/seed-format.md's field table is generated from.

Modules: cli (arguments, exit codes, the flow), sources and readers (finding and reading the
seed), schema (the seed's structure, from seed_schema.json), seed (validation across fields),
rootfs (paths under --root, atomic writes, ownership), system (hostname, network, firewall), services (systemd and process starters), health (tcp/http checks and the
cluster's failover readiness), readiness (can the Patroni cluster fail over: shared with the lab),
apply (the ordered steps), run (the only subprocess caller besides the process starter), log.
"""

__version__ = "0.1.0"
SCHEMA_VERSIONS = (1,)
