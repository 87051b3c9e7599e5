"""Compat gaps: defaults that changed between two builds with no compat entry for old types.

A versioned machine type promises the guest the same hardware in every QEMU
that registers it.  For each ``driver.property`` whose value could differ
between an old and a new build (its default changed, or a compat entry of
either build names it), and for each versioned machine type both builds
register, the effective value is folded the way QEMU applies compat
properties: the type's default, then the machine type's ``compat_props`` in
order where the entry's driver is the type or an ancestor (later entries
win).  Where the two builds disagree on a machine type, the promise is
broken: a *gap*.

Pure decision logic: no QEMU is started here (see :mod:`machines.gapcheck`).

False gaps are kept apart, each with its reason:

* values an object sets itself when created (``instance`` defaults) or that
  a listing leaves without a default on one side (``device-list-properties``
  and ``qom-list-properties`` disagree on class properties);
* a property whose QAPI type changed and whose new default is a sentinel
  (``-1``, ``auto``) that QEMU resolves when it realizes the device;
* types whose only difference is a description (never compared: only
  defaults are).

Each gap gets one verdict class, decided by these rules, in order:

1. ``host-only``: the type is not a device, CPU or machine (a backend,
   accelerator or other object the guest never sees); or the property names
   a backend (chardev, netdev, drive, audiodev, memdev, a ``link<>``); or it
   is an ``x-`` knob (QEMU's unstable/debug prefix; x- compat knobs can
   still change what a guest sees: confirm before dismissing).
2. ``migration-relevant``: the property's name says it shapes the migration
   stream (``migrat``, ``vmstate``, ``instance-id``, ``send-``): it changes
   which sections or fields a migrated device carries, not the hardware.
3. ``guest-visible``: any other property of a device, CPU or machine: the
   guest reads it as hardware (config space, CPUID, ports, tables).  With
   ``--confirm`` it is read back with ``qom-get`` from both binaries on the
   same old machine type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from attrs import evolve, frozen

from machines.build import Build
from machines.compat.tables import CompatProp
from machines.errors import PropertyError
from machines.machine import MachineType
from machines.naming import version_key
from machines.qom import PropertyInfo, QomTypes
from machines.resolve import _by_property
from machines.values import Value, format_value, parse_value

SCHEMA = "machines/gaps/v1"
GUEST = "guest-visible"
MIGRATION = "migration-relevant"
HOST = "host-only"
CLASSES = (GUEST, MIGRATION, HOST)

NEUTRAL: tuple[Value | None, ...] = (None, False, 0, "", "auto", "off", "none")
_BACKEND_PROPS = frozenset({"chardev", "netdev", "drive", "audiodev", "memdev", "iothread",
                            "backend", "rng", "fsdev", "vhostfd", "fd", "vhostfds", "fds",
                            "romfile", "host", "file", "path"})
_MIGRATION_NAME = re.compile(r"migrat|vmstate|instance-id|send-|vmsd")
# Drivers that exist only in the x86 target: their entries belong in pc_compat_X_Y.
_X86_DRIVERS = re.compile(
    r"^(ICH9|PIIX|piix|i440FX|mch|q35|intel-iommu|AMDVI|amd-iommu|x86-iommu|kvm-apic|apic"
    r"|kvm-ioapic|ioapic|kvmclock|hpet|isa-pit|kvm-pit|vmport|vmmouse|port92|fw_cfg_io"
    r"|sgx|x86|microvm|pc-|isapc|kvm-i8259|i8042|vmgenid|nvdimm|hyperv)")


@frozen
class Fix:
    """The compat entry that would close a gap, as QEMU's C source writes it."""

    @property
    def c(self) -> str:
        return f'{{ "{self.driver}", "{self.property}", "{self.value}" }},'

    driver: str
    property: str  # declared after the method: the name shadows the builtin below it
    value: str
    array: str  # hw_compat_X_Y or pc_compat_X_Y
    why_array: str


