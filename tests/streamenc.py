"""A small writer of QEMU migration streams (format v3), for the reader's tests.

Written from QEMU's migration/savevm.c and vmstate.c, independently of
machines.savevm: a header, the configuration section, a RAM section pair
(START and END, in RAM's own record format), one FULL section per device with
its footer, the end marker, and the JSON vmstate description.  QEMU 10.0.2
cannot write ``x86-seoib-state`` (the RFC is not merged), so streams that
carry it come from here.
"""

from __future__ import annotations

import json
import struct
from typing import Any, NamedTuple

RAM_SAVE_FLAG_ZERO = 0x02
RAM_SAVE_FLAG_MEM_SIZE = 0x04
RAM_SAVE_FLAG_EOS = 0x10


class Field(NamedTuple):
    name: str
    type: str
    data: bytes


class Device(NamedTuple):
    name: str
    instance_id: int
    version: int
    fields: tuple[Field, ...]
    subsections: tuple[tuple[str, int, tuple[Field, ...]], ...] = ()


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def seoib_device(state: int, version: int = 1) -> Device:
    return Device("x86-seoib-state", 0, version, (Field("state", "uint32", u32(state)),))


COMMON = (
    Device("timer", 0, 2, (Field("cpu_ticks_offset", "int64", bytes(8)),
                           Field("unused", "buffer", bytes(8)),
                           Field("cpu_clock_offset", "int64", bytes(8)))),
    Device("cpu_common", 0, 1, (Field("halted", "uint32", u32(0)),
                                Field("interrupt_request", "uint32", u32(0))),
           (("cpu_common/crash_occurred", 1, (Field("crash_occurred", "bool", b"\0"),)),)),
    Device("0000:00:1f.0/ioapic", 0, 3, (Field("id", "uint8", b"\0"),
                                         Field("ioregsel", "uint8", b"\0"),
                                         Field("ioredtbl", "uint64", bytes(8 * 24)))),
)


def _fields_desc(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    return [{"name": f.name, "type": f.type, "size": len(f.data)} for f in fields]


def _device_bytes(device: Device) -> bytes:
    out = b"".join(f.data for f in device.fields)
    for name, version, fields in device.subsections:
        out += bytes([0x05, len(name)]) + name.encode() + u32(version)
        out += b"".join(f.data for f in fields)
    return out


def _device_desc(device: Device) -> dict[str, Any]:
    desc: dict[str, Any] = {"name": device.name, "instance_id": device.instance_id,
                            "vmsd_name": device.name, "version": device.version,
                            "fields": _fields_desc(device.fields)}
    if device.subsections:
        desc["subsections"] = [{"vmsd_name": n, "version": v, "fields": _fields_desc(f)}
                               for n, v, f in device.subsections]
    return desc


def encode(machine: str | None = "pc-q35-10.2", seoib: int | None = None,
           devices: tuple[Device, ...] = COMMON, footers: bool = True,
           description: bool = True, early: tuple[Device, ...] = (),
           seoib_version: int = 1) -> bytes:
    """A whole stream; ``seoib`` puts an ``x86-seoib-state`` section holding it."""
    out = bytearray(b"QEVM" + u32(3))
    desc: dict[str, Any] = {}
    if machine is not None:
        name = machine.encode()
        out += bytes([0x07]) + u32(len(name)) + name
        desc["configuration"] = {"vmsd_name": "configuration", "version": 1,
                                 "fields": [{"name": "len", "type": "uint32", "size": 4},
                                            {"name": "name", "type": "buffer",
                                             "size": len(name)}]}
    desc["page_size"] = 4096
    section_id = 0
    described = []

    def section(kind: int, device: Device | None, body: bytes, ident: str = "",
                instance: int = 0, version: int = 0) -> None:
        nonlocal section_id
        out.append(kind)
        out.extend(u32(section_id))
        if device is not None:
            ident, instance, version = device.name, device.instance_id, device.version
        if kind in (0x01, 0x04):
            out.extend(bytes([len(ident)]) + ident.encode() + u32(instance) + u32(version))
        out.extend(body)
        if footers:
            out.extend(bytes([0x7E]) + u32(section_id))

    for device in early:
        section(0x04, device, _device_bytes(device))
        described.append(_device_desc(device))
        section_id += 1
    ram = 32 << 20
    block = b"pc.ram"
    start = struct.pack(">Q", ram | RAM_SAVE_FLAG_MEM_SIZE) + bytes([len(block)]) + block \
        + struct.pack(">Q", ram) + struct.pack(">Q", RAM_SAVE_FLAG_EOS)
    section(0x01, None, start, "ram", 0, 4)
    ram_id = section_id
    section_id += 1
    end = struct.pack(">Q", RAM_SAVE_FLAG_ZERO) + bytes([len(block)]) + block + b"\0" \
        + struct.pack(">Q", RAM_SAVE_FLAG_EOS)
    saved_id, section_id = section_id, ram_id
    section(0x03, None, end)
    section_id = saved_id
    listed = list(devices)
    if seoib is not None:
        listed.insert(min(2, len(listed)), seoib_device(seoib, seoib_version))
    for device in listed:
        section(0x04, device, _device_bytes(device))
        described.append(_device_desc(device))
        section_id += 1
    out.append(0x00)
    if description:
        desc["devices"] = described
        text = json.dumps(desc).encode()
        out += bytes([0x06]) + u32(len(text)) + text
    return bytes(out)
