"""What differs between machine types, as QEMU's compare-machine-types.py shows it.

For every ``driver.property`` that any of the machine types' compat lists
touches, each machine type's value is its last compat entry for it, or, where
it has none, the driver's default ("holes filled with type defaults").  Rows
where all values agree are left out unless asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from attrs import frozen

from machines.build import Build
from machines.compat.tables import CompatProp
from machines.machine import MachineType
from machines.values import Value, format_value

if TYPE_CHECKING:
    from machines.render import Table


@frozen
class Cell:
    value: Value | None
    text: str  # as shown: QEMU's string for compat values, the default otherwise
    source: str  # "compat TABLE[i]", "default", "realize" or "unknown"


@frozen
class CompareTable:
    machines: tuple[str, ...]
    rows: tuple[tuple[str, str, tuple[Cell, ...]], ...]  # (driver, property, cells)


def compare_machines(build: Build, machines: Sequence[type[MachineType]], show_all: bool = False
                     ) -> CompareTable:
    qom = build.qom
    folded = []
    for machine in machines:
        last: dict[tuple[str, str], CompatProp] = {}
        for cp in machine.compat_props():
            last[(cp.driver, cp.property)] = cp
        folded.append(last)
    keys: list[tuple[str, str]] = []
    for last in folded:
        for key in last:
            if key not in keys:
                keys.append(key)
    rows = []
    for driver, prop in sorted(keys):
        info = qom.properties(driver).get(prop) if driver in qom else None
        cells = []
        for last in folded:
            hit = last.get((driver, prop))
            if hit is not None:
                cp = hit
                source = f"compat {cp.table}[{cp.entry}]"
                cells.append(Cell(_typed(info, cp.value), cp.value, source))
            elif info is not None and info.realized is not None:
                # QEMU changes it at realize (EPYC xlevel): say so, as resolve does.
                cells.append(Cell(info.realized, f"{format_value(info.realized)} (realize)",
                                  "realize"))
            elif info is not None and info.default is not None:
                cells.append(Cell(info.default, format_value(info.default), "default"))
            else:
                cells.append(Cell(None, "-", "unknown"))
        if show_all or len({(c.value if c.value is not None else c.text) for c in cells}) > 1:
            rows.append((driver, prop, tuple(cells)))
    return CompareTable(tuple(m.name for m in machines), tuple(rows))


def _typed(info: object, text: str) -> Value | None:
    from machines.errors import PropertyError
    from machines.qom import PropertyInfo
    from machines.values import parse_value

    if not isinstance(info, PropertyInfo):
        return text
    try:
        return parse_value(info.type, text, info.name)
    except PropertyError:
        return text


# Only what the table shows is explained.
_LEGEND = (("default", "no compat property sets it: the driver's default"),
           ("realize", "no compat property sets it and QEMU decides it at realize: the value a "
                       "plain machine shows"))


def to_table(build: Build, table: CompareTable) -> Table:
    """The comparison as a render.Table (rows where values differ are marked)."""
    from machines.render import Cell, Table

    rows = []
    for driver, prop, cells in table.rows:
        differs = len({c.value if c.value is not None else c.text for c in cells}) > 1
        rows.append((Cell(driver), Cell(prop), *(
            Cell(c.text, "differs" if differs else "", c.source) for c in cells)))
    return Table(
        title=f"Machine types compared in QEMU {build.name}: {', '.join(table.machines)}",
        columns=("Driver", "Property", *table.machines),
        short=("Driver", "Property", *table.machines),
        rows=tuple(rows),
        row_ids=tuple(f"{d}.{p}" for d, p, _ in table.rows),
        legend=tuple((key, meaning) for key, meaning in _LEGEND
                     if any(c.source == key for *_, cells in table.rows for c in cells)),
        inputs=(("QEMU build", f"{build.name} ({build.kind})"),),
    )
