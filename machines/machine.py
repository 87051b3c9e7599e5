"""Machine types as classes, the way QEMU's options functions chain them.

In QEMU, ``pc_q35_machine_9_1_options()`` first calls the 9.2 options and
then appends ``hw_compat_9_1`` and ``pc_compat_9_1``.  Here each machine type
is a class and an older version is a subclass of the next newer one, so an
attribute set on ``pc-q35-4.0`` (split irqchip by default) is inherited by
nothing older unless they leave it alone, exactly like the C chain.  A class
carries only the arrays it adds (``own_compat``); :meth:`compat_tables`
walks the chain.

A class belongs to one QEMU build: ``pc-q35-10.0`` in QEMU 10.2 carries the
10.0 compat arrays as 10.2 defines them, which differ from what 10.0 knew.
"""

from __future__ import annotations

from typing import ClassVar

from machines.compat.tables import CompatProp, CompatTable, flatten
from machines.naming import MachineVersion


class MachineType:
    """Base class of every machine type; used as a class, never instantiated."""

    name: ClassVar[str] = ""
    build: ClassVar[str] = ""
    family: ClassVar[str | None] = None  # QEMU's MachineClass.family
    prefix: ClassVar[str] = ""
    version: ClassVar[MachineVersion | None] = None
    desc: ClassVar[str] = ""
    alias: ClassVar[str | None] = None
    is_default: ClassVar[bool] = False
    deprecated: ClassVar[bool] = False
    registered: ClassVar[bool] = True
    added_in: ClassVar[str | None] = None
    default_kernel_irqchip_split: ClassVar[bool | None] = False
    default_cpu_type: ClassVar[str | None] = None
    own_compat: ClassVar[tuple[CompatTable, ...]] = ()

    def __init__(self) -> None:
        raise TypeError("machine types are classes; use them without instances")

    @classmethod
    def compat_tables(cls) -> tuple[CompatTable, ...]:
        cached: tuple[CompatTable, ...] | None = vars(cls).get("_tables")
        if cached is None:
            tables: list[CompatTable] = []
            for klass in reversed(cls.__mro__):
                tables.extend(vars(klass).get("own_compat", ()))
            cached = tuple(tables)
            type.__setattr__(cls, "_tables", cached)  # computed once per class
        return cached

    @classmethod
    def compat_props(cls) -> tuple[CompatProp, ...]:
        """The ordered ``compat_props`` QEMU applies; later entries win."""
        cached: tuple[CompatProp, ...] | None = vars(cls).get("_props")
        if cached is None:
            cached = flatten(cls.compat_tables())
            type.__setattr__(cls, "_props", cached)
        return cached

    @classmethod
    def newer(cls) -> type[MachineType] | None:
        """The next newer type of the family (this class's parent), if any."""
        parent = cls.__mro__[1]
        return parent if issubclass(parent, MachineType) and parent.name else None

