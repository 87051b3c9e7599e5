"""Reading a saved VM state or migration stream (QEMU's ``savevm`` format, v3).

Before a snapshot is restored or an incoming migration accepted, an operator
wants to know what the stream holds: the machine type it was saved from and,
for SEOIB, whether it carries ``x86-seoib-state`` and with which state.

The layout, as QEMU's ``migration/savevm.c`` writes it (all big-endian)::

    "QEVM" u32 3                                   header
    0x07 <configuration>                           u32 len, name[len], subsections
    0x01 id name instance version <ram...>         iterative sections (START/PART/END)
    0x04 id name instance version <fields> [0x7e id]   one FULL section per device
    0x00                                           end of the state
    0x06 u32 len <JSON of len bytes>               the vmstate description

The RAM sections have no description and a format of their own; nothing here
reads them.  The device sections sit back to back just before the end
marker, and the description gives the size of every field QEMU wrote, so
each section's place is found by walking back from the end, and every one is
checked against its header (type, name, instance, version) and footer before
anything in it is trusted.  Only the description, the headers and the few
bytes asked for are read: memory use does not grow with the guest's RAM.
"""

from __future__ import annotations

import json
import os
import struct
from typing import IO, Any, NamedTuple

from machines.errors import DataError
from machines.i386.seoib import SECTION as SEOIB_SECTION
from machines.i386.seoib import SeoibState

MAGIC = 0x5145564D  # "QEVM"
VERSION = 3
VERSION_COMPAT = 2
EOF_MARK = 0x00
SECTION_START = 0x01
SECTION_FULL = 0x04
SUBSECTION = 0x05
VMDESCRIPTION = 0x06
CONFIGURATION = 0x07
FOOTER = 0x7E

SEOIB_VERSION = 1
MAX_DESCRIPTION = 64 << 20  # QEMU's for a large VM is a few MB
MAX_DEPTH = 64  # vmstate structs nest a handful of levels


class StreamError(DataError):
    """The stream is not what it should be at ``offset``."""

    def __init__(self, where: str, offset: int, what: str) -> None:
        self.offset = offset
        super().__init__(f"{where}: offset {offset}: {what}")


class Section(NamedTuple):
    kind: str  # "configuration", "iterative" or "device"
    name: str
    instance_id: int | None
    version: int | None
    offset: int  # of the section's first byte (its type byte)
    size: int | None  # whole section, header and footer included; None: not known


class SavedState(NamedTuple):
    path: str
    size: int
    machine: str | None  # None: the stream has no configuration section
    seoib: SeoibState | None  # None: no x86-seoib-state section (the VM is QUIRKED)
    sections: tuple[Section, ...]

    @property
    def effective_seoib(self) -> SeoibState:
        """What the destination ends up with: no section means QUIRKED."""
        return self.seoib if self.seoib is not None else SeoibState.QUIRKED

    @property
    def kvm_evidence(self) -> str | None:
        """Why the stream must come from a KVM VM, or None when it shows no sign of KVM.

        Only KVM creates the ``kvmclock`` device (x86 CPUs with the kvmclock
        feature, the default).  The irqchip mode does not show: QEMU 10.0.2's
        ``kvm-apic``/``kvm-ioapic`` save under the same section names and
        layout (``apic``, ``ioapic``) as the userspace ones.
        """
        if any(s.name == "kvmclock" for s in self.sections):
            return "its kvmclock section"
        return None


