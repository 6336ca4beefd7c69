"""`pgha-build check --deep`: every node's generated configs checked by the real tools.

Each seed file declares in role.yaml how it is checked (`check:`):
- patroni: `patroni --validate-config` on a copy whose listen addresses are 127.0.0.1 with free
  ports, bin_dir the local PostgreSQL's and data_dir a scratch folder (the validator checks that
  bin_dir exists and that listen ports are free, which a node's address is not on this host);
- haproxy: `haproxy -c -f` on the file as it is (a check does not bind);
- etcd_env: all etcd members started together from their environment files, with their URLs
  moved to 127.0.0.1 free ports and scratch data dirs, until each answers /health (or exits with
  a config error); they are stopped after ETCD_RUN_S seconds.
Each failure is one line naming the host, the file and the tail of the tool's output; secrets
are masked in that output. The checks write only in a temporary folder; but the seeds are
rendered from the cluster's secrets, so when output/<cluster>/secrets.yaml (and, with TLS, pki/:
the CA and node certificates) does not exist yet it is created there, as `pgha-build seeds` would.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from builder.core import agentmod
from builder.core.context import Context
from builder.core.errors import PghaError, ValidationFailed
from builder.core.log import log
from builder.core.run import require
from builder.model import roles, tlsplan
from builder.model import secrets as secretsmod
from builder.stages import firewall, render, specs
from builder.stages import seeds as seedmod

ETCD_RUN_S = 8
PG_BIN_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/pgsql-*/bin")


@dataclass(frozen=True)
class SeedFile:
    host: str
    path: str
    check: str
    content: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def local_pg_bin() -> str:
    found = [p for g in PG_BIN_GLOBS for p in Path("/").glob(g.lstrip("/"))
             if (p / "postgres").exists()]
    if not found:
        raise PghaError("no local PostgreSQL found for `patroni --validate-config`",
                        hint="install it: Debian `apt-get install postgresql-15`")
    return str(max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", str(p))]))


def collect(ctx: Context, sec: secretsmod.Secrets, work: Path) -> list[SeedFile]:
    """Every seed file that declares a check, per node. Each node's seed is rendered with its
    paths under work/<host>/ and its files written there, so the files a config names (the
    TLS certificates and keys) exist where the tools look for them."""
    out = []
    for node in ctx.cluster.nodes:
        checks = {_dest(ctx, f.dest): f.check for r in node.roles for f in roles.get(r).seed_files
                  if f.check}
        root = work / node.name
        for f in seedmod.render_seed(ctx, node, sec, root_prefix=str(root))["files"]:
            dest = root / f["path"].lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(f["content"])
            dest.chmod(0o600)
            if f["path"] in checks:
                out.append(SeedFile(node.name, f["path"], checks[f["path"]], f["content"]))
    return out


def _dest(ctx: Context, dest: str) -> str:
    return render.render_string(dest, render.base_context(ctx.cluster))


def _tail(text: str, sec: secretsmod.Secrets, lines: int = 3) -> str:
    for value in sec.values():
        text = text.replace(value, "***")
    kept = [ln.strip() for ln in text.strip().splitlines() if ln.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


def check_patroni(ctx: Context, f: SeedFile, work: Path, sec: secretsmod.Secrets,
                  bin_dir: str) -> str | None:
    data = yaml.safe_load(f.content)
    data["restapi"]["listen"] = f"127.0.0.1:{free_port()}"
    data["postgresql"]["listen"] = f"127.0.0.1:{free_port()}"
    data["postgresql"]["bin_dir"] = bin_dir
    data["postgresql"]["data_dir"] = str(work / f"{f.host}-pgdata")
    copy = work / f"{f.host}-patroni.yml"
    copy.write_text(yaml.safe_dump(data))
    copy.chmod(0o600)
    proc = ctx.runner.run(["patroni", "--validate-config", copy], check=False)
    if proc.returncode == 0:
        return None
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    return f"{f.host} {f.path}: patroni --validate-config: {_tail(out, sec)}"


def check_haproxy(ctx: Context, f: SeedFile, work: Path, sec: secretsmod.Secrets) -> str | None:
    copy = work / f"{f.host}-haproxy.cfg"
    copy.write_text(f.content)
    copy.chmod(0o600)
    proc = ctx.runner.run(["haproxy", "-c", "-f", copy], check=False)
    if proc.returncode == 0:
        return None
    out = (proc.stdout + proc.stderr).decode(errors="replace")
    return f"{f.host} {f.path}: haproxy -c: {_tail(out, sec)}"


def parse_env(text: str) -> dict[str, str]:
    """An etcd env file, read by the agent's own parser (pgha_agent/envfile.py)."""
    env: dict[str, str] = agentmod.standalone("envfile").parse_env_file(text)
    return env


