"""Compat drift: one machine type, two QEMU builds, different effective values.

Migration needs the destination to build the same virtual hardware.  The
machine type is the promise; compat properties keep it when defaults
change.  Drift is a broken promise: a property both builds have, which the
same machine type resolves to different values in each.

What is compared is effective values, not compat lists: a newer QEMU
legitimately carries entries for properties an older one never had, and
those are no drift.  Where a build has no property but a fixed behaviour
that the property later preserves (``x-arch-cap-always-on`` before QEMU
10.1.2), the behaviour counts as its value: that is how a point release can
break migration of an unchanged machine type.
"""

from typing import Any, NamedTuple

from machines.build import Build
from machines.compat.tables import CompatProp
from machines.errors import PropertyError
from machines.machine import MachineType
from machines.values import Value, parse_value


class Effective(NamedTuple):
    value: Value
    origin: str  # "pc_compat_10_0[2]", "default", "behaviour of QEMU 10.1.0 (no property)"


class DriftItem(NamedTuple):
    driver: str
    property: str
    source: Effective
    destination: Effective

    def describe(self, source_name: str, dest_name: str) -> str:
        return (f"{self.driver}.{self.property}: {self.source.value!r} on {source_name} "
                f"({self.source.origin}) but {self.destination.value!r} on {dest_name} "
                f"({self.destination.origin})")


def _model() -> dict[str, Any]:
    from machines.registry import model_doc  # decoded once per process, with the builds

    return model_doc()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def behaviour(build: Build, driver: str, prop: str) -> Effective | None:
    """The fixed behaviour of ``build`` where it has no such property."""
    version = (*build.version, 0, 0)[:3]
    for fact in _model().get("behaviours", []):
        if (fact["type"], fact["property"]) == (driver, prop) and \
                _version(fact["from"]) <= version <= _version(fact["to"]):
            return Effective(fact["value"], f"behaviour of QEMU {build.version_text}, which has "
                                            "no such property")
    return None


def _typed(build: Build, driver: str, prop: str, text: str) -> Value:
    info = build.qom.find_property(driver, prop) if driver in build.qom else None
    if info is None:
        return text
    try:
        return parse_value(info.type, text, prop)
    except PropertyError:
        return text


def _last_entries(machine: type[MachineType]) -> dict[tuple[str, str], CompatProp]:
    """The last compat entry per driver.property, computed once per machine class."""
    cached: dict[tuple[str, str], CompatProp] | None = vars(machine).get("_last_entries")
    if cached is None:
        cached = {(cp.driver, cp.property): cp for cp in machine.compat_props()}
        type.__setattr__(machine, "_last_entries", cached)
    return cached


def effective(build: Build, machine: type[MachineType], driver: str, prop: str
              ) -> Effective | None:
    """``driver.prop`` as ``machine`` gets it from ``build``; None where it does not exist."""
    last = _last_entries(machine).get((driver, prop))
    info = build.qom.find_property(driver, prop) if driver in build.qom else None
    if last is not None and info is not None:
        return Effective(_typed(build, driver, prop, last.value), f"{last.table}[{last.entry}]")
    if info is not None:
        return Effective(info.default, "default") if info.default is not None else None
    return behaviour(build, driver, prop)


_EFFECTIVE: dict[tuple[Build, type[MachineType]], dict[tuple[str, str], Effective | None]] = {}


def _keys(build: Build, machine: type[MachineType]) -> list[tuple[str, str]]:
    keys = list(_last_entries(machine))
    keys += [(p["type"], p["property"]) for p in _model().get("properties", [])]
    keys += [(b["type"], b["property"]) for b in _model().get("behaviours", [])]
    return keys


# Devices only a board creates (no -device can add them), and the boards that do:
# a property of one of these matters only to a machine that has the device.
# From QEMU 10.0.2's QOM trees (tests/test_qemu_oracle.py checks them).
BOARD_DEVICES: dict[str, frozenset[str]] = {
    **dict.fromkeys(("mch", "q35-pcihost", "ICH9-LPC", "ICH9-SMB"), frozenset({"pc_q35"})),
    **dict.fromkeys(("i440FX", "i440FX-pcihost", "PIIX3", "PIIX4_PM"), frozenset({"pc_piix"})),
    "acpi-ged": frozenset({"microvm"}),
}


def board(machine: type[MachineType]) -> str:
    """What BOARD_DEVICES calls a machine: its family, or its name when it has none."""
    return machine.family or machine.name


def has_device(machine: type[MachineType], driver: str) -> bool:
    boards = BOARD_DEVICES.get(driver)
    return boards is None or board(machine) in boards


def compat_drift(machine_name: str, source: Build, destination: Build) -> list[DriftItem]:
    """Properties whose effective value for ``machine_name`` differs between the builds.

    Only devices the machine can have count: ``mch`` is the Q35 host bridge, so
    its properties are no drift for microvm or i440FX.
    """
    src = source.machines[machine_name]
    dst = destination.machines[machine_name]
    keys = dict.fromkeys(_ordered_keys(source, src))
    keys.update(dict.fromkeys(_ordered_keys(destination, dst)))
    here = board(src)
    mine = _table(source, src)
    theirs = _table(destination, dst)
    items = []
    for key in keys:
        boards = BOARD_DEVICES.get(key[0])
        if boards is not None and here not in boards:
            continue  # not has_device(src, driver)
        a = mine[key] if key in mine else mine.setdefault(key, effective(source, src, *key))
        if a is None:
            continue
        b = theirs[key] if key in theirs else theirs.setdefault(
            key, effective(destination, dst, *key))
        if b is not None and a.value != b.value:
            items.append(DriftItem(key[0], key[1], a, b))
    return sorted(items, key=lambda i: (i.driver, i.property))


def _table(build: Build, machine: type[MachineType]
           ) -> dict[tuple[str, str], Effective | None]:
    """:func:`effective`'s answers for one (build, machine type), filled as asked: a fleet
    compares each pair of its builds for the same machine types over and over."""
    table = _EFFECTIVE.get((build, machine))
    if table is None:
        table = _EFFECTIVE[(build, machine)] = {}
    return table


_KEYS: dict[tuple[Build, type[MachineType]], tuple[tuple[str, str], ...]] = {}


def _ordered_keys(build: Build, machine: type[MachineType]) -> tuple[tuple[str, str], ...]:
    found = _KEYS.get((build, machine))
    if found is None:
        found = _KEYS[(build, machine)] = tuple(dict.fromkeys(_keys(build, machine)))
    return found
