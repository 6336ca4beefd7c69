"""Joining the etcd cluster at first boot, whatever its state (seed.json `etcd_join`).

Boundary: runs just before the agent starts the etcd service of a DCS member, and just after
(promotion). It talks to the other members through etcd's v3 JSON gateway (POST
/v3/cluster/member/{list,add,promote,remove}) over HTTPS with the node's own client
certificate, and rewrites two lines of the etcd environment file. It never touches an existing
etcd data directory.

The decision, in order:
1. the data dir holds `member/`: a reboot with data intact; etcd just starts (nothing re-added);
2. no other member answers: no cluster yet (first cold start): bootstrap as rendered
   (initial-cluster-state new);
3. the cluster lists this node, never started (no client URLs) and voting: a cold start in
   progress, the others were faster: bootstrap as rendered;
4. the cluster lists this node as a learner that never started: our own earlier attempt; start
   it with initial-cluster-state existing;
5. the cluster lists this node as started before (a re-imaged VM): if something answers at its
   peer URL, stop (a second VM booted with this seed); else remove that stale member, then
6. add this node as a learner, start with initial-cluster-state existing and the member list
   etcd returned, and promote it once it has caught up (`promote` after the start).
Adding is retried while etcd refuses it for a passing reason (one learner at a time, a member
that just went away): two nodes joining at once take turns.

After the start, `wait_version` waits (at most VERSION_WAIT) until the cluster's version is
decided: a new etcd 3.4 cluster says "3.0" until its leader's version monitor (every 4 s)
raises it, and a Patroni started in that window picks the /v3alpha API etcd 3.4 no longer
serves, then sleeps 5 s ("waiting on etcd") before it asks again.

On a changed seed (a node removed from the cluster file), `prune` removes the members the seed
no longer lists, once nothing answers at their peer URL: a removed node's member goes when its
VM is off. A member still answering, a learner or a member that never started (a node joining
right now) is left alone.
"""

import json
import os
import ssl
import time
import urllib.error
import urllib.request

from pgha_agent.errors import ApplyFailed, ServiceFailed
from pgha_agent.log import LOG

PROBE_TIMEOUT = 3.0
RETRY_EVERY = 1.0
# etcd's answers (gRPC status messages) that mean "not now", not "never".
TRANSIENT = ("too many learner members", "unhealthy cluster", "in sync with leader",
             "timed out", "leader changed", "no leader", "not capable")
CHANGE_TIMEOUT = 10.0  # a membership change goes through raft: slower than a read
VERSION_WAIT = 10.0  # etcd decides a new cluster's version within its 4 s version monitor
VERSION_EVERY = 0.2

_NO_PROXY = urllib.request.ProxyHandler({})


