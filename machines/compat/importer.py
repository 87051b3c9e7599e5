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
import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from machines import __version__
from machines.compat.csource import SourceFacts, read_options, read_source
from machines.errors import DataError, EnvironmentUnavailable
from machines.naming import parse_machine_name, version_key
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession, QmpCommandError

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
        # Its own session, so a timeout kills whatever the binary started too.
        child = subprocess.Popen([binary, "-machine", "help"], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 start_new_session=True)
    except FileNotFoundError:
        raise EnvironmentUnavailable(f"QEMU binary '{binary}' not found") from None
    except OSError as err:
        raise EnvironmentUnavailable(f"QEMU binary '{binary}': {err.strerror}") from None
    with child:
        try:
            out, errout = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
            raise EnvironmentUnavailable(
                f"'{binary} -machine help' did not finish in {timeout:g} s") from None
    stdout, stderr = out.decode("utf-8", "replace"), errout.decode("utf-8", "replace")
    if child.returncode != 0:
        why = (stderr.strip().splitlines() or ["no message"])[-1]
        raise EnvironmentUnavailable(f"'{binary} -machine help' failed: {why}")
    rows = parse_machine_help(stdout)
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
            for (_, got, _), want in zip(chunk, props, strict=True):
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


def label_by_family(flat: dict[str, list[Entry]]
                    ) -> tuple[dict[str, list[Entry]], dict[str, list[str]]]:
    """Without sources: each type's own share is what it adds to the next newer one."""
    tables: dict[str, list[Entry]] = {}
    machines: dict[str, list[str]] = {}
    families: dict[str, list[str]] = {}
    for name in flat:
        parsed = parse_machine_name(name)
        families.setdefault(parsed.prefix if parsed.versioned else name, []).append(name)
    for prefix, names in families.items():
        names.sort(key=version_key, reverse=True)
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
    _check_tree(parents)

    def is_a(name: str | None, ancestor: str) -> bool:
        while name is not None:
            if name == ancestor:
                return True
            name = parents.get(name)
        return False

    # Devices describe themselves safely; of other objects ask only accelerators
    # and what compat properties name: qom-list-properties instantiates the
    # type, and some (colo-compare, qemu-text-console, ...) crash QEMU 10.0.
    roots = {"accel", "machine"} | {d for d in drivers if not is_a(d, "device")}
    props: dict[str, dict[str, list[Any]]] = {}
    for name in sorted(parents):
        if name in abstract or not (is_a(name, "device") or any(is_a(name, r) for r in roots)):
            continue
        try:
            if is_a(name, "device"):
                listed = await session.device_properties(name)
            else:
                listed = await session.object_properties(name)
        except QmpCommandError:
            continue  # QEMU cannot describe this type; it stays without properties
        described: dict[str, list[Any]] = {}
        for p in listed:
            entry = [str(p.get("type", "")), p.get("default-value"), "default-value" in p]
            if p.get("description"):
                entry.append(str(p["description"]))
            described[str(p["name"])] = entry
        props[name] = described
    return {
        "types": {n: [parents[n], n in abstract] for n in sorted(parents)},
        "properties": share_up(props, parents, abstract),
    }


def _check_tree(parents: dict[str, str | None]) -> None:
    """QOM types form a tree: a parent loop means the reply is not from QEMU."""
    settled: set[str] = set()
    for name in parents:
        seen: set[str] = set()
        node: str | None = name
        while node is not None and node not in settled:
            if node in seen:
                raise EnvironmentUnavailable(
                    f"QEMU sent an unexpected reply to 'qom-list-types': type '{node}' "
                    "is its own ancestor")
            seen.add(node)
            node = parents.get(node)
        settled |= seen


def share_up(described: dict[str, dict[str, Any]], parents: dict[str, str | None],
             abstract: set[str], keep_empty: bool = False) -> dict[str, dict[str, Any]]:
    """Store per type only what it adds or changes against its parent.

    An abstract type is described by what all its described subtypes share;
    the loader merges a type's entries along its ancestry to get them back.
    With ``keep_empty``, every described type keeps an entry (possibly empty),
    so the loader can tell described types from the rest.
    """
    merged: dict[str, dict[str, Any]] = dict(described)
    for name in sorted(abstract, key=lambda n: -_depth(n, parents)):
        children = [merged[c] for c, parent in parents.items() if parent == name and c in merged]
        if children:
            merged[name] = {k: v for k, v in children[0].items()
                            if all(k in child and child[k] == v for child in children[1:])}
    own: dict[str, dict[str, Any]] = {}
    for name, values in merged.items():
        ancestor = parents.get(name)
        while ancestor is not None and ancestor not in merged:
            ancestor = parents.get(ancestor)
        base = merged[ancestor] if ancestor else {}
        delta = {k: v for k, v in values.items() if k not in base or base[k] != v}
        if delta or (keep_empty and name in described):
            own[name] = delta
    return dict(sorted(own.items()))