@frozen
class Gap:
    """One broken promise: ``typename.prop`` reads differently on old machine types."""

    typename: str
    prop: str
    qapi_type: str
    old: Value | None  # what the old build gives the affected types (most of them)
    new: Value | None
    old_default: Value | None
    new_default: Value | None
    machines: tuple[str, ...]  # affected versioned types, newest first
    verdict: str
    reason: str
    kind: str  # "changed" (default changed), "new" (property absent in the old build),
    #            "compat" (default unchanged, the builds' compat entries differ)
    subtypes: int  # concrete types below (or equal to) typename that show it
    fix: Fix | None
    # filled in by --confirm
    confirmed: bool | None = None
    evidence: str = ""


@frozen
class Restored:
    """A changed default that the new build's compat properties restore on every old type."""

    typename: str
    prop: str
    old_default: Value | None
    new_default: Value | None
    by: tuple[str, ...]  # the entries that restore it: "hw_compat_9_0[3] intel-iommu.aw-bits=39"


@frozen
class Skipped:
    """A difference that is not a gap, with why (one row per property and reason)."""

    typename: str  # the first type showing it
    prop: str
    old: str
    new: str
    reason: str
    types: int = 1  # how many types show the same kind of difference


@frozen
class NewProperty:
    """A property the old build lacks, with a non-neutral default and no compat entry.

    Not a proven gap: the old build had no such knob, and whether its default
    is the old behaviour (a new name for what QEMU always did) or a new one
    only the source says.  Listed so that a reviewer checks each.
    """

    typename: str
    prop: str
    qapi_type: str
    default: Value | None
    verdict: str
    reason: str
    machines: tuple[str, ...]
    fix: Fix | None


@frozen
class UselessEntry:
    """A compat entry of the new build that changes nothing, or repeats another."""

    table: str
    entry: int
    driver: str
    prop: str
    value: str
    kind: str  # "no-op" or "duplicate"
    reason: str
    machines: int  # how many of the compared machine types carry it


@frozen
class GapReport:
    old: str
    new: str
    old_version: str
    new_version: str
    machines: tuple[str, ...]  # versioned types both register, newest first
    gaps: tuple[Gap, ...]
    new_properties: tuple[NewProperty, ...]
    restored: tuple[Restored, ...]
    skipped: tuple[Skipped, ...]
    useless: tuple[UselessEntry, ...]
    confirmed_with: tuple[tuple[str, str], ...] = ()  # (build, command) when --confirm ran


# -- folding ------------------------------------------------------------------


def _parse(info: PropertyInfo | None, text: str) -> Value:
    if info is None:
        return text
    try:
        return parse_value(info.type, text, info.name)
    except PropertyError:
        return text


def _same(a: Value | None, b: Value | None) -> bool:
    """Equal as the guest would see it: a bool property that became on/off/auto
    (OnOffAuto) keeps its meaning, so ``True`` and ``"on"`` are the same."""
    pair = (a, b) if isinstance(a, bool) else (b, a)
    if isinstance(pair[0], bool) and isinstance(pair[1], str):
        return pair[1] in (("on", "true", "yes") if pair[0] else ("off", "false", "no"))
    return type(a) is type(b) and a == b


def effective(build: Build, machine: type[MachineType], typename: str, prop: str
              ) -> tuple[Value | None, CompatProp | None]:
    """The value ``typename.prop`` gets on ``machine`` before -global: default, then compat."""
    qom = build.qom
    info = _info(qom, typename, prop)
    value: Value | None = info.default if info is not None else None
    last = None
    ancestry = set(qom.ancestry(typename)) if typename in qom else {typename}
    for cp in _by_property(machine).get(prop, ()):
        if cp.driver in ancestry and not (cp.prop.optional and info is None):
            value, last = _parse(info, cp.value), cp
    return value, last


def _info(qom: QomTypes, typename: str, prop: str) -> PropertyInfo | None:
    if typename not in qom:
        return None
    return qom.find_property(typename, prop)


def common_machines(old: Build, new: Build) -> list[tuple[type[MachineType], type[MachineType]]]:
    """Versioned machine types both builds register, newest first: (old class, new class)."""
    pairs = []
    for m in old.registered():
        if m.version is None or not m.family:
            continue
        other = new.find(m.name)
        if other is not None and other.name == m.name:
            pairs.append((m, other))
    pairs.sort(key=lambda p: version_key(p[0].name), reverse=True)
    return pairs


