"""The local lab: the cluster booted on this machine in network namespaces.

Each node is a Linux network namespace with its own address on a bridge; the role RPMs are
installed into a folder per node and the first-boot agent from that folder configures the node
from its seed and starts real etcd, PostgreSQL, Patroni and HAProxy processes. The host reaches
the load balancer through relays on 127.0.0.1.

Modules: `lab` (up/down orchestration, the engine choice), `net` (bridge, namespaces, routes,
safety checks), `relay` and `forward` (the host's ways into the lab), `nodes` (RPM install,
seeds, the agent), `preflight`, `health` (clients and waits), `readiness` and `status`, `faults`
(kill, partition, heal, switchover, ...), `vip`, `tlsops` (certificate rotation); the systemd
engine's `machine`, `machine_init` and `sysboot` (its image: builder.images.rootfs and
builder.images.provides). Test-only code (fault
scenarios with a counting writer, throughput) lives in tests/labkit/, not here.
"""