class Gateway(object):
    """etcd's v3 JSON gateway on the members' client URLs, with TLS files from the seed."""

    def __init__(self, spec, root):
        self.context = None
        if spec.get("cafile"):
            self.context = ssl.create_default_context(cafile=root.path(spec["cafile"]))
            if spec.get("certfile"):
                self.context.load_cert_chain(root.path(spec["certfile"]),
                                             root.path(spec["keyfile"]))

    def _opener(self):
        if self.context is None:
            return urllib.request.build_opener(_NO_PROXY)
        return urllib.request.build_opener(_NO_PROXY,
                                           urllib.request.HTTPSHandler(context=self.context))

    def post(self, base, path, body, timeout=PROBE_TIMEOUT):
        """The JSON answer; an etcd error answer comes back as {"error": ...}."""
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener().open(req, timeout=timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            try:
                return json.loads(exc.read().decode("utf-8"))
            except ValueError:
                return {"error": "HTTP {}".format(exc.code)}

    def get(self, base, path, timeout=PROBE_TIMEOUT):
        with self._opener().open(base + path, timeout=timeout) as resp:
            return json.loads(resp.read().decode("utf-8"))

    def answers(self, url, timeout=PROBE_TIMEOUT):
        """Whether anything speaks HTTP(S) at url (a peer URL: GET /version)."""
        try:
            with self._opener().open(url.rstrip("/") + "/version", timeout=timeout):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
            return False


def has_data(root, spec):
    return os.path.isdir(os.path.join(root.path(spec["data_dir"]), "member"))


def cluster_version(answer):
    """The cluster version of a GET /version answer as a tuple, () when not decided."""
    try:
        return tuple(int(x) for x in str(answer.get("etcdcluster", "")).split("."))
    except ValueError:  # "not_decided"
        return ()


def wait_version(root, spec, wait=VERSION_WAIT):
    """Wait until this member reports a decided cluster version past the initial 3.0 (what
    Patroni reads to pick its API); at most `wait` seconds, then go on (Patroni copes, 5 s
    later). Returns the version seen, () if none."""
    base = next((m["client_url"] for m in spec["members"] if m["name"] == spec["name"]), None)
    if base is None:
        return ()
    gateway = Gateway(spec, root)
    start = time.monotonic()
    version, detail = (), "no answer"
    while True:
        try:
            answer = gateway.get(base, "/version")
            version, detail = cluster_version(answer), answer.get("etcdcluster")
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
            detail = str(getattr(exc, "reason", exc))
        waited = time.monotonic() - start
        if version >= (3, 1):
            LOG.info("etcd: cluster version %s (after %.1fs)", detail, waited)
            return version
        if waited >= wait:
            LOG.info("etcd: cluster version still %s after %.0fs: going on", detail, wait)
            return version
        time.sleep(VERSION_EVERY)


def find_cluster(gateway, spec):
    """(client URL, members) from the first other member that answers, or None."""
    for peer in spec["members"]:
        if peer["name"] == spec["name"]:
            continue
        try:
            answer = gateway.post(peer["client_url"], "/v3/cluster/member/list", {})
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
            LOG.info("etcd: %s (%s) does not answer: %s", peer["name"], peer["client_url"],
                     getattr(exc, "reason", exc))
            continue
        if "members" in answer:
            return peer["client_url"], answer["members"]
        LOG.info("etcd: %s answers without a member list: %s", peer["name"],
                 answer.get("error") or answer)
    return None


def own_member(members, spec):
    for member in members:
        if member.get("name") == spec["name"] or spec["peer_url"] in member.get("peerURLs", []):
            return member
    return None


def _retry(what, call, timeout, alive=lambda: None):
    """call() until it returns an answer without error; transient errors are retried (alive()
    raises when the service being waited for has died)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = call()
        except (urllib.error.URLError, OSError, ValueError, ssl.SSLError) as exc:
            answer = {"error": str(getattr(exc, "reason", exc))}
        error = answer.get("error")
        if not error:
            return answer
        if not any(t in error for t in TRANSIENT) or time.monotonic() >= deadline:
            raise ServiceFailed("etcd: {} failed: {}".format(what, error))
        LOG.info("etcd: %s: %s (retrying)", what, error)
        alive()
        time.sleep(RETRY_EVERY)


def remove_stale(gateway, base, spec, member):
    url = member.get("peerURLs", [spec["peer_url"]])[0]
    if gateway.answers(url):
        raise ApplyFailed(
            "etcd: member {} (id {}) is healthy and answering at {}: another machine runs "
            "this node's etcd (a second VM booted with the same seed?); refusing to replace "
            "it: stop that machine, or give this one its own seed".format(
                spec["name"], member["ID"], url))
    LOG.info("etcd: removing the stale member %s (id %s, %s): this node was re-imaged",
             spec["name"], member["ID"], url)
    _retry("removing member " + member["ID"], lambda: _remove(gateway, base, member["ID"]), 60)


def _remove(gateway, base, member_id):
    """Remove a member; one already gone (another node removed it first) counts as done."""
    answer = gateway.post(base, "/v3/cluster/member/remove", {"ID": member_id}, CHANGE_TIMEOUT)
    if "member not found" in answer.get("error", ""):
        return {"note": "already removed"}
    return answer


def initial_cluster(members, spec, new_id):
    """ETCD_INITIAL_CLUSTER as `etcdctl member add` prints it: every member's peer URLs, the
    new member under this node's name."""
    pairs = []
    for member in members:
        name = spec["name"] if member["ID"] == new_id else member.get("name", "")
        pairs += ["{}={}".format(name, url) for url in member.get("peerURLs", [])]
    return ",".join(pairs)


def write_env(root, seed, spec, cluster, state):
    """Set ETCD_INITIAL_CLUSTER and ETCD_INITIAL_CLUSTER_STATE in the env file, keeping the
    rest (owner and mode as the seed's entry of that file)."""
    entry = next(f for f in seed.files if f["path"] == spec["env_file"])
    with open(root.path(spec["env_file"])) as fh:
        lines = fh.read().splitlines()
    values = {"ETCD_INITIAL_CLUSTER": cluster, "ETCD_INITIAL_CLUSTER_STATE": state}
    out = [line for line in lines if line.split("=", 1)[0].strip() not in values]
    out += ["{}={}".format(k, v) for k, v in sorted(values.items())]
    root.write_file(spec["env_file"], ("\n".join(out) + "\n").encode(), int(entry["mode"], 8),
                    entry["owner"], entry["group"])
    LOG.info("etcd: %s: initial-cluster-state %s, initial cluster %s", spec["env_file"], state,
             cluster)


def prepare(root, seed, timeout):
    """Before etcd starts. Returns the member ID to promote after the start, or None."""
    spec = seed.etcd_join
    if has_data(root, spec):
        LOG.info("etcd: data dir %s holds a member: starting it as it is", spec["data_dir"])
        return None
    gateway = Gateway(spec, root)
    found = find_cluster(gateway, spec)
    if found is None:
        LOG.info("etcd: no other member answers: bootstrapping a new cluster")
        return None
    base, members = found
    mine = own_member(members, spec)
    if mine is not None and not mine.get("clientURLs"):
        if not mine.get("isLearner"):
            LOG.info("etcd: the cluster is starting and lists this node: bootstrapping with it")
            return None
        LOG.info("etcd: already added as learner %s: joining", mine["ID"])
        write_env(root, seed, spec, initial_cluster(members, spec, mine["ID"]), "existing")
        return mine["ID"]
    if mine is not None:
        remove_stale(gateway, base, spec, mine)
    added = _retry("adding this node as a learner", lambda: gateway.post(
        base, "/v3/cluster/member/add", {"peerURLs": [spec["peer_url"]], "isLearner": True},
        CHANGE_TIMEOUT), timeout)
    new_id = added["member"]["ID"]
    LOG.info("etcd: added %s as learner %s through %s", spec["name"], new_id, base)
    write_env(root, seed, spec, initial_cluster(added["members"], spec, new_id), "existing")
    return new_id


def promote(root, seed, member_id, timeout, alive=lambda: None):
    """After etcd started as a learner: promote it once it has caught up with the leader."""
    spec = seed.etcd_join
    gateway = Gateway(spec, root)
    found = find_cluster(gateway, spec)
    if found is None:
        raise ServiceFailed("etcd: no other member answers: cannot promote learner {}".format(
            member_id))
    base = found[0]
    start = time.monotonic()
    answer = _retry("promoting learner " + member_id, lambda: _promote_once(
        gateway, base, member_id), timeout, alive)
    LOG.info("etcd: %s is a voting member (promoted after %.1fs)%s", spec["name"],
             time.monotonic() - start, answer.get("note", ""))


def _has_quorum(gateway, url):
    try:
        with gateway._opener().open(url.rstrip("/") + "/health", timeout=PROBE_TIMEOUT) as resp:
            return json.loads(resp.read().decode("utf-8")).get("health") == "true"
    except (urllib.error.URLError, OSError, ValueError, ssl.SSLError):
        return False


def wait_quorum(root, seed, timeout, alive=lambda: None):
    """After etcd bootstrapped on an empty data dir (no other member answered, or a cold start
    in progress): wait until this member has a leader (GET /health). A re-imaged node whose
    peers are all down cannot tell that from a first cold start: it bootstraps alone, and
    this says so, with the way out, instead of a later, vaguer failure."""
    spec = seed.etcd_join
    gateway = Gateway(spec, root)
    own = [m["client_url"] for m in spec["members"] if m["name"] == spec["name"]]
    start = time.monotonic()
    while not (own and _has_quorum(gateway, own[0])):
        alive()
        if time.monotonic() - start >= timeout:
            raise ServiceFailed(
                "etcd: no quorum {:.0f}s after bootstrapping on an empty data dir (no other member "
                "answered at first boot): if the cluster already exists (a re-imaged node whose "
                "peers were down), start a majority of the other db nodes, then remove {}/member "
                "on this node and run pgha-firstboot again (it joins as a new member); on a "
                "first cold start, boot the other db nodes".format(timeout, spec["data_dir"]))
        time.sleep(RETRY_EVERY)
    LOG.info("etcd: %s has a leader (%.1fs after its start)", spec["name"],
             time.monotonic() - start)


def _promote_once(gateway, base, member_id):
    answer = gateway.post(base, "/v3/cluster/member/promote", {"ID": member_id},
                          CHANGE_TIMEOUT)
    if "can only promote a learner member" == answer.get("error", "").split(": ")[-1]:
        return {"note": " (already)"}
    return answer


def _listed(member, spec):
    names = set(m["name"] for m in spec["members"])
    peers = set(m["peer_url"] for m in spec["members"])
    return member.get("name") in names or bool(peers & set(member.get("peerURLs", [])))


def prune(root, seed):
    """After etcd is healthy: remove the members this seed no longer lists and that are gone
    (nothing answers at their peer URL). Never a learner, a member that never started, or one
    that answers."""
    spec = seed.etcd_join
    gateway = Gateway(spec, root)
    own = [m["client_url"] for m in spec["members"] if m["name"] == spec["name"]]
    found = find_cluster(gateway, dict(spec, name="", members=[
        {"name": spec["name"], "client_url": url} for url in own] + spec["members"]))
    if found is None:
        LOG.warning("etcd: no member answers: not checking for removed members")
        return
    base, members = found
    for member in members:
        if _listed(member, spec) or member.get("isLearner") or not member.get("clientURLs"):
            continue
        url = member.get("peerURLs", [""])[0]
        if gateway.answers(url):
            LOG.warning("etcd: member %s (%s) is not in this seed but still answers: not "
                        "removed; shut that node down and apply this seed again",
                        member.get("name"), url)
            continue
        LOG.info("etcd: removing member %s (id %s, %s): not in this seed, not answering",
                 member.get("name"), member["ID"], url)
        _retry("removing member " + member["ID"],
               lambda: _remove(gateway, base, member["ID"]), 60)
