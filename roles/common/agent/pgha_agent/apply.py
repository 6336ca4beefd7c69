"""Applying a validated seed to the node: the ordered steps, then the done marker.

Boundary: runs after seed.validate succeeded. preflight.check then checks every path it will
write (nothing is written before both passed). Steps, in order: hostname, network,
directories, files, SELinux labels, firewall, SELinux booleans (selinux.py), disable services,
start services with health
waits, then
<root>/var/lib/pgha/done-<instance_id>. A failing step raises and leaves no marker, so the next
run (next boot) applies the seed again; every step is safe to repeat. Paths listed in
protected_dirs are never created, written or emptied (Root.guard).
"""

import json
import time

from pgha_agent import __version__, etcdjoin, health, preflight, selinux, settle, system
from pgha_agent.log import LOG

MARKER_DIR = "/var/lib/pgha"


def marker_path(instance_id):
    return "{}/done-{}".format(MARKER_DIR, instance_id)


def make_directories(root, seed):
    for entry in seed.directories:
        mode = int(entry["mode"], 8)
        root.ensure_dir(entry["path"], mode, entry["owner"], entry["group"])
        LOG.info("directory %s (%04o %s:%s)", entry["path"], mode, entry["owner"],
                 entry["group"])


def _same_content(root, node_path, data):
    try:
        with open(root.path(node_path), "rb") as fh:
            return fh.read() == data
    except (IOError, OSError):
        return False


def write_files(root, seed):
    """Write every file; return the paths whose content changed on a node that had them (a
    new seed for a configured node: rotated certificates, changed configs)."""
    changed = []
    for entry in seed.files:
        data = entry["content"].encode("utf-8")
        mode = int(entry["mode"], 8)
        if root.exists(entry["path"]) and not _same_content(root, entry["path"], data):
            changed.append(entry["path"])
        root.write_file(entry["path"], data, mode, entry["owner"], entry["group"])
        LOG.info("wrote %s (%04o %s:%s, %d bytes, sha256 %s...)", entry["path"], mode,
                 entry["owner"], entry["group"], len(data), entry["sha256"][:12])
    return changed


def report_protected(root, seed):
    for prot in seed.protected_dirs:
        state = "exists: left untouched" if root.exists(prot) else "absent: not created"
        LOG.info("protected %s (%s)", prot, state)


def start_services(root, seed, starter, timeout, changed=()):
    """Start each service in order and wait for its health. A service that was already running
    while its node's files changed is reloaded (its `reload` signal: new certificates and
    configuration without a restart); data directories are never touched. The etcd service of
    a seed with `etcd_join` joins the cluster as it finds it (etcdjoin.py) when it starts."""
    starter.prepare()
    for name in seed.disable_services:
        starter.disable(name)
    join = seed.data.get("etcd_join")
    for svc in seed.services:
        was_running = starter.running(svc)
        member = join and join["service"] == svc["name"]
        # a running member, or one restarted on its data: a changed seed may drop members
        prune = member and (was_running or etcdjoin.has_data(root, join))
        fresh = member and not was_running and not etcdjoin.has_data(root, join)
        learner = etcdjoin.prepare(root, seed, timeout) if member and not was_running else None
        starter.start(svc)
        if learner is not None:
            etcdjoin.promote(root, seed, learner, timeout, lambda: starter.check(svc))
        elif fresh:
            etcdjoin.wait_quorum(root, seed, timeout, lambda: starter.check(svc))
        if was_running and changed:
            if svc.get("reload"):
                starter.reload(svc)
            else:
                LOG.info("%s: running; it reads its new files itself (no reload declared)",
                         svc["name"])
        checks = health.under_root(seed.checks_for(svc["name"]), root)
        health.wait(svc["name"], checks, lambda: starter.check(svc), timeout)
        for check in checks:
            if check["kind"] == "failover":
                settle.loop_wait(check)
        if member:  # the services after it (Patroni) read the cluster version at start
            etcdjoin.wait_version(root, join)
        if prune:
            etcdjoin.prune(root, seed)
    rest = seed.unassigned_checks()
    if rest:
        health.wait("node", health.under_root(rest, root), lambda: None, timeout)


def write_marker(root, seed, origin):
    record = {"instance_id": seed.instance_id, "cluster": seed.cluster,
              "node": seed.node["name"], "roles": seed.roles, "seed": origin,
              "agent": __version__,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    root.makedirs(MARKER_DIR, 0o700)
    path = marker_path(seed.instance_id)
    root.write_file(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode(), 0o600)
    LOG.info("done: %s configured, marker %s", seed.instance_id, path)


def apply(root, seed, starter, origin, network="auto", timeout=300):
    """Every step in order; raises AgentError subclasses on failure."""
    root.protected = list(seed.protected_dirs)
    preflight.check(root, seed, network, MARKER_DIR, marker_path(seed.instance_id))
    report_protected(root, seed)
    system.set_hostname(root, seed.node)
    system.configure_network(root, seed.node, seed.instance_id, network)
    make_directories(root, seed)
    changed = write_files(root, seed)
    system.restore_selinux_labels(
        root, [d["path"] for d in seed.directories] + [f["path"] for f in seed.files])
    system.open_firewall(root, seed.firewall_services)
    selinux.ensure_booleans(root, seed.selinux_booleans)
    system.apply_firewall_rules(root, seed.firewall_rules, MARKER_DIR)
    start_services(root, seed, starter, timeout, changed)
    write_marker(root, seed, origin)
