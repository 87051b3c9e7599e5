"""What QEMU's C sources say that QMP does not: table names and machine options.

``query-machines`` gives each machine type's compat properties as one flat
list.  Which entries came from ``hw_compat_9_2`` and which from
``pc_compat_9_2``, and which machine types default to a split irqchip, is only
written in the sources.  This module reads just enough of an upstream QEMU
tree to know, for each versioned pc machine type:

* the ordered list of ``GlobalProperty`` arrays its ``*_machine_options()``
  chain passes to ``compat_props_add()``, and how many entries each has;
* whether the chain sets ``default_kernel_irqchip_split``.

It is a scanner for the few regular shapes these files use, not a C parser.
The importer never trusts it alone: the labelled tables must add up to the
binary's own flat lists, entry by entry, or the import fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from attrs import frozen

from machines.errors import DataError

_ARRAY = re.compile(
    r"^(?:static\s+)?GlobalProperty\s+(\w+)\[\]\s*=\s*\{(.*?)\};", re.M | re.S)
_ENTRY = re.compile(r"\{([^{}]*)\}")
_MACRO = re.compile(r"^#define\s+(\w+)\([^)]*\)\s*\\\n((?:.*\\\n)*.*)$", re.M)
_DEFINE_FAMILY = re.compile(
    r"#define\s+(DEFINE_\w+_MACHINE\w*)\(([^)]*)\)\s*\\\s*\n\s*DEFINE_PC_VER_MACHINE\("
    r"(\w+),\s*\"([^\"]+)\",\s*\w+,\s*(true|false),\s*(NULL|\"[^\"]*\")")
_USE_FAMILY = re.compile(r"^(DEFINE_\w+_MACHINE\w*)\(([\d,\s]+)\);?", re.M)
_FUNCTION = re.compile(r"^static void (\w+_options)\(MachineClass \*m\)\s*\{(.*?)^\}", re.M | re.S)
_STATEMENT = re.compile(
    r"compat_props_add\(\s*m->compat_props,\s*(\w+),"
    r"|(\w+_options)\(m\);"
    r"|m->default_kernel_irqchip_split\s*=\s*(true|false);")


@frozen
class SourceTable:
    """One ``GlobalProperty`` array: its name, file, and entries' properties."""

    name: str
    file: str
    properties: tuple[str | None, ...]  # None where the source names it by macro


@frozen
class SourceMachine:
    """A versioned machine type as its options chain defines it."""

    name: str
    tables: tuple[str, ...]
    kernel_irqchip_split: bool


@frozen
class SourceFacts:
    version: str
    tables: dict[str, SourceTable]
    machines: dict[str, SourceMachine]


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _property(entry: str) -> str | None:
    """The second field of a ``{ driver, property, value }`` initializer."""
    fields: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for ch in entry:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted and depth == 0:
            fields.append("".join(current))
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(ch, 0) if not quoted else 0
        current.append(ch)
    fields.append("".join(current))
    return _literal(fields[1]) if len(fields) >= 3 else None


def _literal(token: str) -> str | None:
    token = token.strip()
    if token.startswith('"') and token.endswith('"'):
        return token[1:-1]
    return None


def _macro_sizes(text: str) -> dict[str, tuple[str | None, ...]]:
    """Function-like macros that expand to a run of GlobalProperty entries."""
    sizes = {}
    for name, body in _MACRO.findall(text):
        entries = [e for e in _ENTRY.findall(body.replace("\\\n", "\n")) if e.count(",") >= 2]
        if entries:
            sizes[name] = tuple(_property(e) for e in entries)
    return sizes