def localize_etcd(envs: dict[str, dict[str, str]], work: Path) -> dict[str, dict[str, str]]:
    """The members' environments with every URL on 127.0.0.1 free ports and scratch data."""
    peer = {h: free_port() for h in envs}
    client = {h: free_port() for h in envs}
    names = {env.get("ETCD_NAME", h): h for h, env in envs.items()}
    out = {}
    for host, env in envs.items():
        scheme = "https" if env.get("ETCD_CERT_FILE") else "http"
        initial = []
        for item in env.get("ETCD_INITIAL_CLUSTER", "").split(","):
            name, _, _url = item.partition("=")
            other = names.get(name)
            initial.append(f"{name}={scheme}://127.0.0.1:{peer[other]}" if other else item)
        out[host] = {**env,
                     "ETCD_DATA_DIR": str(work / f"{host}-etcd"),
                     "ETCD_LISTEN_PEER_URLS": f"{scheme}://127.0.0.1:{peer[host]}",
                     "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"{scheme}://127.0.0.1:{peer[host]}",
                     "ETCD_LISTEN_CLIENT_URLS": f"{scheme}://127.0.0.1:{client[host]}",
                     "ETCD_ADVERTISE_CLIENT_URLS": f"{scheme}://127.0.0.1:{client[host]}",
                     "ETCD_INITIAL_CLUSTER": ",".join(initial)}
    return out


def _healthy(url: str, env: dict[str, str]) -> bool:
    context = None
    if url.startswith("https:"):  # client-cert-auth: present the member's own certificate
        context = ssl.create_default_context(cafile=env["ETCD_TRUSTED_CA_FILE"])
        context.load_cert_chain(env["ETCD_CERT_FILE"], env["ETCD_KEY_FILE"])
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as resp:
            body: Any = json.loads(resp.read())
            return str(body.get("health")) == "true"
    except (OSError, ValueError):
        return False


def check_etcd(ctx: Context, files: list[SeedFile], work: Path,
               sec: secretsmod.Secrets) -> list[str]:
    """Start every member together; each must answer /health before ETCD_RUN_S runs out."""
    if not files:
        return []
    envs = localize_etcd({f.host: parse_env(f.content) for f in files}, work)
    healthy: set[str] = set()
    with ThreadPoolExecutor(max_workers=len(files)) as pool:
        futures = {f.host: pool.submit(ctx.runner.run, ["timeout", str(ETCD_RUN_S), "etcd"],
                                       env=envs[f.host], check=False) for f in files}
        deadline = time.monotonic() + ETCD_RUN_S
        while time.monotonic() < deadline and len(healthy) < len(files):
            for f in files:
                url = envs[f.host]["ETCD_ADVERTISE_CLIENT_URLS"].split(",")[0] + "/health"
                if f.host not in healthy and _healthy(url, envs[f.host]):
                    healthy.add(f.host)
            time.sleep(0.3)
        results = {h: fut.result() for h, fut in futures.items()}
    problems = []
    for f in files:
        if f.host not in healthy:
            proc = results[f.host]
            why = "never answered /health" if proc.returncode == 124 else f"exit {proc.returncode}"
            tail = _tail(proc.stderr.decode(errors="replace"), sec)
            problems.append(f"{f.host} {f.path}: etcd {why}: {tail}")
    return problems


def check_firewall(ctx: Context) -> list[str]:
    """Each node's rich rules, loaded with its roles' firewalld services by the real
    firewall-offline-cmd into a scratch configuration."""
    problems = []
    for node in ctx.cluster.nodes:
        context = render.base_context(ctx.cluster)
        services = {}
        for r in node.roles:
            for entry in specs.firewall_files(roles.get(r), context):
                services[Path(entry.dest).stem] = entry.content.decode()
        try:
            firewall.check_rules(ctx.runner, services, firewall.node_rules(ctx.cluster, node),
                                 node.name)
        except ValidationFailed as exc:
            problems.append(str(exc))
    return problems


def run(ctx: Context) -> list[str]:
    """Check every generated config with its tool; log one line per file; raise on failure."""
    sec = tlsplan.load_secrets(ctx.out, ctx.cluster)
    with tempfile.TemporaryDirectory(prefix="pgha-deep-") as tmp:
        work = Path(tmp)
        files = collect(ctx, sec, work)
        kinds = {f.check for f in files}
        require(*sorted({"patroni": "patroni", "haproxy": "haproxy", "etcd_env": "etcd"}[k]
                        for k in kinds))
        bin_dir = local_pg_bin() if "patroni" in kinds else ""
        problems = [p for f in files if f.check == "patroni"
                    if (p := check_patroni(ctx, f, work, sec, bin_dir))]
        problems += [p for f in files if f.check == "haproxy"
                     if (p := check_haproxy(ctx, f, work, sec))]
        problems += check_etcd(ctx, [f for f in files if f.check == "etcd_env"], work, sec)
        problems += check_firewall(ctx)
        kinds.add("firewall")
    notes = {
        "patroni": f"patroni --validate-config (listen on 127.0.0.1 free ports, "
                   f"bin_dir {bin_dir}, scratch data_dir)",
        "haproxy": "haproxy -c -f (as generated)",
        "etcd_env": "etcd started with every member on 127.0.0.1 free ports until /health",
        "firewall": "firewall-offline-cmd --system-config (scratch): role services + rich rules",
    }
    for kind in sorted(kinds):
        n = len([f for f in files if f.check == kind]) if kind != "firewall" else len(
            ctx.cluster.nodes)
        log.info("deep: %d file(s) checked with %s", n, notes[kind])
    for p in problems:
        log.error("deep: %s", p)
    if problems:
        raise ValidationFailed(f"deep check failed: {len(problems)} problem(s): {problems[0]}",
                               hint="see the lines above; `pgha-build render --host H` shows a "
                                    "node's files")
    return [f"{f.host} {f.path}" for f in files]
