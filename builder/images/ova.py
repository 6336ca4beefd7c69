"""OVA packaging: an OVF 1.0 descriptor, the stream-optimized vmdk and a SHA256 manifest, as a
POSIX ustar archive in that order (the order OVF requires for streaming imports).

The descriptor is what VMware (ovftool, vSphere, Workstation) and VirtualBox both import: one
VirtualSystem with CPUs, memory, an IDE controller holding the disk (ata_piix is in every RHEL 8
initramfs built with hostonly=no, and both importers map IDE), and an E1000 NIC on "VM Network".
The guest OS is declared as CIM type 80 (Red Hat Enterprise Linux 64-bit) and VMware's
rhel8_64Guest. Every RASD element is written in the schema's alphabetical order, which
VMware's importer checks. Deterministic: fixed mtimes (SOURCE_DATE_EPOCH), owner root.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from builder.core.fsutil import replacing, sha256_file

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VMW = "http://www.vmware.com/schema/ovf"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
VMDK_STREAM = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
NETWORK = "VM Network"
for _prefix, _uri in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vmw", VMW), ("xsi", XSI)):
    ET.register_namespace(_prefix, _uri)


@dataclass(frozen=True)
class Machine:
    name: str
    vcpus: int
    memory_mib: int
    capacity_bytes: int
    description: str = ""


def _sub(parent: ET.Element, tag: str, text: str | None = None,
         **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{OVF}}}{tag}", {f"{{{OVF}}}{k}": v for k, v in attrs.items()})
    if text is not None:
        el.text = text
    return el


def _item(hw: ET.Element, fields: dict[str, str]) -> None:
    item = ET.SubElement(hw, f"{{{OVF}}}Item")
    for name in sorted(fields):  # CIM RASD elements in schema (alphabetical) order
        ET.SubElement(item, f"{{{RASD}}}{name}").text = fields[name]


def _hardware(system: ET.Element, m: Machine) -> None:
    hw = _sub(system, "VirtualHardwareSection")
    _sub(hw, "Info", "Virtual hardware requirements")
    sys_el = _sub(hw, "System")
    for name, text in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                       ("VirtualSystemIdentifier", m.name), ("VirtualSystemType", "vmx-14")):
        ET.SubElement(sys_el, f"{{{VSSD}}}{name}").text = text
    _item(hw, {"AllocationUnits": "hertz * 10^6", "Description": "Number of virtual CPUs",
               "ElementName": f"{m.vcpus} virtual CPU(s)", "InstanceID": "1",
               "ResourceType": "3", "VirtualQuantity": str(m.vcpus)})
    _item(hw, {"AllocationUnits": "byte * 2^20", "Description": "Memory size",
               "ElementName": f"{m.memory_mib} MB of memory", "InstanceID": "2",
               "ResourceType": "4", "VirtualQuantity": str(m.memory_mib)})
    _item(hw, {"Address": "0", "Description": "IDE controller", "ElementName": "ideController0",
               "InstanceID": "3", "ResourceSubType": "PIIX4", "ResourceType": "5"})
    _item(hw, {"AddressOnParent": "0", "ElementName": "disk0",
               "HostResource": "ovf:/disk/vmdisk1", "InstanceID": "4", "Parent": "3",
               "ResourceType": "17"})
    _item(hw, {"AddressOnParent": "0", "AutomaticAllocation": "true", "Connection": NETWORK,
               "Description": "E1000 ethernet adapter", "ElementName": "ethernet0",
               "InstanceID": "5", "ResourceSubType": "E1000", "ResourceType": "10"})


def descriptor(m: Machine, vmdk_name: str, vmdk_size: int) -> str:
    """The OVF 1.0 descriptor text for one VM with one stream-optimized disk."""
    env = ET.Element(f"{{{OVF}}}Envelope", {f"{{{VMW}}}buildId": "pgha-build"})
    refs = _sub(env, "References")
    _sub(refs, "File", href=vmdk_name, id="file1", size=str(vmdk_size))
    disks = _sub(env, "DiskSection")
    _sub(disks, "Info", "Virtual disk information")
    _sub(disks, "Disk", capacity=str(m.capacity_bytes), capacityAllocationUnits="byte",
         diskId="vmdisk1", fileRef="file1", format=VMDK_STREAM)
    nets = _sub(env, "NetworkSection")
    _sub(nets, "Info", "The list of logical networks")
    _sub(_sub(nets, "Network", name=NETWORK), "Description", "The VM network")
    system = _sub(env, "VirtualSystem", id=m.name)
    _sub(system, "Info", m.description or "A pgha role image")
    _sub(system, "Name", m.name)
    os_section = _sub(system, "OperatingSystemSection", id="80")
    os_section.set(f"{{{VMW}}}osType", "rhel8_64Guest")
    _sub(os_section, "Info", "The kind of installed guest operating system")
    _sub(os_section, "Description", "Red Hat Enterprise Linux 8 (64-bit)")
    _hardware(system, m)
    ET.indent(env)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(env, encoding="unicode") + "\n"


def manifest(files: dict[str, bytes | Path]) -> str:
    """The .mf text: `SHA256(name)= hex` for each file, in the given order."""
    lines = []
    for name, data in files.items():
        digest = (sha256_file(data) if isinstance(data, Path)
                  else hashlib.sha256(data).hexdigest())
        lines.append(f"SHA256({name})= {digest}\n")
    return "".join(lines)


def _add(tar: tarfile.TarFile, name: str, data: bytes | Path, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode, info.uid, info.gid = epoch, 0o644, 0, 0
    info.uname = info.gname = "root"
    if isinstance(data, Path):
        info.size = data.stat().st_size
        with data.open("rb") as fh:
            tar.addfile(info, fh)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def write_ova(dest: Path, vmdk: Path, m: Machine, epoch: int) -> None:
    """Write dest (.ova): <name>.ovf, <name>-disk1.vmdk, <name>.mf, in that order."""
    base = dest.stem
    vmdk_name = f"{base}-disk1.vmdk"
    ovf = descriptor(m, vmdk_name, vmdk.stat().st_size).encode()
    mf = manifest({f"{base}.ovf": ovf, vmdk_name: vmdk}).encode()
    with replacing(dest) as tmp, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, f"{base}.ovf", ovf, epoch)
        _add(tar, vmdk_name, vmdk, epoch)
        _add(tar, f"{base}.mf", mf, epoch)