# -- candidates ---------------------------------------------------------------


def _static(info: PropertyInfo | None) -> bool:
    return info is not None and info.has_default and info.default_origin == "type"


def _candidates(old: Build, new: Build, machines: Sequence[tuple[type[MachineType],
                type[MachineType]]]) -> tuple[dict[tuple[str, str], str], list[Skipped]]:
    """(type, property) pairs to fold, with why each is a candidate; and false gaps."""
    qo, qn = old.qom, new.qom
    found: dict[tuple[str, str], str] = {}
    skipped: list[Skipped] = []
    cpu_rows: dict[str, set[str]] = {}  # CPU models: one row per reason, not per feature
    cpu_props: dict[str, set[str]] = {}
    common = [t for t in qn.parents if t in qo.parents]
    for typename in sorted(common):
        po, pn = qo.own_properties(typename), qn.own_properties(typename)
        parent = qn.parents.get(typename)
        for prop, info in pn.items():
            before = po.get(prop)
            if parent is not None and parent in qo and _same_change(qo, qn, parent, prop, before,
                                                                    info):
                continue  # reported on the ancestor
            if _aliased(qn, typename, prop):
                continue  # a virtio proxy's alias: the backend device's own row decides
            if before is None:
                if _static(info) and not _neutral(info.default) and typename not in qn.abstract:
                    found[(typename, prop)] = "new"
                continue
            if _same(before.default, info.default) and before.has_default == info.has_default:
                continue
            why = _false_gap(before, info)
            if why and qn.is_a(typename, "cpu") and typename != "x86_64-cpu":
                cpu_rows.setdefault(why, set()).add(typename)
                cpu_props.setdefault(why, set()).add(prop)
            elif why:
                skipped.append(Skipped(typename, prop, _show(before), _show(info), why))
            if why:
                continue
            found[(typename, prop)] = "changed"
    for why, cpus in cpu_rows.items():
        props = sorted(cpu_props[why])
        skipped.append(Skipped(f"{len(cpus)} CPU type{'' if len(cpus) == 1 else 's'}",
                               f"{len(props)} propert{'y' if len(props) == 1 else 'ies'}",
                               f"e.g. {props[0]}", f"e.g. {sorted(cpus)[0]}", why))
    for mo, mn in machines:
        for cp in (*mo.compat_props(), *mn.compat_props()):
            key = (cp.driver, cp.property)
            if key in found or cp.driver not in qo or cp.driver not in qn:
                continue
            if _static(_info(qo, *key)) and _static(_info(qn, *key)):
                found[key] = "compat"
    return found, skipped


def _neutral(value: object) -> bool:
    """A default that means "nothing new" (off, zero, empty, auto)."""
    if isinstance(value, (list, dict)):
        return not value
    return any(type(value) is type(n) and value == n for n in NEUTRAL) or value is None


def _aliased(qom: QomTypes, typename: str, prop: str) -> bool:
    """``prop`` of a virtio PCI proxy is its backend's, reached through an alias."""
    if not qom.is_a(typename, "virtio-pci"):
        return False
    for sub in qom.subtypes(typename):
        backend = qom.proxy_backend(sub)
        if backend is not None and prop in qom.own_properties(backend):
            return True
    return False


def _same_change(qo: QomTypes, qn: QomTypes, parent: str, prop: str,
                 before: PropertyInfo | None, info: PropertyInfo) -> bool:
    """The parent shows the same old and new default: the change is the parent's."""
    p_old = qo.own_properties(parent).get(prop)
    p_new = qn.own_properties(parent).get(prop)
    if p_new is None or not _same(p_new.default, info.default):
        return False
    if before is None:
        return p_old is None
    return p_old is not None and _same(p_old.default, before.default)


def _show(info: PropertyInfo) -> str:
    if not info.has_default:
        return f"({info.type}, no default listed)"
    how = ", set by the object" if info.default_origin == "instance" else ""
    return f"{_fmt(info.default)} ({info.type}{how})"


def _fmt(value: Value | None) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return f'"{value}"'
    return format_value(value)