def _tables(path: Path, rel: str) -> dict[str, SourceTable]:
    text = _strip_comments(path.read_text(encoding="utf-8", errors="replace"))
    macros = _macro_sizes(text)
    found = {}
    for name, body in _ARRAY.findall(text):
        props: list[str | None] = []
        for line in body.splitlines():
            line = line.strip()
            call = re.match(r"(\w+)\(", line)
            if call and call.group(1) in macros:
                props.extend(macros[call.group(1)])
                continue
            for entry in _ENTRY.findall(line):
                if entry.count(",") >= 2:  # skip "{}" of an empty array
                    props.append(_property(entry))
        found[name] = SourceTable(name, rel, tuple(props))
    return found


def _machines(path: Path) -> dict[str, SourceMachine]:
    text = _strip_comments(path.read_text(encoding="utf-8", errors="replace"))
    functions = {name: body for name, body in _FUNCTION.findall(text)}

    def chain(fn: str, seen: tuple[str, ...] = ()) -> tuple[list[str], bool | None]:
        if fn in seen or fn not in functions:
            raise DataError(f"{path.name}: cannot follow machine options function {fn}")
        tables: list[str] = []
        split: bool | None = None
        for table, parent, value in _STATEMENT.findall(functions[fn]):
            if parent:
                parent_tables, parent_split = chain(parent, (*seen, fn))
                tables.extend(parent_tables)
                split = parent_split if parent_split is not None else split
            elif table:
                tables.append(table)
            else:
                split = value == "true"
        return tables, split

    macros = {}
    for macro, _params, sym, prefix, _default, _alias in _DEFINE_FAMILY.findall(text):
        macros[macro] = (sym, prefix)
    machines = {}
    for macro, args in _USE_FAMILY.findall(text):
        if macro not in macros:
            continue
        sym, prefix = macros[macro]
        numbers = [n.strip() for n in args.split(",") if n.strip()]
        name = f"{prefix}-{'.'.join(numbers)}"
        tables, split = chain(f"{sym}_machine_{'_'.join(numbers)}_options")
        machines[name] = SourceMachine(name, tuple(tables), bool(split))
    return machines


def read_source(root: Path) -> SourceFacts:
    """Scan an upstream QEMU source tree for the pc machine facts."""
    files = {
        "machine": root / "hw/core/machine.c",
        "pc": root / "hw/i386/pc.c",
        "q35": root / "hw/i386/pc_q35.c",
        "piix": root / "hw/i386/pc_piix.c",
    }
    for path in files.values():
        if not path.is_file():
            raise DataError(f"not a QEMU source tree: {path} is missing")
    version_file = root / "VERSION"
    version = version_file.read_text().strip() if version_file.is_file() else "unknown"
    tables: dict[str, SourceTable] = {}
    for key, path in files.items():
        tables.update(_tables(path, str(path.relative_to(root))))
        del key
    machines: dict[str, SourceMachine] = {}
    for key in ("q35", "piix"):
        machines.update(_machines(files[key]))
    if not machines:
        raise DataError(f"{root}: no versioned pc machine definitions found")
    return SourceFacts(version, tables, machines)


def read_options(root: Path) -> dict[str, bool]:
    """qemu-options.hx: every x86 command-line option and whether it takes an argument."""
    path = root / "qemu-options.hx"
    if not path.is_file():
        raise DataError(f"not a QEMU source tree: {path} is missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    options: dict[str, bool] = {}
    for start in (m.end() for m in re.finditer(r"^DEF\(", text, re.M)):
        depth, pos, in_string = 1, start, False
        while depth and pos < len(text):  # find the DEF's closing parenthesis
            ch = text[pos]
            if in_string:
                if ch == "\\":
                    pos += 1
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            pos += 1
        body = text[start : pos - 1]
        name = re.match(r'\s*"([^"]+)"\s*,\s*(\w+)', body)
        arch = re.search(r",\s*([A-Z0-9_|\s]+)\s*$", body)
        if not name or not arch:
            continue
        masks = {a.strip() for a in arch.group(1).split("|")}
        if masks & {"QEMU_ARCH_ALL", "QEMU_ARCH_I386"}:
            options[name.group(1)] = name.group(2) == "HAS_ARG"
    return options
