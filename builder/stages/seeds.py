"""Per-node seeds: render each node's seed (pure) and the `seeds` stage that writes them.

A seed (docs/seed-format.md) is the node's identity, its role services and every per-node file
its roles declare in role.yaml (`seed_files`, `service_exec`, `health`, ...), rendered with the
cluster's secrets. The stage writes output/<cluster>/seeds/<host>/ (0700, files 0600) and
<host>-cidata.iso (NoCloud, volume label cidata, via xorriso, reproducible with
SOURCE_DATE_EPOCH). A seed folder is built aside and renamed into place, so a failure never
leaves half a seed. Every seed artifact is recorded with secret=True.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder import __version__
from builder.core import agentmod, fastyaml
from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.fsutil import replacing, sha256_bytes
from builder.core.run import require
from builder.core.state import Artifact, artifact, cached_stage, input_key, save
from builder.model import roles, tlsplan
from builder.model.cluster import Node
from builder.model.platform import Layout
from builder.model.roles import Role
from builder.model.secrets import Secrets
from builder.stages import dcs, firewall, render, seedtls

SEED_SCHEMA_VERSION = 1
SEED_FILES = ("meta-data", "network-config", "user-data", "pgha/seed.json")


def node_context(ctx: Context, node: Node, secrets: Secrets, lay: Layout,
                 peer_layout: Callable[[str], Layout] | None = None) -> dict[str, Any]:
    """What a node's templates see. `peer_layout(name)`: where another node keeps its files
    (its layout, rooted like this one in the lab), for configs that name a peer's paths
    (pgBackRest's pg<N>-path on the repository host)."""
    lbs = roles.nodes_with(ctx.cluster.nodes, "load_balancer")
    names = [n.name for n in lbs]
    return {
        **render.base_context(ctx.cluster),
        "layout": lay,
        "node": node,
        "secrets": secrets,
        "etcd_members": roles.nodes_with(ctx.cluster.nodes, "etcd_member"),
        "db_nodes": roles.nodes_with(ctx.cluster.nodes, "postgres"),
        "lb_nodes": lbs,
        "repo_nodes": roles.nodes_with(ctx.cluster.nodes, "backup_repo"),
        "peer_layout": peer_layout or (lambda _name: lay),
        "lb_index": names.index(node.name) if node.name in names else 0,
        "vrrp_router_id": zlib.crc32(ctx.cluster.name.encode()) % 254 + 1,
        "dcs_template": dcs.template_name(),
        "boot_loop_wait": dcs.BOOT_LOOP_WAIT,
    }


def _when(expr: str | None, context: dict[str, Any]) -> bool:
    if expr is None:
        return True
    return bool(render.environment().compile_expression(expr, undefined_to_none=False)(**context))


def _t(text: str, context: dict[str, Any]) -> str:
    return render.render_string(text, context)


def _files(role: Role, logical: dict[str, Any], rooted: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for sf in role.seed_files:
        if not _when(sf.when, rooted):
            continue
        content = render.render_file(role.folder / sf.src, rooted)
        out.append({"path": _t(sf.dest, logical), "owner": _t(sf.owner, logical),
                    "group": _t(sf.group, logical), "mode": sf.mode,
                    "sha256": sha256_bytes(content.encode()), "content": content})
    return out


def _services(role: Role, rooted: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for name in role.services:
        ex = role.service_exec.get(name)
        if ex is None or not _when(ex.when, rooted):
            continue
        out.append({"name": name, "user": _t(ex.user, rooted),
                    "argv": [_t(a, rooted) for a in ex.argv],
                    "env_file": _t(ex.env_file, rooted) if ex.env_file else None,
                    **({"reload": ex.reload} if ex.reload else {})})
    return out


def _health(role: Role, node: Node, context: dict[str, Any], services: set[str]) -> list[dict]:
    out: list[dict[str, Any]] = []
    sec, lay = context["secrets"], context["layout"]
    for probe in role.health:
        if probe.service not in services:
            continue
        port = context["ports"][probe.port]
        if probe.kind == "tcp":
            out.append({"kind": "tcp", "host": str(node.address), "port": port,
                        "service": probe.service})
            continue
        verify = context["cluster"].tls.restapi_verify_client
        if probe.kind == "failover" and verify == "optional" and _settle(context["cluster"], sec):
            verify = "required"  # the settling PATCH is a change: Patroni wants the certificate
        tls = seedtls.https_fields(role, probe.tls, probe.client_cert, sec, lay, verify)
        scheme = "https" if tls else "http"
        if probe.kind == "failover":
            out.append({"kind": "failover", "url": f"{scheme}://{node.address}:{port}",
                        "service": probe.service,
                        "members": [n.name for n in context["db_nodes"]], **tls,
                        **_settle(context["cluster"], sec)})
            continue
        out.append({"kind": "http", "url": f"{scheme}://{node.address}:{port}{probe.path}",
                    "service": probe.service, "expect": list(probe.expect), **tls})
    return out


def _settle(cluster: Any, sec: Secrets) -> dict[str, Any]:
    """The failover check's PATCH of loop_wait once ready (the boot runs a 1 s HA loop), with
    the REST API's credentials Patroni wants for a change."""
    wanted = dcs.settle_loop_wait(cluster)
    if wanted is None:
        return {}
    return {"settle_loop_wait": wanted, "username": sec.restapi.username,
            "password": sec.restapi.password}


def _etcd_join(role: Role, node: Node, context: dict[str, Any]) -> dict[str, Any] | None:
    """seed.json `etcd_join`: this member's name and peer URL, every member's URLs (from the
    cluster file), the data dir and env file, and the TLS files to ask the others with."""
    join = role.etcd_join
    if join is None:
        return None
    ports, sec, lay = context["ports"], context["secrets"], context["layout"]
    scheme = "https" if sec.tls is not None else "http"

    def url(member: Node, port: str) -> str:
        return f"{scheme}://{member.address}:{ports[port]}"

    tls = seedtls.https_fields(role, True, join.client_cert, sec, lay, "required")
    return {"service": join.service, "name": node.name, "peer_url": url(node, "etcd_peer"),
            "members": [{"name": m.name, "client_url": url(m, "etcd_client"),
                         "peer_url": url(m, "etcd_peer")} for m in context["etcd_members"]],
            "data_dir": _t(join.data_dir, context), "env_file": _t(join.env_file, context),
            **tls}


def _role_parts(role: Role, node: Node, logical: dict[str, Any],
                rooted: dict[str, Any]) -> dict[str, list[Any]]:
    services = _services(role, rooted)
    return {
        "services": services,
        "disable_services": [_t(s, logical) for s in role.disable_services],
        "firewall_services": [f.name for f in role.firewall if not f.sources],
        "selinux_booleans": list(role.selinux_booleans),
        "health": _health(role, node, logical, {s["name"] for s in services}),
        "protected_dirs": [_t(d, logical) for d in role.protected_dirs],
        "directories": [{"path": _t(d.path, logical), "owner": _t(d.owner, logical),
                         "group": _t(d.group, logical), "mode": d.mode}
                        for d in role.seed_directories],
        "files": _files(role, logical, rooted)
        + seedtls.cert_files(role, node, logical["secrets"], logical),
    }


def _identity(ctx: Context, node: Node) -> dict[str, Any]:
    net = ctx.cluster.network
    return {"name": node.name, "fqdn": f"{node.name}.{net.domain}", "address": str(node.address),
            "prefix": net.cidr.prefixlen, "gateway": str(net.gateway),
            "dns": [str(d) for d in net.dns], "domain": net.domain, "mac": node.mac}


def render_seed(ctx: Context, node: Node, secrets: Secrets, root_prefix: str = "",
                peer_root: Callable[[str], str] | None = None) -> dict:
    """The node's seed.json payload. With a root_prefix, every path inside rendered contents and
    in services' argv/env_file is under it (Layout.rooted); files[].path, directories and
    protected_dirs stay logical: the agent puts them under its --root. `peer_root(name)`: the
    root of another node (the lab's folder of it), for paths a config names on a peer."""
    lay = render.base_context(ctx.cluster)["layout"]
    if ctx.cluster.tls.enabled and (secrets.tls is None or node.name not in secrets.tls.nodes):
        raise PghaError(f"TLS is on but {node.name} has no certificates",
                        hint="load the secrets with builder.model.tlsplan.load_secrets")
    logical = node_context(ctx, node, secrets, lay)
    peers = (lambda name: lay.rooted(peer_root(name))) if peer_root else None
    rooted = node_context(ctx, node, secrets, lay.rooted(root_prefix), peers)
    parts: dict[str, list[Any]] = {}
    for name in node.roles:
        for key, values in _role_parts(roles.get(name), node, logical, rooted).items():
            parts.setdefault(key, []).extend(values)
    parts["files"] = parts.get("files", []) + seedtls.ca_file(secrets, lay)
    parts["firewall_rules"] = firewall.node_rules(ctx.cluster, node)
    joins = [j for j in (_etcd_join(roles.get(n), node, logical) for n in node.roles) if j]
    if joins:
        parts["etcd_join"] = joins[0]  # type: ignore[assignment]
    digest = sha256_bytes(json.dumps(parts, sort_keys=True).encode())[:8]
    payload = {"schema_version": SEED_SCHEMA_VERSION, "cluster": ctx.cluster.name,
               "instance_id": f"{ctx.cluster.name}-{node.name}-{digest}",
               "generator": f"pgha-build {__version__}", "node": _identity(ctx, node),
               "roles": list(node.roles), **parts}
    check_schema(payload, node.name)
    return payload


def check_schema(payload: dict[str, Any], host: str) -> None:
    """The seed against the schema the agent reads (pgha_agent/seed_schema.json): a seed the
    agent would refuse is never written."""
    schema = agentmod.package_module("schema")
    invalid = agentmod.package_module("errors").SeedInvalid
    try:
        schema.check_seed(payload, agentmod.seed_schema())
    except invalid as exc:
        raise PghaError(f"the seed rendered for {host} breaks the seed schema: {exc}",
                        hint="a bug in a role.yaml or in pgha-build: report it with the "
                             "cluster file") from None


def network_config(ctx: Context, node: Node) -> dict[str, Any]:
    net = ctx.cluster.network
    lay = render.base_context(ctx.cluster)["layout"]
    eth: dict[str, Any] = {}
    if node.mac:
        eth["match"] = {"macaddress": node.mac}
        eth["set-name"] = lay.nic
    eth.update({"dhcp4": False, "addresses": [f"{node.address}/{net.cidr.prefixlen}"],
                "routes": [{"to": "0.0.0.0/0", "via": str(net.gateway)}],
                "nameservers": {"addresses": [str(d) for d in net.dns], "search": [net.domain]}})
    return {"version": 2, "ethernets": {lay.nic: eth}}


def seed_files(ctx: Context, node: Node, seed: dict[str, Any]) -> dict[str, str]:
    """The files of the seed folder / ISO: relative path -> text."""
    header = f"# {render.header()}\n"
    meta = {"instance-id": seed["instance_id"], "local-hostname": node.name}
    user = {"hostname": node.name, "fqdn": seed["node"]["fqdn"], "preserve_hostname": False}
    return {
        "meta-data": header + fastyaml.dump(meta, sort_keys=False),
        "network-config": header + fastyaml.dump(network_config(ctx, node), sort_keys=False),
        "user-data": "#cloud-config\n" + header
        + "# pgha-firstboot configures this node from pgha/seed.json.\n"
        + fastyaml.dump(user, sort_keys=False),
        "pgha/seed.json": json.dumps(seed, indent=2, sort_keys=True) + "\n",
    }


def _stage_dir(dest: Path, files: dict[str, str], epoch: int) -> Path:
    """Write the seed folder in a private temporary folder beside dest; return it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(dest.parent, 0o700)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    for rel, text in files.items():
        path = tmp / rel
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600)
        os.utime(path, (epoch, epoch))
    for folder in (tmp / "pgha", tmp):
        os.chmod(folder, 0o700)
        os.utime(folder, (epoch, epoch))
    return tmp


def _swap(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def _write_iso(ctx: Context, folder: Path, iso: Path) -> None:
    with replacing(iso, mode=0o600) as tmp:
        ctx.runner.run(["xorriso", "-as", "mkisofs", "-quiet", "-o", tmp, "-V", "cidata",
                        "-J", "-r", folder], env={"SOURCE_DATE_EPOCH": str(ctx.epoch)})


def write_seed(ctx: Context, node: Node, secrets: Secrets) -> list[Artifact]:
    return _seed_writer(ctx, node, secrets)()


def _seed_writer(ctx: Context, node: Node, secrets: Secrets) -> Callable[[], list[Artifact]]:
    """Render the node's seed now; the returned call writes it (folder and ISO) unless it is
    up to date, and returns its artifacts. Writers of different nodes may run at once."""
    seed = render_seed(ctx, node, secrets)
    files = seed_files(ctx, node, seed)
    stage = f"seeds-{node.name}"
    key = input_key("seeds", __version__, ctx.epoch, sorted(files.items()))
    role = ",".join(node.roles)
    arts = [artifact(ctx.out, "seed", ctx.out.seeds / node.name / rel, role=role,
                     host=node.name, secret=True) for rel in SEED_FILES]
    arts.append(artifact(ctx.out, "seed-iso", ctx.out.seeds / f"{node.name}-cidata.iso",
                         role=role, host=node.name, secret=True))

    def write() -> None:
        tmp = _stage_dir(ctx.out.seeds / node.name, files, ctx.epoch)
        try:  # the ISO first: if it fails, the old folder and ISO both stay as they were
            _write_iso(ctx, tmp, ctx.out.seeds / f"{node.name}-cidata.iso")
            _swap(tmp, ctx.out.seeds / node.name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return lambda: cached_stage(ctx, stage, key, arts, write)


@dataclass(frozen=True)
class SeedsResult:
    """The `seeds` step's result: each written node's seed folder and NoCloud ISO, by name."""

    folders: dict[str, Path]
    isos: dict[str, Path]
    artifacts: list[Artifact]


def write_seeds(ctx: Context, hosts: list[str] | None = None,
                secrets: Secrets | None = None) -> SeedsResult:
    """The `seeds` step: every node's seed (or only `hosts`'), with the cluster's secrets.
    Each node's seed is owned by its state "seeds-<host>"; the CA certificate by "pki"."""
    require("xorriso")
    sec = secrets or tlsplan.load_secrets(ctx.out, ctx.cluster)
    nodes = [ctx.cluster.node(h) for h in hosts] if hosts else list(ctx.cluster.nodes)
    writers = [_seed_writer(ctx, node, sec) for node in nodes]
    arts: list[Artifact] = []
    # xorriso mostly waits (a fixed 0.1 s pause per run): the nodes' writes overlap.
    with ThreadPoolExecutor(max_workers=min(8, len(writers) or 1),
                            thread_name_prefix="seed") as pool:
        for written in pool.map(lambda write: write(), writers):
            arts += written
    if sec.tls is not None:  # the CA certificate is public: clients need it (sslrootcert)
        own = ctx.out.for_platform("")  # the folder's one CA, whichever platform's seeds
        arts += save(own, "pki", input_key(sec.tls.ca.cert_pem),
                     [artifact(own, "ca-cert", own.pki / "ca.crt")])
    ctx.messages.append(f"seeds: {len(nodes)} seed(s) (folder + cidata ISO) in {ctx.out.seeds}")
    return SeedsResult({n.name: ctx.out.seeds / n.name for n in nodes},
                       {n.name: ctx.out.seeds / f"{n.name}-cidata.iso" for n in nodes}, arts)