def _false_gap(before: PropertyInfo, after: PropertyInfo) -> str:
    if "instance" in (before.default_origin, after.default_origin):
        return ("decided when the object is created (instance_init), not a static default: "
                "the listed value is what the importer's sample object showed")
    if not before.has_default or not after.has_default:
        side = "old" if not before.has_default else "new"
        return (f"the {side} build lists no default: device-list-properties and "
                "qom-list-properties report class properties differently; nothing to compare")
    if before.type != after.type and after.default in (-1, "auto"):
        return (f"the property changed type ({before.type} -> {after.type}) and its new default "
                f"{_fmt(after.default)} is a sentinel QEMU resolves at realize (for rombar: "
                "-1 behaves as 1 did when a ROM is present); not comparable as a value")
    if isinstance(before.default, dict) or isinstance(after.default, (dict, list)):
        return "a structured runtime value (statistics, lists), not a setting"
    return ""


# -- classes ------------------------------------------------------------------


def classify(qom: QomTypes, typename: str, prop: str, info: PropertyInfo | None
             ) -> tuple[str, str]:
    """(verdict class, reason) by the rules in the module docstring."""
    kind = info.type if info is not None else ""
    is_device = typename in qom and qom.is_a(typename, "device")
    is_machine = typename in qom and qom.is_a(typename, "machine")
    is_cpu = is_device and qom.is_a(typename, "cpu")
    if typename in qom and qom.is_a(typename, "migration"):
        return HOST, "a migration parameter (the 'migration' object): the guest never sees it"
    if not (is_device or is_machine):
        top = next((a for a in ("accel", "chardev", "netfilter", "memory-backend", "object")
                    if typename in qom and qom.is_a(typename, a)), "object")
        return HOST, (f"{typename} is not a device, CPU or machine (a {top}): "
                      "the guest never sees it")
    if kind.startswith("link<") or prop in _BACKEND_PROPS:
        return HOST, f"'{prop}' names a host backend, not hardware"
    if prop.startswith("x-"):
        return HOST, ("'x-' is QEMU's prefix for unstable/debug knobs (an x- compat knob can "
                      "still change what the guest sees: confirm before dismissing)")
    if _MIGRATION_NAME.search(prop):
        return MIGRATION, (f"'{prop}' shapes the migration stream (sections, fields or "
                           "instance ids a migrated device sends), not the hardware")
    what = "the machine" if is_machine else ("a CPU: CPUID/MSRs" if is_cpu else "a device")
    return GUEST, f"a property of {what}; the guest reads it as hardware"


def fix_array(new: Build, driver: str, machine: str) -> tuple[str, str]:
    """The array a compat entry for ``driver`` on types up to ``machine`` belongs in.

    Rule: ``pc_compat_X_Y`` for drivers only the x86 target has (a CPU, a
    machine, the chipset and x86 platform devices; or a driver the build's
    pc arrays already name), ``hw_compat_X_Y`` otherwise (QEMU's shared array
    for devices every target can have).
    """
    from machines.naming import parse_machine_name

    version = parse_machine_name(machine).version
    suffix = str(version).replace(".", "_") if version else "X_Y"
    qom = new.qom
    in_pc = {e.driver for m in new.registered() for t in m.compat_tables()
             if t.name.startswith("pc_") for e in t.entries}
    in_hw = {e.driver for m in new.registered() for t in m.compat_tables()
             if t.name.startswith("hw_") for e in t.entries}
    x86 = (driver in qom and (qom.is_a(driver, "x86_64-cpu") or qom.is_a(driver, "machine"))) \
        or bool(_X86_DRIVERS.match(driver))
    if x86 or (driver in in_pc and driver not in in_hw):
        return f"pc_compat_{suffix}", f"{driver} exists only in the x86 target"
    return f"hw_compat_{suffix}", f"{driver} is not x86-only: all targets share hw_compat"


# -- the report -------------------------------------------------------------------


