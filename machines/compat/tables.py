"""Compat properties and the arrays QEMU keeps them in.

QEMU's ``GlobalProperty { driver, property, value, optional }`` is the unit of
machine-type compatibility: "on machine types this old, ``driver.property``
defaults to ``value``".  They live in named arrays (``hw_compat_9_2``,
``pc_compat_9_2``, ``pc_q35_compat_defaults``...) that each machine type's
options function appends, in order, to its ``compat_props``.
"""

from collections.abc import Sequence
from typing import NamedTuple


class GlobalProperty(NamedTuple):
    """One compat entry, exactly as QEMU's C struct holds it."""

    driver: str
    property: str
    value: str
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.driver}.{self.property}={self.value}"


class CompatTable(NamedTuple):
    """A named ``GlobalProperty`` array (``hw_compat_9_2``...)."""

    name: str
    entries: tuple[GlobalProperty, ...]



class CompatProp(NamedTuple):
    """A compat entry as a machine type applies it: which array, which slot.

    ``entry`` is its index in ``table``; ``position`` is its place in the machine
    type's whole ``compat_props`` list; later positions win.
    """

    prop: GlobalProperty
    table: str
    entry: int  # the entry's index in its array
    position: int

    @property
    def driver(self) -> str:
        return self.prop.driver

    @property
    def value(self) -> str:
        return self.prop.value

    @property  # defined last: the name shadows the builtin inside the class body
    def property(self) -> str:
        return self.prop.property


def flatten(tables: Sequence[CompatTable]) -> tuple[CompatProp, ...]:
    """The machine type's ``compat_props``: its arrays, concatenated in order."""
    out: list[CompatProp] = []
    for table in tables:
        for index, prop in enumerate(table.entries):
            out.append(CompatProp(prop, table.name, index, len(out)))
    return tuple(out)