def read_saved_state(path: str) -> SavedState:
    """Read ``path``; any problem is one StreamError (or DataError) naming where."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below, after fstat
    except OSError as err:
        raise DataError(f"saved state {path}: {err.strerror}") from None
    with fh:
        try:
            size = os.fstat(fh.fileno()).st_size
            return _Reader(fh, path, size).read()
        except OSError as err:
            raise DataError(f"saved state {path}: {err.strerror or err}") from None


class _Reader:
    def __init__(self, fh: IO[bytes], path: str, size: int) -> None:
        self.fh = fh
        self.path = path
        self.size = size

    def fail(self, offset: int, what: str) -> StreamError:
        return StreamError(self.path, offset, what)

    def at(self, offset: int, count: int) -> bytes:
        if offset < 0 or offset + count > self.size:
            raise self.fail(min(max(offset, 0), self.size),
                            f"the stream ends before the {count} bytes expected here "
                            f"(file is {self.size} bytes)")
        self.fh.seek(offset)
        data = self.fh.read(count)
        if len(data) != count:
            raise self.fail(offset + len(data), "the stream ends early")
        return data

    def u8(self, offset: int) -> int:
        return self.at(offset, 1)[0]

    def u32(self, offset: int) -> int:
        value: int = struct.unpack(">I", self.at(offset, 4))[0]
        return value

    # -- the parts -------------------------------------------------------------

    def read(self) -> SavedState:
        magic = self.u32(0) if self.size >= 4 else None
        if magic != MAGIC:
            raise self.fail(0, "not a QEMU saved state or migration stream (no 'QEVM' magic)")
        version = self.u32(4)
        if version == VERSION_COMPAT:
            raise self.fail(4, "stream format version 2 (QEMU before 1.3?) is not supported")
        if version != VERSION:
            raise self.fail(4, f"unknown stream format version {version} (expected 3)")
        desc_offset, desc = self.description()
        sections: list[Section] = []
        machine, after_config = self.configuration(desc)
        if machine is not None:
            sections.append(Section("configuration", "configuration", None, None, 8,
                                    after_config - 8))
        end = desc_offset - 6  # the QEMU_VM_EOF byte (then 0x06 and the length)
        devices = self.devices(desc, after_config, end)
        first_iterative = self.iterative_header(after_config, devices)
        if first_iterative:
            sections.append(first_iterative)
        seoib = None
        for device, section in devices:
            sections.append(section)
            if section.name == SEOIB_SECTION:
                seoib = self.seoib_state(device, section)
        sections.sort(key=lambda s: s.offset)
        return SavedState(self.path, self.size, machine, seoib, tuple(sections))

    def description(self) -> tuple[int, dict[str, Any]]:
        """(offset of the JSON, the JSON) of the trailing vmstate description."""
        window = min(self.size, MAX_DESCRIPTION + 6)
        tail = self.at(self.size - window, window)
        # JSON text never holds a raw 0x06 byte, but the length before it may (a length
        # of 6, 0x106, ...): the marker is the last 0x06 whose length reaches the end.
        mark = tail.rfind(bytes([VMDESCRIPTION]))
        for _ in range(5):  # the length field holds at most four more 0x06 bytes
            if mark < 1 or mark + 5 > len(tail) or struct.unpack(
                    ">I", tail[mark + 1: mark + 5])[0] == len(tail) - mark - 5:
                break
            mark = tail.rfind(bytes([VMDESCRIPTION]), 0, mark)
        length = None
        if mark >= 1 and mark + 5 <= len(tail):
            length = struct.unpack(">I", tail[mark + 1: mark + 5])[0]
        json_start = mark + 5
        if length is None or length != len(tail) - json_start or tail[mark - 1] != EOF_MARK:
            raise self.fail(self.size, "no vmstate description at the end of the stream "
                                       "(truncated, or saved with suppress-vmdesc=on)")
        offset = self.size - window + json_start
        try:
            doc = json.loads(tail[json_start:].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise self.fail(offset, f"the vmstate description is not JSON ({err})") from None
        except RecursionError:
            raise self.fail(offset, "the vmstate description nests too deeply") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("devices"), list):
            raise self.fail(offset, "the vmstate description has no device list")
        return offset, doc

    def configuration(self, desc: dict[str, Any]) -> tuple[str | None, int]:
        """(machine type, offset after the section); (None, 8) when there is none."""
        if self.size <= 8 or self.u8(8) != CONFIGURATION:
            return None, 8
        length = self.u32(9)
        if not 0 < length <= 256:
            raise self.fail(9, f"configuration: machine type name of {length} bytes")
        raw = self.at(13, length)
        try:
            machine = raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.fail(13, "configuration: the machine type name is not ASCII") from None
        if not machine.isprintable():
            raise self.fail(13, "configuration: the machine type name is not printable")
        described = desc.get("configuration")
        if isinstance(described, dict):
            total = _size(described, "configuration", self, 0)
            if total < 4 + length:
                raise self.fail(9, "the configuration section does not match the vmstate "
                                   "description")
            return machine, 9 + total
        # No description of it: step over the two fields; subsections follow only
        # with capabilities this reader then cannot size.
        after = 13 + length
        if after < self.size and self.u8(after) == SUBSECTION:
            raise self.fail(after, "configuration subsections without a description")
        return machine, after

    def devices(self, desc: dict[str, Any], start: int, end: int
                ) -> list[tuple[dict[str, Any], Section]]:
        """Every described device section, located and checked."""
        described = desc["devices"]
        for i, device in enumerate(described):
            if not isinstance(device, dict) or not isinstance(device.get("name"), str) \
                    or not isinstance(device.get("instance_id"), int):
                raise self.fail(end + 1, f"vmstate description: device [{i}] has no name "
                                         "or instance_id")
        sizes = [_size(d, f"devices[{i}]", self, 0) for i, d in enumerate(described)]
        best: tuple[int, bool, int] = (-1, True, end)  # (sections found, footers, first found)
        for footers in (True, False):  # footers are off for pc-*-2.3 and older
            found = self._walk_back(described, sizes, end, footers)
            if len(found) > best[0]:
                best = (len(found), footers, found[0][1].offset if found else end)
            # Sections QEMU saves at setup ("early_setup") come first, before RAM.
            remaining = len(described) - len(found)
            early: list[tuple[dict[str, Any], Section]] = []
            pos = start
            for device, size in zip(described[:remaining], sizes[:remaining], strict=True):
                section = self._check(device, size, pos, footers)
                if section is None:
                    break
                early.append((device, section))
                pos += section.size or 0
            if len(early) == remaining:
                return early + found
        # Name the section the walk back from the end stopped at, and its first
        # byte that is not what the description says.
        count, footers, pos = best
        index = len(described) - count - 1
        device, size = described[index], sizes[index]
        total = _section_size(device, size, footers)
        next_id = self.u32(pos + 1) if pos < end else None
        offset, what = self._mismatch(device, size, pos - total, footers, next_id)
        raise self.fail(offset, f"device section '{device['name']}' (instance "
                                f"{device['instance_id']}), expected at offset {pos - total}, "
                                f"does not match the vmstate description: {what}; "
                                "the stream is corrupt")

    def _mismatch(self, device: dict[str, Any], size: int, offset: int, footers: bool,
                  next_id: int | None) -> tuple[int, str]:
        """The first byte of a section's header or footer that is not as described."""
        name = device["name"].encode("utf-8", "replace")
        header = _header_size(device)
        if offset < 8 or offset + _section_size(device, size, footers) > self.size:
            return max(offset, 0), "it does not fit in the stream"
        head = self.at(offset, header)
        version = device.get("version")
        expected: list[tuple[int, bytes, str]] = [
            (0, bytes([SECTION_FULL]), "section type"), (5, bytes([len(name)]), "name length"),
            (6, name, "name"), (6 + len(name), struct.pack(">I", device["instance_id"]),
                                "instance id")]
        if isinstance(version, int):
            expected.append((10 + len(name), struct.pack(">I", version), "version"))
        for at, want, what in expected:
            got = head[at:at + len(want)]
            if got != want:
                bad = next(i for i in range(len(want)) if got[i:i + 1] != want[i:i + 1])
                return offset + at + bad, f"its {what} reads {got!r}, expected {want!r}"
        if footers:
            foot_at = offset + header + size
            foot = self.at(foot_at, 5)
            if foot[0] != FOOTER:
                return foot_at, f"its footer byte reads {foot[0]:#04x}, expected {FOOTER:#04x}"
            if foot[1:] != head[1:5]:
                # Device sections go out in increasing id order: an id not below the next
                # section's is the damaged one.  When that does not tell, both are named.
                ids = struct.unpack(">I", head[1:5])[0], struct.unpack(">I", foot[1:])[0]
                limit = next_id if next_id is not None else 1 << 16
                plausible = [i < limit for i in ids]
                if plausible == [True, False]:
                    at, got, want, part = foot_at + 1, foot[1:], head[1:5], "footer"
                elif plausible == [False, True]:
                    at, got, want, part = offset + 1, head[1:5], foot[1:], "header"
                else:
                    return offset + 1, (f"its header section id {ids[0]} (offset {offset + 1}) "
                                        f"and footer section id {ids[1]} (offset {foot_at + 1}) "
                                        "differ")
                bad = next(i for i in range(4) if got[i] != want[i])
                value = struct.unpack(">I", got)[0]
                return at + bad, (f"its {part} section id reads {value}, expected "
                                  f"{struct.unpack('>I', want)[0]}")
        return offset, "it is not where the sections after it say"

    def _walk_back(self, described: list[dict[str, Any]], sizes: list[int], end: int,
                   footers: bool) -> list[tuple[dict[str, Any], Section]]:
        found: list[tuple[dict[str, Any], Section]] = []
        pos = end
        for device, size in zip(reversed(described), reversed(sizes), strict=True):
            total = _section_size(device, size, footers)
            section = self._check(device, size, pos - total, footers)
            if section is None:
                break
            found.append((device, section))
            pos -= total
        found.reverse()
        return found

    def _check(self, device: dict[str, Any], size: int, offset: int, footers: bool
               ) -> Section | None:
        """The section for ``device`` if its header (and footer) really sit at ``offset``."""
        name = device["name"].encode("utf-8", "replace")
        header = _header_size(device)
        total = _section_size(device, size, footers)
        if offset < 8 or offset + total > self.size or len(name) > 255:
            return None
        head = self.at(offset, header)
        kind, section_id, name_len = struct.unpack(">BIB", head[:6])
        instance, version = struct.unpack(">II", head[-8:])
        if kind != SECTION_FULL or name_len != len(name) or head[6:6 + name_len] != name:
            return None
        if instance != device["instance_id"]:
            return None
        if isinstance(device.get("version"), int) and version != device["version"]:
            return None
        if footers:
            foot = self.at(offset + header + size, 5)
            if foot[0] != FOOTER or struct.unpack(">I", foot[1:])[0] != section_id:
                return None
        return Section("device", device["name"], instance, version, offset, total)

    def iterative_header(self, offset: int, devices: list[tuple[dict[str, Any], Section]]
                         ) -> Section | None:
        """The first iterative section (RAM) after the configuration and early devices."""
        for _, section in devices:
            if section.offset == offset:
                offset += section.size or 0
        if offset + 6 > self.size or self.u8(offset) != SECTION_START:
            return None
        name_len = self.u8(offset + 5)
        if offset + 14 + name_len > self.size:
            return None
        name = self.at(offset + 6, name_len).decode("ascii", "replace")
        instance, version = struct.unpack(">II", self.at(offset + 6 + name_len, 8))
        return Section("iterative", name, instance, version, offset, None)

    def seoib_state(self, device: dict[str, Any], section: Section) -> SeoibState:
        if section.version != SEOIB_VERSION:
            raise self.fail(section.offset, f"{SEOIB_SECTION} version {section.version} "
                                            f"(this reader knows version {SEOIB_VERSION})")
        fields = device.get("fields")
        first = fields[0] if isinstance(fields, list) and fields else None
        if not isinstance(first, dict) or first.get("size") != 4 \
                or "uint32" not in str(first.get("type")):
            raise self.fail(section.offset, f"{SEOIB_SECTION} does not start with a uint32")
        where = section.offset + _header_size(device)
        value = self.u32(where)
        try:
            return SeoibState(value)
        except ValueError:
            raise self.fail(where, f"{SEOIB_SECTION} holds unknown state {value} "
                                   "(0 QUIRKED, 1 RESPECTED, 2 NOT_ADVERTISED)") from None