def find_gaps(old: Build, new: Build) -> GapReport:
    machines = common_machines(old, new)
    candidates, skipped = _candidates(old, new, machines)
    gaps: list[Gap] = []
    news: list[NewProperty] = []
    restored: list[Restored] = []
    for (typename, prop), kind in sorted(candidates.items()):
        info_new = _info(new.qom, typename, prop)
        info_old = _info(old.qom, typename, prop)
        if kind == "compat" and (info_new is None or info_old is None):
            continue  # a property one build lacks: nothing the entries can restore
        affected: list[tuple[str, Value | None, Value | None]] = []
        by: list[str] = []
        for mo, mn in machines:
            v_old, _ = effective(old, mo, typename, prop)
            v_new, cp = effective(new, mn, typename, prop)
            if kind == "new":
                # absent before: the old build behaved as if it were off; a compat
                # entry on this type (any value) is QEMU's way of saying so
                if cp is None:
                    affected.append((mo.name, None, v_new))
                elif f"{cp.table}[{cp.entry}] {cp.prop}" not in by:
                    by.append(f"{cp.table}[{cp.entry}] {cp.prop}")
                continue
            if not _same(v_old, v_new):
                affected.append((mo.name, v_old, v_new))
            elif cp is not None and f"{cp.table}[{cp.entry}] {cp.prop}" not in by:
                by.append(f"{cp.table}[{cp.entry}] {cp.prop}")
        d_old = info_old.default if info_old else None
        d_new = info_new.default if info_new else None
        if not affected:
            if kind != "compat":
                restored.append(Restored(typename, prop, d_old, d_new, tuple(by)))
            continue
        verdict, reason = classify(new.qom, typename, prop, info_new)
        old_value = _most(v for _, v, _ in affected)
        new_value = _most(v for _, _, v in affected)
        newest = affected[0][0]
        array, why = fix_array(new, typename, newest)
        if kind == "new":
            news.append(NewProperty(
                typename, prop, info_new.type if info_new else "", d_new, verdict, reason,
                tuple(m for m, _, _ in affected),
                Fix(typename, prop, _off(info_new), array, why + "; the value that keeps the "
                    "old behaviour must be checked in the source")))
            continue
        fix = None
        if old_value is not None:
            fix = Fix(typename, prop, _c_value(old_value), array, why)
        gaps.append(Gap(
            typename, prop, info_new.type if info_new else "", old_value, new_value,
            d_old, d_new, tuple(m for m, _, _ in affected), verdict, reason, kind,
            _concrete(new.qom, typename, prop), fix))
    gaps, aliases = _drop_aliases(new.qom, gaps)
    skipped += aliases
    return GapReport(old.name, new.name, old.version_text, new.version_text,
                     tuple(m.name for m, _ in machines), tuple(gaps), tuple(news),
                     tuple(restored), tuple(_grouped(skipped)),
                     tuple(useless_entries(new, [n for _, n in machines])))


def _drop_aliases(qom: QomTypes, gaps: list[Gap]) -> tuple[list[Gap], list[Skipped]]:
    """Rows that repeat a virtio backend's gap through an alias (``virtio-vga-base.xres``
    shows ``virtio-gpu-base.xres``: virtio-vga creates a virtio-gpu device and aliases
    its properties, so an entry for the backend reaches it)."""
    backends = {(g.prop, repr(g.old), repr(g.new), g.machines): g for g in gaps
                if g.typename in qom and qom.is_a(g.typename, "virtio-device")}
    kept: list[Gap] = []
    dropped: list[Skipped] = []
    for g in gaps:
        twin = backends.get((g.prop, repr(g.old), repr(g.new), g.machines))
        if (twin is not None and twin is not g and g.typename.startswith(("virtio-", "vhost-"))
                and not qom.is_a(g.typename, "virtio-device")):
            dropped.append(Skipped(g.typename, g.prop, _fmt(g.old), _fmt(g.new),
                                   f"the same change as {twin.typename}.{g.prop}, seen "
                                   "through the alias to the virtio device it creates"))
        else:
            kept.append(g)
    return kept, dropped


def _grouped(skipped: Sequence[Skipped]) -> list[Skipped]:
    """One row per property and reason (CPU models repeat the same difference)."""
    rows: dict[tuple[str, str], Skipped] = {}
    for row in skipped:
        key = (row.prop, row.reason)
        first = rows.get(key)
        rows[key] = row if first is None else evolve(first, types=first.types + row.types)
    return sorted(rows.values(), key=lambda r: (r.typename, r.prop))


