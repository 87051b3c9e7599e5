"""``machines import``: read a real QEMU binary into a build data file.

The importer starts the binary once under QMP (``-machine none -accel tcg``)
and asks it what it knows: ``query-machines`` with compat properties,
``qom-list-types`` (abstract ones too, for the type hierarchy) and the
properties of every concrete type with their defaults.  ``-machine help``
gives the listing order and descriptions, which QMP does not carry.

The flat compat list of each machine type is cut into the arrays QEMU built it
from.  With ``--source`` (an upstream QEMU tree of the same version) the cut
follows the sources' ``hw_compat_X_Y``/``pc_compat_X_Y`` arrays and must add
up exactly; without it, each machine type's share is the part its list adds
to the next newer type of its family, which works for any downstream build.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from machines import __version__
from machines.compat.csource import SourceFacts, read_source
from machines.errors import DataError, EnvironmentUnavailable
from machines.naming import parse_machine_name
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession

SCHEMA = "machines/qemu-build/v1"
IMPORT_ARGS = ("-machine", "none", "-accel", "tcg", *BASE_ARGS)

Entry = tuple[str, str, str]


def parse_machine_help(text: str) -> list[dict[str, Any]]:
    """``-machine help`` lines as QEMU's machine_help_func prints them."""
    rows: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("Supported machines"):
            continue
        name, _, desc = line.partition(" ")
        desc = desc.strip()
        alias_of = re.search(r" \(alias of (\S+)\)$", desc)
        if alias_of:
            continue  # the alias is recorded on its target below
        deprecated = desc.endswith(" (deprecated)")
        desc = desc.removesuffix(" (deprecated)")
        default = desc.endswith(" (default)")
        desc = desc.removesuffix(" (default)")
        rows.append({"name": name, "desc": desc, "default": default, "deprecated": deprecated})
    aliases = dict(re.findall(r"^(\S+)\s+.* \(alias of (\S+)\)$", text, re.M))
    for row in rows:
        row["alias"] = next((a for a, target in aliases.items() if target == row["name"]), None)
    return rows


