"""Render the cluster's repositories (builder.model.repos.resolve) for each consumer (pure).

- `dnf_repo_file`: a dnf .repo file; the nodes' /etc/yum.repos.d/pgha.repo (shipped in
  pgha-common) and the cloud image's build-time file.
- `composer_source`: an image-builder (composer-cli) source. Composer sources cannot limit a
  repository to some packages; the file says so, and the blueprint names the HA packages'
  repository through `ha_packages` (see docs/rhel8.md).
- `gpg_keys`: the distinct keys to import on an installed node (`rpm --import`).
The kickstart `url`/`repo` lines are written by kickstart/partials/install.ks.j2 from the same
list. Every value is typed by the model (URL and package-name patterns: no space, quote or
newline), so nothing here needs quoting beyond the target's syntax.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from builder.model.cluster import Cluster
from builder.model.repos import ResolvedRepo, pgha_repo
from builder.stages.quoting import QuotingError

_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]")


def _bool(value: bool) -> str:
    return "1" if value else "0"


def _checked(lines: list[str]) -> list[str]:
    """Each line stays one line: the model's types already refuse line breaks; a bug would
    otherwise add an ini key or a TOML statement."""
    for line in lines:
        if _LINE_BREAKS.search(line):
            raise QuotingError(f"repository file: refusing a line break in {line[:60]!r}")
    return lines


def dnf_section(repo: ResolvedRepo, repo_id: str | None = None) -> list[str]:
    lines = [f"[{repo_id or repo.id}]", f"name={repo.name}", f"baseurl={repo.url}", "enabled=1",
             f"gpgcheck={_bool(repo.gpgcheck)}", f"repo_gpgcheck={_bool(repo.repo_gpgcheck)}"]
    if repo.gpgkey:
        lines.append(f"gpgkey={repo.gpgkey}")
    if repo.includepkgs:
        lines.append(f"includepkgs={','.join(repo.includepkgs)}")
    return _checked(lines)


def dnf_repo_file(repos: Iterable[ResolvedRepo], header: str) -> str:
    out = [f"# {header}"]
    for repo in repos:
        out += ["", *dnf_section(repo)]
    return "\n".join(out) + "\n"


def node_repo_file(cluster: Cluster, header: str) -> str:
    """/etc/yum.repos.d/pgha.repo: the cluster's repositories kept on nodes, then this tool's
    own (signed, gpgcheck and repo_gpgcheck on; skipped while `pgha-build serve` is down so that
    the others still update)."""
    text = dnf_repo_file([r for r in cluster.repo_list() if r.on_nodes],
                         header + "; the cluster's repositories")
    pgha = dnf_section(pgha_repo(cluster.repos, cluster.name))
    return text + "\n" + "\n".join([*pgha, "skip_if_unavailable=1"]) + "\n"


def composer_source(repo: ResolvedRepo, header: str) -> str:
    lines = [f"# {header}"]
    if repo.includepkgs:
        lines.append(f"# includepkgs={','.join(repo.includepkgs)}: composer sources cannot "
                     "limit a repository to some packages (see docs/rhel8.md)")
    lines += [f"id = {json.dumps(repo.id)}", f"name = {json.dumps(repo.name)}",
              'type = "yum-baseurl"', f"url = {json.dumps(repo.url)}",
              f"check_gpg = {str(repo.gpgcheck).lower()}",
              f"check_repogpg = {str(repo.repo_gpgcheck).lower()}", "check_ssl = true",
              f"gpgkeys = [{', '.join(json.dumps(k) for k in (repo.gpgkey or '').split())}]",
              "system = false"]
    return "\n".join(_checked(lines)) + "\n"


def gpg_keys(repos: Iterable[ResolvedRepo]) -> list[str]:
    """The keys to import on installed nodes: file:// keys as paths (rpm --import reads both)."""
    keys: list[str] = []
    for repo in repos:
        if repo.on_nodes and repo.gpgkey and (repo.gpgcheck or repo.repo_gpgcheck):
            for url in repo.gpgkey.split():  # a mirror's repository names several
                key = url.removeprefix("file://")
                if key not in keys:
                    keys.append(key)
    return keys
