"""What AS3 requires of a declaration (the stand-in BIG-IP is tests/f5_standin.py).

`as3_problems()` encodes the checks of AS3's JSON schema (F5Networks/f5-appsvcs-extension,
schema/3.36.0/as3-schema.json) that matter for our objects, with AS3's error wording
("/path: should have required property 'x'"): ADC / Tenant / Application classes and naming,
required properties per class, enums and ranges, no unknown property where the schema forbids
them, `use` pointers that resolve to an object of the right class, IPv4 addresses.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

ADC_PROPS = {"class", "$schema", "updateMode", "schemaVersion", "id", "target", "label",
             "remark", "constants", "Common", "controls", "scratch"}
TENANT_PROPS = {"class", "label", "remark", "verifiers", "enable", "defaultRouteDomain",
                "Shared", "constants", "controls", "optimisticLockKey"}
APP_PROPS = {"class", "label", "remark", "template", "schemaOverlay", "enable", "constants",
             "serviceMain"}
TENANT_RE = re.compile(r"^[A-Za-z][0-9A-Za-z_.-]*$")
APP_RE = re.compile(r"^[A-Za-z]([0-9A-Za-z_.-]{0,188}[0-9A-Za-z_.])?$")
SERVER_NAME_RE = re.compile(r"^[A-Za-z][0-9A-Za-z_.-]*$")
REMARK_BAD = re.compile(r"[\x00-\x1f\x22\x5c\x7f]")
LABEL_BAD = re.compile(r"[\x00-\x1f\x22#&*<>?\x5b-\x5d`\x7f]")
POOL_PROPS = {"class", "label", "remark", "allowNATEnabled", "allowSNATEnabled",
              "loadBalancingMode", "minimumMembersActive", "monitors", "minimumMonitors",
              "members", "reselectTries", "serviceDownAction", "slowRampTime"}
LB_MODES = {"dynamic-ratio-member", "dynamic-ratio-node", "fastest-app-response",
            "fastest-node", "least-connections-member", "least-connections-node",
            "least-sessions", "observed-member", "observed-node", "predictive-member",
            "predictive-node", "ratio-least-connections-member", "ratio-least-connections-node",
            "ratio-member", "ratio-node", "ratio-session", "round-robin",
            "weighted-least-connections-member", "weighted-least-connections-node"}
MONITOR_PROPS = {"class", "label", "remark", "monitorType", "targetAddress", "targetPort",
                 "interval", "upInterval", "timeUntilUp", "timeout", "adaptive", "send",
                 "receive", "receiveDown", "reverse", "username", "passphrase", "transparent",
                 "dscp"}
HTTPS_PROPS = {"ciphers", "clientCertificate", "clientTLS"}
BUILTIN_MONITORS = {"http", "https", "http2", "icmp", "tcp-half-open", "tcp"}


def _ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value).split("%")[0])
        return isinstance(value, str)
    except ValueError:
        return False


def _int(obj: dict[str, Any], key: str, lo: int, hi: int, path: str, out: list[str],
         required: bool = False) -> None:
    if key not in obj:
        if required:
            out.append(f"{path}: should have required property '{key}'")
        return
    v = obj[key]
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        out.append(f"{path}/{key}: should be integer in [{lo}, {hi}]")


def _text(obj: dict[str, Any], path: str, out: list[str]) -> None:
    for key, bad in (("remark", REMARK_BAD), ("label", LABEL_BAD)):
        v = obj.get(key)
        if v is not None and (not isinstance(v, str) or len(v) > 64 or bad.search(v)):
            out.append(f"{path}/{key}: should match the {key} pattern, at most 64 characters")


def _pointer(ref: Any, app: dict[str, Any], cls: str, path: str, out: list[str]) -> None:
    if not (isinstance(ref, dict) and len(ref) == 1 and set(ref) <= {"use", "bigip"}):
        out.append(f"{path}: should be an object with exactly one of 'use', 'bigip'")
        return
    target = ref.get("use")
    if target is not None and not (isinstance(app.get(target), dict)
                                   and app[target].get("class") == cls):
        out.append(f"{path}/use: declaration has no {cls} named '{target}' in this application")


def as3_problems(decl: Any, schema_current: str = "3.45.0") -> list[str]:
    out: list[str] = []
    if not isinstance(decl, dict) or decl.get("class") != "ADC":
        return ["/class: should be equal to constant 'ADC'"]
    sv = decl.get("schemaVersion")
    if not isinstance(sv, str) or not re.fullmatch(r"3\.\d+\.\d+", sv):
        out.append("/schemaVersion: should be a supported schema version")
    elif _vt(sv) > _vt(schema_current):
        out.append(f"/schemaVersion: should be equal to one of the allowed values "
                   f"(3.0.0 .. {schema_current})")
    if decl.get("updateMode", "selective") not in ("selective", "complete"):
        out.append("/updateMode: should be equal to one of the allowed values")
    if not isinstance(decl.get("id", ""), str) or re.search(r"[\x00-\x20\"'<>\\^`|]",
                                                           decl.get("id", "")):
        out.append("/id: should match the declaration id pattern")
    _text(decl, "", out)
    tenants = [k for k in decl if k not in ADC_PROPS]
    if not tenants:
        out.append("/: declaration has no tenant")
    for t in tenants:
        _tenant(t, decl[t], out)
    return out


def _vt(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def _tenant(name: str, tenant: Any, out: list[str]) -> None:
    path = f"/{name}"
    if not TENANT_RE.match(name) or len(name) > 190:
        out.append(f"{path}: should match pattern \"{TENANT_RE.pattern}\"")
    if not isinstance(tenant, dict) or tenant.get("class") != "Tenant":
        out.append(f"{path}/class: should be equal to constant 'Tenant'")
        return
    _text(tenant, path, out)
    for a in [k for k in tenant if k not in TENANT_PROPS]:
        _application(f"{path}/{a}", a, tenant[a], out)


def _application(path: str, name: str, app: Any, out: list[str]) -> None:
    if not APP_RE.match(name):
        out.append(f"{path}: should match pattern \"{APP_RE.pattern}\"")
    if not isinstance(app, dict) or app.get("class") != "Application":
        out.append(f"{path}/class: should be equal to constant 'Application'")
        return
    _text(app, path, out)
    checks = {"Monitor": _monitor, "Pool": _pool, "Service_TCP": _service_tcp,
              "TCP_Profile": _tcp_profile}
    for key in [k for k in app if k not in APP_PROPS]:
        obj = app[key]
        where = f"{path}/{key}"
        if not APP_RE.match(key):
            out.append(f"{where}: should match the object name pattern")
        cls = obj.get("class") if isinstance(obj, dict) else None
        if cls not in checks:
            out.append(f"{where}/class: should be equal to one of the allowed values")
            continue
        _text(obj, where, out)
        checks[cls](obj, app, where, out)


def _monitor(m: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    if "monitorType" not in m:
        out.append(f"{path}: should have required property 'monitorType'")
    allowed = MONITOR_PROPS | (HTTPS_PROPS if m.get("monitorType") == "https" else set())
    for key in set(m) - allowed:
        out.append(f"{path}: should NOT have additional property '{key}'")
    if m.get("monitorType") not in ("http", "https", "tcp", "icmp", "tcp-half-open"):
        out.append(f"{path}/monitorType: should be equal to one of the allowed values")
    if m.get("monitorType") in ("http", "https"):
        for key in ("send", "receive"):  # required by AS3 3.29 and earlier; we always send them
            if not isinstance(m.get(key), str):
                out.append(f"{path}/{key}: should be string")
    _int(m, "interval", 0, 3600, path, out)
    _int(m, "timeout", 0, 900, path, out)
    _int(m, "targetPort", 0, 65535, path, out)
    _int(m, "upInterval", 0, 3600, path, out)
    _int(m, "timeUntilUp", 0, 1800, path, out)


def _pool(p: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    for key in set(p) - POOL_PROPS:
        out.append(f"{path}: should NOT have additional property '{key}'")
    if p.get("loadBalancingMode", "round-robin") not in LB_MODES:
        out.append(f"{path}/loadBalancingMode: should be equal to one of the allowed values")
    if p.get("serviceDownAction", "none") not in ("drop", "none", "reselect", "reset"):
        out.append(f"{path}/serviceDownAction: should be equal to one of the allowed values")
    _int(p, "slowRampTime", 0, 900, path, out)
    for i, mon in enumerate(p.get("monitors", [])):
        if isinstance(mon, str):
            if mon not in BUILTIN_MONITORS:
                out.append(f"{path}/monitors/{i}: should be equal to one of the allowed values")
        else:
            _pointer(mon, app, "Monitor", f"{path}/monitors/{i}", out)
    for i, member in enumerate(p.get("members", [])):
        _member(member, f"{path}/members/{i}", out)


def _member(m: Any, path: str, out: list[str]) -> None:
    if not isinstance(m, dict):
        out.append(f"{path}: should be object")
        return
    _int(m, "servicePort", 0, 65535, path, out, required=True)
    _int(m, "connectionLimit", 0, 2147483647, path, out)
    addresses, servers = m.get("serverAddresses"), m.get("servers")
    if addresses is None and servers is None and "bigip" not in m:
        out.append(f"{path}: should have required property 'serverAddresses'")
    for i, a in enumerate(addresses or []):
        if not _ip(a):
            out.append(f"{path}/serverAddresses/{i}: should match format \"f5ip\"")
    for i, s in enumerate(servers or []):
        if not isinstance(s, dict) or set(s) - {"name", "address"} or "address" not in s:
            out.append(f"{path}/servers/{i}: should have only 'name' and required 'address'")
            continue
        if not _ip(s["address"]):
            out.append(f"{path}/servers/{i}/address: should match format \"f5ip\"")
        if "name" in s and not (SERVER_NAME_RE.match(str(s["name"])) and len(s["name"]) <= 64):
            out.append(f"{path}/servers/{i}/name: should match the server name pattern")


def _service_tcp(s: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    _int(s, "virtualPort", 0, 65535, path, out, required=True)
    vas = s.get("virtualAddresses")
    if not isinstance(vas, list) or not vas:
        out.append(f"{path}: should have required property 'virtualAddresses'")
    else:
        for i, va in enumerate(vas):
            if not _ip(va):
                out.append(f"{path}/virtualAddresses/{i}: should match format \"f5ip\"")
    pool = s.get("pool")
    if isinstance(pool, str):
        _pointer({"use": pool}, app, "Pool", f"{path}/pool", out)
    elif pool is not None:
        _pointer(pool, app, "Pool", f"{path}/pool", out)
    prof = s.get("profileTCP")
    if isinstance(prof, str):
        if prof not in ("normal", "lan", "wan", "mobile"):
            out.append(f"{path}/profileTCP: should be equal to one of the allowed values")
    elif prof is not None:
        _pointer(prof, app, "TCP_Profile", f"{path}/profileTCP", out)
    if not isinstance(s.get("persistenceMethods", []), list):
        out.append(f"{path}/persistenceMethods: should be array")
    if isinstance(s.get("snat"), str) and s["snat"] not in ("none", "self", "auto"):
        out.append(f"{path}/snat: should be equal to one of the allowed values")


def _tcp_profile(p: dict[str, Any], app: dict[str, Any], path: str, out: list[str]) -> None:
    if "idleTimeout" in p and p["idleTimeout"] != -1:
        _int(p, "idleTimeout", 1, 86400, path, out)
