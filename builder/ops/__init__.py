"""Day 2: change a running cluster through Patroni's REST API, from the operator's machine.

`target` (which members, how to reach them: the cluster CA, the operator's client certificate,
the REST password), `dynconf` (the cluster file's dynamic settings against GET /config, applied
with PATCH /config), `rolling` (rolling restart: replicas first, one switchover, the old
primary), `upgrade` (the ordered plan to roll a cluster onto a new build). The lab uses the same
code with its own Target (builder.lab.changes).
"""