def _depth(name: str, parents: dict[str, str | None]) -> int:
    depth = 0
    node: str | None = name
    while node is not None:
        node = parents.get(node)
        depth += 1
    return depth


# Devices created (besides each machine's own) to learn what instances look
# like: common ones that need no backend.  Values read from them say what a
# property is when nothing but QEMU itself set it.
INSTANCE_DEVICES = (
    "virtio-net-pci", "e1000", "e1000e", "vmxnet3", "virtio-balloon-pci", "virtio-rng-pci",
    "virtio-rng-pci-transitional", "virtio-serial-pci", "virtio-scsi-pci", "VGA",
    "secondary-vga", "bochs-display", "virtio-gpu-pci", "pvpanic", "pvscsi", "qemu-xhci",
    "usb-kbd", "usb-mouse", "usb-tablet", "virtio-keyboard-pci", "virtio-mouse-pci",
    "virtio-tablet-pci", "pci-bridge,chassis_nr=1", "nvme,serial=machines",
)


MAX_OBJECTS = 100_000  # a paused QEMU 10.0 VM has a few hundred; more means a broken peer


async def _walk(session: QemuSession) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    pending = ["/machine"]
    while pending:
        if len(found) > MAX_OBJECTS:
            raise EnvironmentUnavailable(f"QEMU listed more than {MAX_OBJECTS} objects "
                                         "under /machine")
        path = pending.pop()
        for child in await session.qom_list(path):
            kind = str(child.get("type", ""))
            if kind.startswith("child<"):
                found.append((f"{path}/{child['name']}", kind[6:-1]))
                pending.append(f"{path}/{child['name']}")
    return found