def _header_size(device: dict[str, Any]) -> int:
    """type, section id, name length, name, instance id, version."""
    return 1 + 4 + 1 + len(str(device["name"]).encode("utf-8", "replace")) + 4 + 4


def _section_size(device: dict[str, Any], payload: int, footers: bool) -> int:
    """A whole FULL section: header, payload, and the footer (0x7e, section id) if sent."""
    return _header_size(device) + payload + (5 if footers else 0)


def _size(described: Any, path: str, reader: _Reader, depth: int) -> int:
    """Bytes a described vmstate (fields, then subsections) occupies in the stream."""
    if depth > MAX_DEPTH:
        raise reader.fail(reader.size, f"vmstate description: {path} nests too deeply")
    if not isinstance(described, dict):
        raise reader.fail(reader.size, f"vmstate description: {path} is not an object")
    total = 0
    fields = described.get("fields", [])
    if not isinstance(fields, list):
        raise reader.fail(reader.size, f"vmstate description: {path}.fields is not a list")
    for i, field in enumerate(fields):
        size: Any = field.get("size") if isinstance(field, dict) else None
        count: Any = field.get("array_len", 1) if isinstance(field, dict) else None
        if not _count(size) or not _count(count):
            raise reader.fail(reader.size, f"vmstate description: {path}.fields[{i}] has no "
                                           "valid size")
        total += size * count
    subsections = described.get("subsections", [])
    if not isinstance(subsections, list):
        raise reader.fail(reader.size, f"vmstate description: {path}.subsections is not a list")
    for i, sub in enumerate(subsections):
        name = sub.get("vmsd_name") if isinstance(sub, dict) else None
        if not isinstance(name, str):
            raise reader.fail(reader.size, f"vmstate description: {path}.subsections[{i}] "
                                           "has no vmsd_name")
        # 0x05, name length, name, version, then the subsection's own fields
        total += 1 + 1 + len(name.encode()) + 4 + _size(sub, f"{path}.subsections[{i}]",
                                                         reader, depth + 1)
    if total > reader.size:
        raise reader.fail(reader.size, f"vmstate description: {path} is larger than the file")
    return total


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 40

