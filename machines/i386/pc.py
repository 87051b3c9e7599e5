"""The PC machine families as the model's releases define them.

This file is the model's ``pc_q35.c`` and ``pc_piix.c``: which versions each
family has in a release, which arrays each version's options function adds,
and the few per-version machine-class settings that are not compat
properties.  The arrays' contents are data (``machines/compat/data``).

The chain, as in QEMU: the family base adds its family defaults
(``pc_q35_compat_defaults``, ``pc_piix_compat_defaults``); the newest version
adds nothing; every older version X.Y adds ``hw_compat_X_Y`` then
``pc_compat_X_Y``.  Exceptions, also as in QEMU:

* ``pc-q35-4.0.1`` is the 4.0-stable fix; it applies the 4.0 arrays, and
  ``pc-q35-4.0`` derives from it, adds nothing, and defaults to a split
  irqchip (the 4.0 default that 4.0.1 reverted); ``pc-q35-3.1`` turns the
  split default off again.
* the 2.4 and 2.5 types (and their arrays) were deleted from QEMU 10.1.
"""

from collections.abc import Callable, Mapping
from functools import cache, partial
from typing import TYPE_CHECKING, Any, NamedTuple

from machines import lifecycle
from machines.compat.tables import CompatTable
from machines.machine import MachineType
from machines.naming import MachineVersion

if TYPE_CHECKING:  # machines.build imports this module's users; loaded when classes are made
    from machines.build import MachineClasses


class PcFamily(NamedTuple):
    prefix: str
    family: str  # QEMU's MachineClass.family, which orders -machine help
    desc: str
    alias: str
    is_default: bool
    defaults_table: str
    has_4_0_1: bool


I440FX = PcFamily("pc-i440fx", "pc_piix", "Standard PC (i440FX + PIIX, 1996)", "pc", True,
                  "pc_piix_compat_defaults", has_4_0_1=False)
Q35 = PcFamily("pc-q35", "pc_q35", "Standard PC (Q35 + ICH9, 2009)", "q35", False,
               "pc_q35_compat_defaults", has_4_0_1=True)
FAMILIES = (I440FX, Q35)

DEFAULT_CPU_TYPE = "qemu64-x86_64-cpu"
_DELETED = {(2, 4): (10, 1), (2, 5): (10, 1)}  # version -> release that deleted its code


def source_versions(release: tuple[int, ...], family: PcFamily) -> list[tuple[int, ...]]:
    """Versions whose code a release's source has, newest first."""
    newest = release[:2]
    versions: list[tuple[int, ...]] = []
    for major in range(newest[0], 1, -1):
        for minor in range(12 if major == 2 else 2, -1, -1):
            version = (major, minor)
            if version > newest or version < (2, 4):
                continue
            if version in _DELETED and release[:2] >= _DELETED[version]:
                continue
            if version == (4, 0) and family.has_4_0_1:
                versions.append((4, 0, 1))
            versions.append(version)
    # 3.x and 4.x had minors 0-2 only where they existed; drop ones QEMU never had.
    never = {(3, 2)}
    return [v for v in versions if v[:2] not in never]


def _tables_for(version: tuple[int, ...], family: PcFamily, newest: tuple[int, ...],
                tables: Mapping[str, CompatTable]) -> tuple[str, ...]:
    if version == newest:
        return ()
    if family.has_4_0_1 and version == (4, 0):
        return ()  # the 4.0.1 machine applies the 4.0 arrays
    major, minor = version[:2]
    combined = f"hw+pc_compat_{major}_{minor}"
    if combined in tables:  # a release known only from a binary: the split is not known
        return (combined,)
    return (f"hw_compat_{major}_{minor}", f"pc_compat_{major}_{minor}")


def _settings(version: tuple[int, ...], family: PcFamily) -> dict[str, Any]:
    """Per-version machine-class settings that matter here (not compat props)."""
    if family is Q35 and version == (4, 0):
        return {"default_kernel_irqchip_split": True}
    if family is Q35 and version == (3, 1):
        return {"default_kernel_irqchip_split": False}
    return {}


def _table(tables: Mapping[str, CompatTable], name: str) -> CompatTable:
    """An array of the release, or an empty one where the release has none yet."""
    return tables.get(name, CompatTable(name, ()))


def pc_machines(build: str, release: tuple[int, ...], tables: Mapping[str, CompatTable]
                ) -> "MachineClasses":
    """Machine classes of both PC families for one model release (each made when first
    looked up, from the family base down to it)."""
    from machines.build import MachineClasses, class_name

    classes = MachineClasses()

    def family_base(family: PcFamily) -> Callable[[], type[MachineType]]:
        @cache
        def make() -> type[MachineType]:
            return type(class_name(f"{family.prefix}-base"), (MachineType,), {
                "build": build,
                "family": family.family,
                "prefix": family.prefix,
                "desc": family.desc,
                "default_cpu_type": DEFAULT_CPU_TYPE,
                "default_kernel_irqchip_split": False,
                "own_compat": (_table(tables, family.defaults_table),),
                "__doc__": f"{family.desc}: the family base ({family.family}_machine_options).",
            })
        return make

    def version_class(family: PcFamily, version: tuple[int, ...], newest: tuple[int, ...],
                      name: str, parent: Callable[[], type[MachineType]]
                      ) -> Callable[[], type[MachineType]]:
        def make() -> type[MachineType]:
            own = tuple(_table(tables, t) for t in _tables_for(version, family, newest, tables))
            attrs: dict[str, Any] = {
                "name": name,
                "version": MachineVersion("", version),
                "alias": family.alias if version == newest else None,
                "is_default": family.is_default and version == newest,
                "deprecated": lifecycle.is_deprecated(release, version),
                "registered": lifecycle.is_registered(release, version),
                "added_in": ".".join(map(str, version)),
                "own_compat": own,
                "__doc__": f"{name} as QEMU {build} defines it.",
                **_settings(version, family),
            }
            return type(class_name(name), (parent(),), attrs)
        return make

    for family in FAMILIES:
        versions = source_versions(release, family)
        newest = versions[0]
        parent = family_base(family)
        for version in versions:
            name = f"{family.prefix}-{'.'.join(map(str, version))}"
            classes.add(name, family.family, version_class(family, version, newest, name, parent))
            parent = partial(classes.__getitem__, name)
    return classes