def _most(values: Iterable[Value | None]) -> Value | None:
    counts: dict[str, tuple[int, Value | None]] = {}
    for v in values:
        key = repr(v)
        counts[key] = (counts.get(key, (0, v))[0] + 1, v)
    return max(counts.values(), key=lambda c: c[0])[1] if counts else None


def _c_value(value: Value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _off(info: PropertyInfo | None) -> str:
    if info is not None and info.type == "bool":
        return "off" if info.default is True else "on"
    return "?"


def _concrete(qom: QomTypes, typename: str, prop: str) -> int:
    return sum(1 for t in qom.subtypes(typename)
               if t not in qom.abstract and prop in qom.properties(t))


def useless_entries(new: Build, machines: Sequence[type[MachineType]]) -> list[UselessEntry]:
    """Entries that change nothing on any machine type carrying them, and duplicates.

    No-op: on every compared type that carries the entry, the value just
    before it (the driver's default after the earlier entries) already equals
    its value.  Duplicate: an earlier entry of the same type's list sets the
    same driver and property (to the same value, or overridden by the later).
    """
    qom = new.qom
    status: dict[tuple[str, int], list[str]] = {}  # per carrying type: dup, no-op or needed
    first: dict[tuple[str, int], CompatProp] = {}  # the earlier same-value entry, for dups
    entries: dict[tuple[str, int], CompatProp] = {}
    for machine in machines:
        current: dict[tuple[str, str], CompatProp] = {}
        for cp in machine.compat_props():
            key = (cp.table, cp.entry)
            entries.setdefault(key, cp)
            where = (cp.driver, cp.property)
            info = _info(qom, cp.driver, cp.property)
            earlier = current.get(where)
            if earlier is not None and earlier.value == cp.value:
                state = "duplicate"
                first.setdefault(key, earlier)
            elif info is None or not _static(info):
                state = "needed"
            else:
                before = _parse(info, earlier.value) if earlier else info.default
                state = "no-op" if _same(before, _parse(info, cp.value)) else "needed"
            status.setdefault(key, []).append(state)
            current[where] = cp
    out: list[UselessEntry] = []
    for key, states in status.items():
        cp = entries[key]
        if "needed" in states:
            continue
        if all(s == "duplicate" for s in states):
            dup = first[key]
            out.append(UselessEntry(
                cp.table, cp.entry, cp.driver, cp.property, cp.value, "duplicate",
                f"{dup.table}[{dup.entry}] sets {dup.driver}.{dup.property}={dup.value} "
                "earlier in the list of every type that carries it"
                + _hw_note(cp.table), len(states)))
        else:
            out.append(UselessEntry(
                cp.table, cp.entry, cp.driver, cp.property, cp.value, "no-op",
                f"equals the value already in effect ({cp.driver}'s default in "
                "this build, or an earlier entry) on every type that carries it"
                + _hw_note(cp.table), len(states)))
    out.sort(key=lambda u: (version_key(u.table), u.table, u.entry, u.kind))
    return out


def _hw_note(table: str) -> str:
    return (" (of the x86 types compared; hw_compat arrays also serve other targets)"
            if table.startswith("hw_") else "")


def with_confirmations(report: GapReport, results: Mapping[tuple[str, str], tuple[bool | None,
                       str]], commands: Sequence[tuple[str, str]]) -> GapReport:
    """The report with each guest-visible gap's confirmation (from :mod:`machines.gapcheck`)."""
    gaps = []
    for gap in report.gaps:
        hit = results.get((gap.typename, gap.prop))
        if hit is not None:
            gap = evolve(gap, confirmed=hit[0], evidence=hit[1])
        elif gap.verdict != GUEST:
            gap = evolve(gap, evidence=f"not read back: a {gap.verdict} gap (--confirm proves "
                                      "guest-visible ones)")
        gaps.append(gap)
    return evolve(report, gaps=tuple(gaps), confirmed_with=tuple(commands))
