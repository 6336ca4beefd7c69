"""PXE: host kickstarts (validated with pykickstart), the BIOS and UEFI TFTP tree from the real
Debian boot loaders and grub-mknetdir, dnsmasq.conf, and the skip of hosts without a MAC."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
from test_images_support import make_tree

from builder.core.context import Context
from builder.core.errors import PghaError
from builder.core.state import load
from builder.model.cluster import Node
from builder.pxe import tree as pxe
from builder.stages import kickstart

MACS = {"db1": "52:54:00:00:00:11", "db2": "52:54:00:00:00:12", "lb1": "52:54:00:00:00:10"}


@pytest.fixture
def pctx(ctx: Context) -> Context:
    nodes = [Node(name=n.name, roles=n.roles, address=n.address, mac=MACS.get(n.name))
             for n in ctx.cluster.nodes]
    return dataclasses.replace(ctx, cluster=ctx.cluster.model_copy(update={"nodes": nodes}))


def test_host_kickstart_has_identity_and_fetches_its_seed(pctx: Context) -> None:
    text = pxe.render_host(pctx, pctx.cluster.node("db1"))
    assert kickstart.validate(text, "db1.ks") == []
    assert ("network --bootproto=static --device=52:54:00:00:00:11 --ip=10.77.0.11 "
            "--netmask=255.255.255.0 --gateway=10.77.0.1 --nameserver=10.77.0.1") in text
    assert "network --hostname=db1.pgha.lab" in text
    assert "\npgha-role-db\n" in text
    assert ("--cacert /etc/pgha/seed-ca.crt -H \"Authorization: Bearer ${token}\" "
            "-o /etc/pgha/seed/pgha/seed.json https://10.77.0.1:8443/seeds/db1/pgha/seed.json"
            ) in text
    assert "BEGIN CERTIFICATE" in text and "pgha.seed_ca=" in text
    assert "logvol /var/lib/pgsql" in text  # the db role's data volume
    lb = pxe.render_host(pctx, pctx.cluster.node("lb1"))
    assert "\npgha-role-haproxy\n" in lb and "--name=data" not in lb


def test_host_kickstarts_hold_no_secrets(built: Context) -> None:
    arts = pxe.write_host_kickstarts(built)
    assert [a.secret for a in arts] == [False] * len(built.cluster.nodes)
    secrets = built.out.secrets.read_text() if built.out.secrets.is_file() else ""
    values = [ln.split(":", 1)[1].strip() for ln in secrets.splitlines() if ":" in ln]
    for art in arts:
        text = (built.out.root / art.path).read_text()
        assert not [v for v in values if len(v) >= 12 and v in text]


@pytest.mark.integration
def test_pxe_tree(pctx: Context, tmp_path: Path) -> None:
    if not shutil.which("grub-mknetdir") or not pxe.PXELINUX.is_file():
        pytest.fail("apt-get install pxelinux syslinux-common grub-efi-amd64-bin")
    tree = make_tree(tmp_path / "tree")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("pgha").addHandler(handler)
    try:
        pxe.build_pxe(pctx, str(tree))
    finally:
        logging.getLogger("pgha").removeHandler(handler)
    assert any("db3 has no mac" in r.getMessage() for r in records)
    tftp = pctx.out.pxe / "tftp"
    for rel in ("pxelinux.0", "ldlinux.c32", "grub/x86_64-efi/core.efi", "rhel8/vmlinuz",
                "rhel8/initrd.img", "pxelinux.cfg/default"):
        assert (tftp / rel).is_file(), rel
    assert (tftp / "rhel8/vmlinuz").read_bytes() == (tree / "images/pxeboot/vmlinuz").read_bytes()
    cfg = (tftp / "pxelinux.cfg/01-52-54-00-00-00-11").read_text()
    assert "KERNEL rhel8/vmlinuz" in cfg and "initrd=rhel8/initrd.img" in cfg
    assert "inst.ks=http://10.77.0.1:8080/kickstart/hosts/db1.ks" in cfg
    assert "inst.repo=http://10.77.0.1:8080/install/" in cfg
    assert "pgha.seed_token=" in cfg and "pgha.seed_ca=" in cfg
    state = load(pctx.out, "pxe")
    assert state is not None
    secret = {a.path for a in state[1] if a.secret}
    assert "pxe/tftp/pxelinux.cfg/01-52-54-00-00-00-11" in secret
    assert "pxe/tftp/grub/grub.cfg-01-52-54-00-00-00-12" in secret
    assert "pxe/tftp/pxelinux.cfg/default" not in secret
    assert not (tftp / "pxelinux.cfg/01-").exists()
    grub = (tftp / "grub/grub.cfg-01-52-54-00-00-00-12").read_text()
    assert "linux /rhel8/vmlinuz" in grub and "kickstart/hosts/db2.ks" in grub
    main = (tftp / "grub/grub.cfg").read_text()
    assert 'if [ "$net_default_mac" = "52:54:00:00:00:10" ]' in main
    conf = (pctx.out.pxe / "dnsmasq.conf").read_text()
    assert "dhcp-host=52:54:00:00:00:11,db1,10.77.0.11" in conf and "db3" not in conf
    assert "dhcp-boot=tag:!efi-x86_64,pxelinux.0,pgha-pxe,10.77.0.1" in conf
    assert "dhcp-boot=tag:efi-x86_64,grub/x86_64-efi/core.efi,pgha-pxe,10.77.0.1" in conf
    assert f"tftp-root={tftp.resolve()}" in conf
    assert len(load(pctx.out, "pxe")[1]) >= 10  # type: ignore[index]
    pctx.messages.clear()
    pxe.build_pxe(pctx, str(tree))
    assert "pxe: up to date" in pctx.messages


def test_pxe_refuses_an_iso_and_needs_a_source(pctx: Context, tmp_path: Path) -> None:
    with pytest.raises(PghaError, match="no install source"):
        pxe.build_pxe(pctx, None)
    from builder.stages import installsrc

    src = dataclasses.replace(installsrc.load(str(make_tree(tmp_path))), kind="iso")
    with pytest.raises(PghaError, match="not an ISO"):
        pxe.install_repo(pctx, src)


@pytest.mark.integration
def test_dnsmasq_accepts_the_snippet(pctx: Context, tmp_path: Path) -> None:
    """dnsmasq's own syntax check (Debian dnsmasq-base) on the generated snippet."""
    if not shutil.which("dnsmasq"):
        pytest.fail("dnsmasq is required: apt-get install dnsmasq-base")
    conf = tmp_path / "dnsmasq.conf"
    conf.write_text(pxe.dnsmasq_conf(pctx, pxe.pxe_nodes(pctx), tmp_path))
    from builder.core.run import Runner

    proc = Runner().run(["dnsmasq", "--test", f"--conf-file={conf}"])
    assert b"syntax check OK" in proc.stdout + proc.stderr