def _machine_help(binary: str, timeout: float) -> list[dict[str, Any]]:
    try:
        done = subprocess.run([binary, "-machine", "help"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise EnvironmentUnavailable(f"QEMU binary '{binary}' not found") from None
    except subprocess.TimeoutExpired:
        raise EnvironmentUnavailable(f"'{binary} -machine help' did not finish in {timeout:g} s") \
            from None
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise EnvironmentUnavailable(f"'{binary} -machine help' failed: {why}")
    rows = parse_machine_help(done.stdout)
    if not rows:
        raise EnvironmentUnavailable(f"'{binary} -machine help' listed no machines")
    return rows


def _entries(machine: dict[str, Any]) -> list[Entry]:
    out = []
    for prop in machine.get("compat-props") or []:
        try:
            out.append((str(prop["qom-type"]), str(prop["property"]), str(prop["value"])))
        except (KeyError, TypeError):
            raise EnvironmentUnavailable(
                f"QEMU sent a malformed compat property for {machine.get('name')}") from None
    return out


def label_from_source(flat: dict[str, list[Entry]], facts: SourceFacts
                      ) -> tuple[dict[str, list[Entry]], dict[str, list[str]]]:
    """Cut each flat list along the source's arrays; the cut must be exact."""
    tables: dict[str, list[Entry]] = {}
    machines: dict[str, list[str]] = {}
    for name, entries in flat.items():
        src = facts.machines.get(name)
        if src is None:
            continue
        pos = 0
        for table in src.tables:
            if table not in facts.tables:
                raise DataError(f"source: {name} uses array {table}, which was not found")
            props = facts.tables[table].properties
            chunk = entries[pos : pos + len(props)]
            if len(chunk) != len(props):
                raise DataError(f"source and binary disagree on {name}: {table} runs past the end")
            for (_, got, _), want in zip(chunk, props):
                if want is not None and want != got:
                    raise DataError(f"source and binary disagree on {name}: {table} has "
                                    f"'{want}' where the binary has '{got}'")
            if table in tables and tables[table] != chunk:
                raise DataError(f"binary gives {table} different contents in {name}")
            tables[table] = chunk
            pos += len(props)
        if pos != len(entries):
            raise DataError(f"source and binary disagree on {name}: "
                            f"{len(entries) - pos} entries left over")
        machines[name] = list(src.tables)
    return tables, machines


def label_by_family(flat: dict[str, list[Entry]]) -> tuple[dict[str, list[Entry]], dict[str, list[str]]]:
    """Without sources: each type's own share is what it adds to the next newer one."""
    tables: dict[str, list[Entry]] = {}
    machines: dict[str, list[str]] = {}
    families: dict[str, list[str]] = {}
    for name in flat:
        parsed = parse_machine_name(name)
        families.setdefault(parsed.prefix if parsed.versioned else name, []).append(name)
    for prefix, names in families.items():
        names.sort(key=lambda n: parse_machine_name(n).version or parse_machine_name("x-0.0").version,
                   reverse=True)
        previous: list[Entry] = []
        chain: list[str] = []
        for index, name in enumerate(names):
            entries = flat[name]
            if index and entries[: len(previous)] == previous:
                own = entries[len(previous):]
                table_names = list(chain)
            else:  # newest of the family, or a list that does not extend its neighbour
                own = entries
                table_names = []
            table = f"{prefix}-defaults" if index == 0 and len(names) > 1 else f"compat@{name}"
            if own or not table_names:
                tables[table] = own
                table_names.append(table)
            machines[name] = table_names
            chain, previous = table_names, entries
    return tables, machines


async def _qom(session: QemuSession, types: list[dict[str, Any]],
               drivers: set[str]) -> dict[str, Any]:
    parents = {str(t["name"]): (str(t["parent"]) if t.get("parent") else None) for t in types}
    abstract = {str(t["name"]) for t in types if t.get("abstract")}

    def is_a(name: str | None, ancestor: str) -> bool:
        while name is not None:
            if name == ancestor:
                return True
            name = parents.get(name)
        return False

    # Devices describe themselves safely; of other objects ask only accelerators
    # and what compat properties name: qom-list-properties instantiates the
    # type, and some (colo-compare, qemu-text-console, ...) crash QEMU 10.0.
    roots = {"accel"} | {d for d in drivers if not is_a(d, "device")}
    props: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(parents):
        if name in abstract or not (is_a(name, "device") or any(is_a(name, r) for r in roots)):
            continue
        try:
            if is_a(name, "device"):
                listed = await session.device_properties(name)
            else:
                listed = await session.object_properties(name)
        except EnvironmentUnavailable as err:
            if "refused" in str(err):
                continue  # QEMU cannot describe this type; it stays without properties
            raise
        own: dict[str, list[Any]] = {}
        for p in listed:
            entry = [str(p.get("type", "")), p.get("default-value"), "default-value" in p]
            if p.get("description"):
                entry.append(str(p["description"]))
            own[str(p["name"])] = entry
        props[name] = own
    # An abstract type is described by what all its described subtypes share;
    # every type then keeps only what it adds or changes against its parent.
    merged = dict(props)
    for name in sorted(abstract, key=lambda n: -_depth(n, parents)):
        children = [merged[c] for c, parent in parents.items() if parent == name and c in merged]
        if children:
            merged[name] = {k: v for k, v in children[0].items()
                            if all(child.get(k) == v for child in children[1:])}
    own: dict[str, dict[str, list[Any]]] = {}
    for name, described in merged.items():
        ancestor = parents.get(name)
        while ancestor is not None and ancestor not in merged:
            ancestor = parents.get(ancestor)
        base = merged[ancestor] if ancestor else {}
        delta = {k: v for k, v in described.items() if base.get(k) != v}
        if delta:
            own[name] = delta
    return {
        "types": {n: [parents[n], n in abstract] for n in sorted(parents)},
        "properties": dict(sorted(own.items())),
    }


def _depth(name: str, parents: dict[str, str | None]) -> int:
    depth = 0
    node: str | None = name
    while node is not None:
        node = parents.get(node)
        depth += 1
    return depth


async def _query(binary: str, timeout: float) -> dict[str, Any]:
    async with QemuProcess(binary, IMPORT_ARGS, timeout=timeout) as process:
        session = QemuSession(process)
        version, package = await session.version()
        machines = await session.machines()
        types = await session.types()
        drivers = {str(p.get("qom-type")) for m in machines for p in m.get("compat-props") or []}
        qom = await _qom(session, types, drivers)
    return {"version": version, "package": package, "machines": machines, "qom": qom}


def import_build(binary: str, source: Path | None = None, timeout: float = 20.0,
                 command: Sequence[str] = ()) -> dict[str, Any]:
    """Everything the data file holds, read from ``binary`` (and ``source``)."""
    listing = _machine_help(binary, timeout)
    raw = asyncio.run(_query(binary, timeout))
    flat = {str(m["name"]): _entries(m) for m in raw["machines"]}
    listed = {row["name"] for row in listing}
    if set(flat) != listed:
        raise EnvironmentUnavailable("query-machines and -machine help list different machines")
    facts = read_source(source) if source is not None else None
    if facts is not None and facts.version != raw["version"]:
        raise DataError(f"source tree is QEMU {facts.version} but the binary is {raw['version']}")
    if facts is not None:
        tables, machine_tables = label_from_source(flat, facts)
        rest = {n: e for n, e in flat.items() if n not in machine_tables}
        more_tables, more_machines = label_by_family(rest)
        tables.update(more_tables)
        machine_tables.update(more_machines)
    else:
        tables, machine_tables = label_by_family(flat)
    machines: dict[str, Any] = {}
    for m in raw["machines"]:
        name = str(m["name"])
        src = facts.machines.get(name) if facts else None
        machines[name] = {
            "tables": machine_tables[name],
            "kernel_irqchip_split": src.kernel_irqchip_split if src else None,
            "default_cpu_type": m.get("default-cpu-type"),
            "cpu_max": m.get("cpu-max"),
        }
    return {
        "schema": SCHEMA,
        "qemu": {"version": raw["version"], "package": raw["package"], "binary": binary},
        "provenance": {
            "importer": f"machines {__version__}",
            "command": " ".join(command) if command else None,
            "labels": "source" if facts else "family",
            "source_version": facts.version if facts else None,
        },
        "listing": listing,
        "tables": {name: [list(e) for e in entries] for name, entries in tables.items()},
        "machines": machines,
        "accel_compat": {"kvm": [], "tcg": []},
        "qom": raw["qom"],
    }
