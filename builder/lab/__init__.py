"""The local lab: the cluster booted on this machine in network namespaces.

Each node is a Linux network namespace with its own address on a bridge; the role RPMs are
installed into a folder per node and the first-boot agent from that folder configures the node
from its seed and starts real etcd, PostgreSQL, Patroni and HAProxy processes. The host reaches
the load balancer through relays on 127.0.0.1.

Modules: `net` (bridge, namespaces, routes, safety checks), `relay` (127.0.0.1 forwarders),
`nodes` (RPM install, seeds, agent), `health` (clients and waits), `status`, `faults`,
`lab` (up/down orchestration), `workload` (numbered-row writer for tests and the benchmark).
"""
