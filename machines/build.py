"""A QEMU build: its machine types, their lifecycle, and its QOM data.

A build is either one of the model's releases (``10.0``, ``10.1``,
``10.1.2``, ``10.2``; machine classes from :mod:`machines.i386.pc`) or a real
binary read by ``machines import`` (``10.0.2`` ships; downstream builds import
the same way).  Both give the same interface.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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
        machines: MachineClasses | Sequence[type[MachineType]],
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
        if not isinstance(machines, MachineClasses):
            machines = MachineClasses.of(machines)
        self.machines: MachineClasses = machines
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


class MachineClasses(Mapping[str, "type[MachineType]"]):
    """A build's machine classes by name, each made the first time it is looked up.

    A cold ``resolve`` needs one machine type and the newer ones of its family it derives
    from; making all ~130 classes of a build costs a cold start about 3 ms.  The name and
    family of each type are known without making it (``families``).
    """

    def __init__(self) -> None:
        self._makers: dict[str, Callable[[], type[MachineType]]] = {}
        self._made: dict[str, type[MachineType]] = {}
        self.families: dict[str, str | None] = {}

    @classmethod
    def of(cls, classes: Iterable[type[MachineType]]) -> MachineClasses:
        made = cls()
        for machine in classes:
            made.add_class(machine)
        return made

    def add(self, name: str, family: str | None,
            make: Callable[[], type[MachineType]]) -> None:
        self._makers[name] = make
        self.families[name] = family

    def add_class(self, machine: type[MachineType]) -> None:
        self.add(machine.name, machine.family, lambda: machine)
        self._made[machine.name] = machine

    def __getitem__(self, name: str) -> type[MachineType]:
        made = self._made.get(name)
        if made is None:
            made = self._made[name] = self._makers[name]()
        return made

    def __contains__(self, name: object) -> bool:
        return name in self._makers

    def __iter__(self) -> Iterator[str]:
        return iter(self._makers)

    def __len__(self) -> int:
        return len(self._makers)


def help_order(families: Mapping[str, str | None], others_before: Sequence[str],
               others_after: Sequence[str]) -> list[str]:
    """QEMU's machine_class_cmp: families by name, each newest first by type name
    (``families``: each machine type's family, None outside the families)."""
    family_members = sorted(
        (name for name, family in families.items() if family),
        key=lambda name: (families[name] or "", _Descending(f"{name}-machine".encode())),
    )
    return [*others_before, *family_members, *others_after]


class _Descending:
    """Reverse byte order, for sorting type names newest first as strcmp does."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def __lt__(self, other: _Descending) -> bool:
        return self.key > other.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key


def imported_machines(build: str, data: Mapping[str, Any], tables: Mapping[str, CompatTable],
                      families: Mapping[str, str]) -> MachineClasses:
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
    classes = MachineClasses()

    def maker(name: str, prefix: str, parent: str | None, own: list[str],
              family: str | None) -> Callable[[], type[MachineType]]:
        def make() -> type[MachineType]:
            info = data["machines"][name]
            row = listing.get(name, {})
            parsed = parse_machine_name(name)
            attrs = {
                "name": name,
                "build": build,
                "family": family,
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
            base = classes[parent] if parent is not None else MachineType
            return type(class_name(name), (base,), attrs)
        return make

    for prefix, names in by_prefix.items():
        names.sort(key=version_key, reverse=True)
        parent: str | None = None
        parent_tables: list[str] = []
        for name in names:
            tables_of = list(data["machines"][name]["tables"])
            own, base = tables_of, None
            if parent is not None and tables_of[: len(parent_tables)] == parent_tables:
                own, base = tables_of[len(parent_tables):], parent
            family = families.get(prefix, prefix) if parse_machine_name(name).versioned \
                else None
            classes.add(name, family, maker(name, prefix, base, own, family))
            parent, parent_tables = name, tables_of
    return classes


def class_name(machine: str) -> str:
    """``pc-q35-9.2`` -> ``PcQ35_9_2``: a readable Python name for the class."""
    parsed = parse_machine_name(machine)
    camel = "".join(part.capitalize() for part in parsed.prefix.replace(".", "_").split("-"))
    if parsed.version is None:
        return camel
    return f"{camel}_{str(parsed.version).replace('.', '_')}"
