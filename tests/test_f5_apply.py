"""`pgha-build f5 --apply`: against a stand-in AS3 on 127.0.0.1 (tests/f5_standin.py) that checks
auth, content type and the declaration's structure and answers like AS3 does."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from f5_standin import FakeBigIp

from builder.cli import cli
from builder.core.errors import EXIT_VALIDATION, PghaError
from builder.core.httpclient import RetryPolicy
from builder.f5 import apply
from builder.model import loading
from builder.stages import f5as3 as as3
from builder.stages import f5plan as plan

PASSWORD = "S3cret-do-not-print-42"
DB = [{"name": f"db{i}", "roles": ["db"], "address": f"10.77.0.{10 + i}"} for i in (1, 2, 3)]
CLUSTER = {"name": "shop", "nodes": DB,
           "load_balancer": {"kind": "f5", "virtual_ip": "10.77.0.50",
                             "f5": {"self_ips": ["10.77.0.5"]}}}
ENV = {"PGHA_F5_USER": "admin", "PGHA_F5_PASSWORD": PASSWORD}


@pytest.fixture
def bigip() -> Iterator[FakeBigIp]:
    with FakeBigIp(password=PASSWORD, token="tok-123") as fake:
        yield fake


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    f = tmp_path / "cluster.yaml"
    f.write_text(yaml.safe_dump(CLUSTER))
    return CliRunner().invoke(cli, ["-v", "-c", str(f), "-o", str(tmp_path / "out"), "f5",
                                    *args], env=ENV if env is None else env)


def never_printed(result: Any) -> None:
    basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic):
        assert secret not in result.output


def test_dry_run_by_default_changes_nothing(tmp_path: Path, bigip: FakeBigIp) -> None:
    result = run(tmp_path, "--apply", bigip.url)
    assert result.exit_code == 0, result.output
    assert bigip.tenants == {}
    post = next(e for e in bigip.log if e["method"] == "POST")
    assert "controls.dryRun=true" in post["query"] and "async=true" in post["query"]
    assert post["headers"]["Content-Type"] == "application/json"
    assert json.loads(post["body"]) == json.loads((tmp_path / "out/shop/f5/as3.json").read_text())
    assert "tenant shop: success, 7 change(s) (dry-run: nothing changed on the BIG-IP)" \
        in result.output
    assert "create ltm pool /shop/postgres/pool_primary" in result.output
    assert "Deploy with --yes" in result.output
    never_printed(result)


def test_yes_deploys_waits_for_the_task_and_is_idempotent(tmp_path: Path,
                                                         bigip: FakeBigIp) -> None:
    bigip.polls_in_progress = 2
    result = run(tmp_path, "--apply", bigip.url, "--yes")
    assert result.exit_code == 0, result.output
    assert "tenant shop: success" in result.output and "deployed" in result.output
    assert set(bigip.tenants) == {"shop"}
    polls = [e for e in bigip.log if "/task/" in e["path"]]
    assert len(polls) == 3  # two "in progress" answers, then the result
    again = run(tmp_path, "--apply", bigip.url, "--yes")
    assert again.exit_code == 0 and "tenant shop: no change" in again.output
    never_printed(result)


def test_token_from_the_environment(tmp_path: Path, bigip: FakeBigIp) -> None:
    result = run(tmp_path, "--apply", bigip.url, env={"PGHA_F5_TOKEN": "tok-123"})
    assert result.exit_code == 0, result.output
    assert all(e["headers"].get("X-F5-Auth-Token") == "tok-123"
               and "Authorization" not in e["headers"] for e in bigip.log)
    assert "tok-123" not in result.output


def test_wrong_password_one_line(tmp_path: Path, bigip: FakeBigIp) -> None:
    result = run(tmp_path, "--apply", bigip.url,
                 env={"PGHA_F5_USER": "admin", "PGHA_F5_PASSWORD": "wrong-pw-777"})
    assert result.exit_code == 1
    assert "returned HTTP 401" in result.output and "hint: the BIG-IP refused" in result.output
    assert "wrong-pw-777" not in result.output and "Traceback" not in result.output
    assert not any(e["method"] == "POST" for e in bigip.log)


def test_no_credentials_nothing_written(tmp_path: Path, bigip: FakeBigIp) -> None:
    result = run(tmp_path, "--apply", bigip.url, env={})
    assert result.exit_code == 1 and "no BIG-IP credentials" in result.output
    assert bigip.log == [] and not list((tmp_path / "out").rglob("*.*"))


def test_as3_missing_or_too_old(tmp_path: Path, bigip: FakeBigIp) -> None:
    bigip.installed = False
    result = run(tmp_path, "--apply", bigip.url)
    assert result.exit_code == 1 and "AS3 is not installed" in result.output
    bigip.installed, bigip.version = True, "3.30.0"
    result = run(tmp_path, "--apply", bigip.url)
    assert result.exit_code == 1
    assert "accepts schemas up to 3.30.0; the declaration needs 3.36.0" in result.output
    assert not any(e["method"] == "POST" for e in bigip.log)


def test_tenant_failure_reported(tmp_path: Path, bigip: FakeBigIp) -> None:
    bigip.faults.append("tenant-fails")
    result = run(tmp_path, "--apply", bigip.url, "--yes")
    assert result.exit_code == EXIT_VALIDATION
    assert "tenant shop: declaration failed (code 422): 01070734:3: Configuration error" \
        in result.output
    assert "AS3 did not apply the declaration: 1 error(s)" in result.output


def api_for(bigip: FakeBigIp) -> Any:
    policy = RetryPolicy(sleep=lambda s: None)
    return apply.api_from_env(ENV, policy=policy)


def test_per_object_errors_of_an_invalid_declaration(bigip: FakeBigIp) -> None:
    decl = as3.declaration(plan.plan(loading.from_data(copy.deepcopy(CLUSTER))))
    app = decl["shop"]["postgres"]
    del app["pool_primary"]["members"][0]["servicePort"]
    app["vs_replicas"]["pool"] = "pool_nope"
    outcome = apply.apply(bigip.url, api_for(bigip), decl, dry_run=False,
                          sleep=lambda s: None)
    assert outcome.errors[:2] == [
        "/shop/postgres/pool_primary/members/0: should have required property 'servicePort'",
        ("/shop/postgres/vs_replicas/pool/use: declaration has no Pool named 'pool_nope' in "
         "this application")]
    assert outcome.errors[2] == "tenant (declaration): declaration is invalid (code 422)"
    assert bigip.tenants == {}


def test_busy_as3_is_retried(bigip: FakeBigIp) -> None:
    bigip.faults.append("busy")
    decl = as3.declaration(plan.plan(loading.from_data(copy.deepcopy(CLUSTER))))
    outcome = apply.apply(bigip.url, api_for(bigip), decl, dry_run=False, sleep=lambda s: None)
    assert outcome.errors == [] and outcome.lines == ["tenant shop: success"]
    assert [e["method"] for e in bigip.log].count("POST") == 2


def test_task_that_never_finishes(bigip: FakeBigIp) -> None:
    bigip.polls_in_progress = 10**6
    decl = as3.declaration(plan.plan(loading.from_data(copy.deepcopy(CLUSTER))))
    now = [0.0]
    client = apply.As3Client(bigip.url, api_for(bigip), wait_s=60, clock=lambda: now[0],
                             sleep=lambda s: now.__setitem__(0, now[0] + s))
    with pytest.raises(PghaError, match=r"AS3 task .* still in progress after 60 s"):
        client.declare(decl, dry_run=True)
    polls = [e for e in bigip.log if "/task/" in e["path"]]
    assert 10 < len(polls) < 30  # backs off to one poll every 5 s


@pytest.mark.parametrize(("url", "words"), [
    ("http://bigip.example.net", "refusing plain http"),
    ("https://admin:pw@bigip.example.net", "carries credentials"),
    ("https://bigip.example.net/mgmt/shared", "not a path"),
    ("ftp://bigip", "not an https:// URL"),
])
def test_bad_urls(url: str, words: str) -> None:
    with pytest.raises(PghaError, match=words):
        apply.base_url(url)
    assert apply.base_url("https://bigip.example.net:8443/") == "https://bigip.example.net:8443"


def test_credentials_with_a_newline_refused() -> None:
    with pytest.raises(PghaError, match="PGHA_F5_PASSWORD holds a line break"):
        apply.api_from_env({"PGHA_F5_USER": "a", "PGHA_F5_PASSWORD": "x\ny"})


def test_status_view(tmp_path: Path, bigip: FakeBigIp) -> None:
    missing = run(tmp_path, "--status", bigip.url)
    assert not (tmp_path / "out").exists()  # read-only: nothing written
    assert missing.exit_code == 1 and "the BIG-IP has no pool /shop/postgres/pool_primary" \
        in missing.output
    assert run(tmp_path, "--apply", bigip.url, "--yes").exit_code == 0
    healthy = run(tmp_path, "--status", bigip.url)
    assert healthy.exit_code == 0, healthy.output
    assert "/shop/postgres/pool_primary (read-write: the primary only): 1 of 3 available" \
        in healthy.output
    assert "ok: read-write on db1, read-only on db2, db3" in healthy.output
    bigip.up = {"pool_primary": {"db1", "db2"}, "pool_replicas": set()}
    split = run(tmp_path, "--status", bigip.url)
    assert split.exit_code == 1
    assert "pool_primary has 2 available member(s) db1, db2: it needs exactly one" in split.output
    assert "pool_replicas has no available member" in split.output
    assert all(e["method"] == "GET" for e in bigip.log if "/mgmt/tm/" in e["path"])
    never_printed(split)
