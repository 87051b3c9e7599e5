"""A QEMU build: its machine types, their lifecycle, and its QOM data.

A build is either one of the model's releases (``10.0``, ``10.1``,
``10.1.2``, ``10.2``; machine classes from :mod:`machines.i386.pc`) or a real
binary read by ``machines import`` (``10.0.2`` ships; downstream builds import
the same way).  Both give the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from machines.compat.tables import CompatTable, GlobalProperty
from machines.errors import UnknownMachineError
from machines.machine import MachineType
from machines.naming import closest_names, parse_machine_name, version_key
from machines.qom import QomTypes


class Build:
    """One QEMU build, as ``-machine help`` and QMP would present it."""

    seoib_design = "none"  # every real build; machines.i386.designs overlays the RFC's designs

    def __init__(
        self,
        name: str,
        version: tuple[int, ...],
        kind: str,
        machines: Sequence[type[MachineType]],
        listing: Sequence[str],
        qom: Callable[[], QomTypes],
        *,
        package: str = "",
        seoib_aware: bool = False,
        globals_reach_accel: bool = False,
        accel_compat: Mapping[str, Sequence[GlobalProperty]] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.kind = kind  # "model" or "imported"
        self.machines: dict[str, type[MachineType]] = {m.name: m for m in machines}
        self.listing = tuple(n for n in listing if n in self.machines)
        self._qom = qom
        self.package = package
        self.seoib_aware = seoib_aware
        self.globals_reach_accel = globals_reach_accel
        self.accel_compat = {k: tuple(v) for k, v in (accel_compat or {}).items()}
        self.provenance = dict(provenance or {})

    def __repr__(self) -> str:
        return f"<Build {self.name} ({self.kind})>"

    @property
    def version_text(self) -> str:
        return ".".join(str(n) for n in self.version)

    @cached_property
    def qom(self) -> QomTypes:
        return self._qom()

    def registered(self) -> list[type[MachineType]]:
        """The types this build registers, in ``-machine help`` order."""
        return [self.machines[n] for n in self.listing if self.machines[n].registered]

    @cached_property
    def aliases(self) -> dict[str, type[MachineType]]:
        return {m.alias: m for m in self.registered() if m.alias}

    @property
    def default_machine(self) -> type[MachineType] | None:
        return next((m for m in self.registered() if m.is_default), None)

    def find(self, name: str) -> type[MachineType] | None:
        """QEMU's find_machine(): a registered type by name or alias."""
        machine = self.machines.get(name)
        if machine is not None and machine.registered:
            return machine
        return self.aliases.get(name)

    def lookup(self, name: str, known_elsewhere: Callable[[str], str] | None = None
               ) -> type[MachineType]:
        """Like :meth:`find`, accepting ``pc-X.Y`` for ``pc-i440fx-X.Y``; else an error."""
        machine = self.find(name)
        short = parse_machine_name(name)
        if machine is None and short.prefix == "pc" and short.version is not None:
            machine = self.find(f"pc-i440fx-{short.version}")
        if machine is not None:
            return machine
        note = known_elsewhere(name) if known_elsewhere else ""
        if not note and name in self.machines:
            note = "known to this build but not registered"
        candidates = [m.name for m in self.registered()] + list(self.aliases)
        raise UnknownMachineError(name, self.name, closest_names(name, candidates), note)

    def help_text(self) -> str:
        """The build's ``-machine help``, line for line."""
        lines = ["Supported machines are:"]
        for m in self.registered():
            if m.alias:
                lines.append(f"{m.alias:<20} {m.desc} (alias of {m.name})")
            lines.append(f"{m.name:<20} {m.desc}{' (default)' if m.is_default else ''}"
                         f"{' (deprecated)' if m.deprecated else ''}")
        return "\n".join(lines) + "\n"


def help_order(machines: Iterable[type[MachineType]], others_before: Sequence[str],
               others_after: Sequence[str]) -> list[str]:
    """QEMU's machine_class_cmp: families by name, each newest first by type name."""
    family_members = sorted(
        (m for m in machines if m.family),
        key=lambda m: (m.family or "", _Descending(f"{m.name}-machine".encode())),
    )
    return [*others_before, *(m.name for m in family_members), *others_after]


class _Descending:
    """Reverse byte order, for sorting type names newest first as strcmp does."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __lt__(self, other: _Descending) -> bool:
        return self.key > other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key


def imported_machines(build: str, data: Mapping[str, Any], tables: Mapping[str, CompatTable],
                      families: Mapping[str, str]) -> list[type[MachineType]]:
    """Machine classes for an imported build: families chained newest to oldest.

    The family is the name's prefix (named as QEMU names it where
    ``families`` knows the prefix); a type derives from the next newer type
    of its family when that one's arrays are a prefix of its own (they always
    are for upstream and downstream pc types), else it stands alone.
    """
    listing = {row["name"]: row for row in data["listing"]}
    by_prefix: dict[str, list[str]] = {}
    for name in data["machines"]:
        parsed = parse_machine_name(name)
        by_prefix.setdefault(parsed.prefix if parsed.versioned else name, []).append(name)
    classes: list[type[MachineType]] = []
    for prefix, names in by_prefix.items():
        names.sort(key=version_key, reverse=True)
        parent: type[MachineType] = MachineType
        parent_tables: list[str] = []
        for name in names:
            info = data["machines"][name]
            row = listing.get(name, {})
            own = list(info["tables"])
            base: type[MachineType] = MachineType
            if parent is not MachineType and own[: len(parent_tables)] == parent_tables:
                base = parent
                own = own[len(parent_tables):]
            parsed = parse_machine_name(name)
            attrs = {
                "name": name,
                "build": build,
                "family": families.get(prefix, prefix) if parsed.versioned else None,
                "prefix": prefix,
                "version": parsed.version,
                "desc": row.get("desc", ""),
                "alias": row.get("alias"),
                "is_default": bool(row.get("default")),
                "deprecated": bool(row.get("deprecated")),
                "registered": True,
                "added_in": str(parsed.version) if parsed.version and not parsed.version.tag
                else None,
                # microvm's class sets a split irqchip by default (seen on a real QEMU)
                "default_kernel_irqchip_split": info.get("kernel_irqchip_split",
                                                         None) if name != "microvm" else True,
                "default_cpu_type": info.get("default_cpu_type"),
                "own_compat": tuple(tables[t] for t in own),
                "__doc__": f"{name} as QEMU {build} defines it (imported).",
            }
            cls = type(class_name(name), (base,), attrs)
            classes.append(cls)
            parent, parent_tables = cls, list(info["tables"])
    return classes


def class_name(machine: str) -> str:
    """``pc-q35-9.2`` -> ``PcQ35_9_2``: a readable Python name for the class."""
    parsed = parse_machine_name(machine)
    camel = "".join(part.capitalize() for part in parsed.prefix.replace(".", "_").split("-"))
    if parsed.version is None:
        return camel
    return f"{camel}_{str(parsed.version).replace('.', '_')}"