async def _read_instances(session: QemuSession, qom: dict[str, Any], wanted: set[str] | None,
                          skip: set[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """Property values of the first object of each type, where they say something.

    Kept: properties with no static default (the object sets them itself),
    and properties whose value differs from the static default (QEMU changed
    it when creating or realizing the object).  ``skip`` holds driver/property
    pairs the host machine's own compat properties touch.
    """
    types = qom["types"]

    def ancestry(name: str) -> list[str]:
        chain: list[str] = []
        node: str | None = name
        while node is not None and node not in chain:
            chain.append(node)
            node = types.get(node, [None])[0]
        return chain

    def static(name: str) -> dict[str, list[Any]]:
        merged: dict[str, list[Any]] = {}
        for node in reversed(ancestry(name)):
            merged.update(qom["properties"].get(node, {}))
        return merged

    out: dict[str, dict[str, Any]] = {}
    for path, typename in await _walk(session):
        if typename in out or typename not in types or (wanted and typename not in wanted):
            continue
        if "device" not in ancestry(typename):
            continue
        props = static(typename)
        values: dict[str, Any] = {}
        chain = set(ancestry(typename))
        for name, (kind, default, has_default, *_rest) in props.items():
            if kind.startswith(("link<", "child<")):
                continue
            if any((d, name) in skip for d in chain):
                continue
            try:
                value = await session.qom_get(path, name)
            except QmpCommandError:
                continue  # write-only
            if not has_default or value != default:
                values[name] = value
        out[typename] = values
    return out


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


async def _instances(binary: str, timeout: float, machines: list[dict[str, Any]],
                     qom: dict[str, Any], drivers: set[str], progress: Progress = _quiet
                     ) -> dict[str, dict[str, Any]]:
    """What objects look like once QEMU created them, on machines that add nothing.

    Many properties get their value in instance_init or realize (CPU model
    features, ROM file names, "auto" settings), so the static defaults from
    device-list-properties do not tell the whole story.  Each family's newest
    machine type (its compat properties are skipped where they apply) hosts
    the common devices; each CPU model that compat properties or machine
    defaults name is created on a machine type without compat properties.
    """
    types = qom["types"]
    entries = {str(m["name"]): [(str(p["qom-type"]), str(p["property"]))
                                for p in m.get("compat-props") or []] for m in machines}
    newest: dict[str, str] = {}
    for name in entries:
        parsed = parse_machine_name(name)
        if parsed.versioned and (parsed.prefix not in newest
                                 or version_key(name) > version_key(newest[parsed.prefix])):
            newest[parsed.prefix] = name
    out: dict[str, dict[str, Any]] = {}
    devices = [a for d in INSTANCE_DEVICES for a in ("-device", d)]
    for host in sorted(newest.values()):
        progress(f"devices as created on {host}")
        args = ("-machine", host, "-accel", "tcg", "-S", *devices, *BASE_ARGS)
        async with QemuProcess(binary, args, timeout=timeout) as process:
            found = await _read_instances(QemuSession(process), qom, None, set(entries[host]))
        for typename, values in found.items():
            out.setdefault(typename, values)
    clean = next((n for n, e in entries.items() if not e and parse_machine_name(n).versioned), None)
    cpus = {str(m["default-cpu-type"]) for m in machines if m.get("default-cpu-type")}
    cpus |= {d for d in drivers if d in types and not types[d][1] and d.endswith("-x86_64-cpu")}
    for n, cpu_type in enumerate(sorted(cpus) if clean else [], 1):
        model = cpu_type.removesuffix("-x86_64-cpu")
        progress(f"CPU model {model} ({n}/{len(cpus)})")
        args = ("-machine", str(clean), "-accel", "tcg", "-S", "-cpu", model, *BASE_ARGS)
        process = QemuProcess(binary, args, timeout=timeout)
        try:
            await process.__aenter__()
        except EnvironmentUnavailable as err:
            if "exited at once" in str(err):
                continue  # e.g. 'host' needs KVM; its values depend on the host anyway
            raise
        try:  # started above already: 'async with' would start a second QEMU
            found = await _read_instances(QemuSession(process), qom, {cpu_type}, set())
        finally:
            await process.__aexit__(None, None, None)
        out.update(found)
    return dict(sorted(out.items()))


async def describe(session: QemuSession) -> dict[str, Any]:
    """What one QEMU says about itself: version, machines, QOM types and properties."""
    version, package = await session.version()
    machines = await session.machines()
    types = await session.types()
    drivers = {str(p.get("qom-type")) for m in machines for p in m.get("compat-props") or []}
    qom = await _qom(session, types, drivers)
    return {"version": version, "package": package, "machines": machines, "qom": qom,
            "drivers": drivers}


async def _query(binary: str, timeout: float, progress: Progress = _quiet) -> dict[str, Any]:
    progress("machine types and QOM properties")
    async with QemuProcess(binary, IMPORT_ARGS, timeout=timeout) as process:
        described = await describe(QemuSession(process))
    version, package, machines, qom, drivers = (described[k] for k in (
        "version", "package", "machines", "qom", "drivers"))
    parents = {n: v[0] for n, v in qom["types"].items()}
    abstract = {n for n, v in qom["types"].items() if v[1]}
    qom["instances"] = share_up(await _instances(binary, timeout, machines, qom, drivers,
                                                 progress),
                                parents, abstract, keep_empty=True)
    return {"version": version, "package": package, "machines": machines, "qom": qom}


def import_build(binary: str, source: Path | None = None, timeout: float = 20.0,
                 command: Sequence[str] = (), progress: Progress = _quiet) -> dict[str, Any]:
    """Everything the data file holds, read from ``binary`` (and ``source``).

    ``progress`` hears each step as it starts (a run takes 10-15 s).
    """
    progress(f"{binary} -machine help")
    listing = _machine_help(binary, timeout)
    raw = asyncio.run(_query(binary, timeout, progress))
    facts = read_source(source) if source is not None else None
    options = read_options(source) if source is not None else None
    return assemble(binary, listing, raw, facts, options, command)


def assemble(binary: str, listing: list[dict[str, Any]], raw: dict[str, Any],
             facts: SourceFacts | None = None, options: dict[str, bool] | None = None,
             command: Sequence[str] = ()) -> dict[str, Any]:
    """The data file from what QEMU said (``raw``) and, optionally, its sources."""
    flat = {str(m["name"]): _entries(m) for m in raw["machines"]}
    listed = {row["name"] for row in listing}
    if set(flat) != listed:
        raise EnvironmentUnavailable("query-machines and -machine help list different machines")
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
        # AccelClass compat_props: QMP does not show them; for kvm and tcg
        # they are empty in every QEMU so far (only xen has any).
        "accel_compat": {"kvm": [], "tcg": []},
        "options": options,
        "qom": raw["qom"],
    }
