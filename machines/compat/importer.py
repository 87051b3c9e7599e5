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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from machines import __version__
from machines.errors import DataError, EnvironmentUnavailable
from machines.naming import parse_machine_name, version_key
from machines.qmp import BASE_ARGS, QemuCommand, QemuProcess, QemuSession, QmpCommandError

SCHEMA = "machines/qemu-build/v1"
IMPORT_ARGS = ("-machine", "none", "-accel", "tcg", *BASE_ARGS)

Entry = tuple[str, str, str]
# A source-arrays document (machines/source-arrays/v1): "tables" maps each
# GlobalProperty array to its [driver, property, value] entries, "machines"
# each pc type to {"tables": [arrays in chain order], "kernel_irqchip_split"}.
SourceArrays = dict[str, Any]


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


def _machine_help(qemu: QemuCommand, timeout: float) -> list[dict[str, Any]]:
    binary = qemu.name
    try:
        # Its own session, so a timeout kills whatever the binary started too.
        child = subprocess.Popen([*qemu.resolved(), "-machine", "help"],
                                 stdin=subprocess.DEVNULL,
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


def label_from_source(flat: dict[str, list[Entry]], source: SourceArrays
                      ) -> tuple[dict[str, list[Entry]], dict[str, list[str]]]:
    """Cut each flat list along the source's arrays; the cut must be exact."""
    tables: dict[str, list[Entry]] = {}
    machines: dict[str, list[str]] = {}
    for name, entries in flat.items():
        src = source["machines"].get(name)
        if src is None:
            continue
        pos = 0
        for table in src["tables"]:
            if table not in source["tables"]:
                raise DataError(f"source: {name} uses array {table}, which was not found")
            want = [tuple(e) for e in source["tables"][table]]
            chunk = entries[pos : pos + len(want)]
            if len(chunk) != len(want):
                raise DataError(f"source and binary disagree on {name}: {table} runs past the end")
            for got, expected in zip(chunk, want, strict=True):
                if got != expected:
                    raise DataError(f"source and binary disagree on {name}: {table} has "
                                    f"{_show(expected)} where the binary has {_show(got)}")
            if table in tables and tables[table] != chunk:
                raise DataError(f"binary gives {table} different contents in {name}")
            tables[table] = chunk
            pos += len(want)
        if pos != len(entries):
            raise DataError(f"source and binary disagree on {name}: "
                            f"{len(entries) - pos} entries left over")
        machines[name] = list(src["tables"])
    return tables, machines


def _show(entry: Sequence[str]) -> str:
    return "{ " + ", ".join(f'"{x}"' for x in entry) + " }"


def flat_from_source(source: SourceArrays, names: Sequence[str]) -> dict[str, list[Entry]]:
    """What ``query-machines`` would list for builds older than 9.1, which omit
    ``compat-props``: each pc type's arrays, concatenated in its chain's order."""
    flat: dict[str, list[Entry]] = {}
    for name in names:
        src = source["machines"].get(name)
        if src is not None:
            flat[name] = [tuple(e) for t in src["tables"]
                          for e in source["tables"][t]]
    return flat


def label_with_known(flat: dict[str, list[Entry]], known: Mapping[str, Sequence[Entry]]
                     ) -> tuple[dict[str, list[Entry]], dict[str, list[str]]]:
    """Name a build's arrays without its own source, from arrays other sources name.

    Each pc type's own share (what it adds to the next newer type) is, in
    QEMU, ``hw_compat_X_Y`` then ``pc_compat_X_Y``; where a known array of
    that name starts (or ends) the share, the cut is made there; otherwise
    the share keeps the combined name ``hw+pc_compat_X_Y``.  The family base
    is ``pc_q35_compat_defaults`` / ``pc_piix_compat_defaults``.  Anything
    the families disagree on stays labelled by family.
    """
    tables, machines = label_by_family(flat)
    renamed: dict[str, list[Entry]] = {}
    rename: dict[str, list[str]] = {}
    for table, entries in tables.items():
        parts = _name_share(table, entries, known)
        if parts is None:
            continue
        for part, chunk in parts:
            if part in renamed and renamed[part] != chunk:
                return tables, machines  # families disagree: keep the family labels
            renamed[part] = chunk
        rename[table] = [part for part, _ in parts]
    out_tables = {t: e for t, e in tables.items() if t not in rename}
    out_tables.update(renamed)
    out_machines = {m: [p for t in ts for p in rename.get(t, [t])] for m, ts in machines.items()}
    return out_tables, out_machines


def _prefix_related(a: Sequence[Entry], b: Sequence[Entry]) -> bool:
    n = min(len(a), len(b))
    return list(a[:n]) == list(b[:n])


_FAMILY_DEFAULTS = {"pc-q35-defaults": "pc_q35_compat_defaults",
                    "pc-i440fx-defaults": "pc_piix_compat_defaults"}


def _name_share(table: str, entries: list[Entry], known: Mapping[str, Sequence[Entry]]
                ) -> list[tuple[str, list[Entry]]] | None:
    if table in _FAMILY_DEFAULTS:
        return [(_FAMILY_DEFAULTS[table], entries)]
    match = re.fullmatch(r"compat@pc-(?:q35|i440fx)-(\d+)\.(\d+)", table)
    if not match:
        return None
    suffix = f"{match[1]}_{match[2]}"
    hw, pc = f"hw_compat_{suffix}", f"pc_compat_{suffix}"
    known_hw = list(known.get(hw, ()))
    known_pc = list(known.get(pc, ()))
    if hw in known and pc in known:
        # Arrays grow (or lose an entry) at their end: accept a cut where each
        # side and its known namesake are one a prefix of the other.
        for cut in (len(known_hw), len(entries) - len(known_pc)):
            if 0 <= cut <= len(entries) and _prefix_related(entries[:cut], known_hw) \
                    and _prefix_related(entries[cut:], known_pc):
                return [(hw, entries[:cut]), (pc, entries[cut:])]
    return [(f"hw+pc_compat_{suffix}", entries)]


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


Relaunch = Callable[[], Awaitable[QemuSession]]


async def _qom(session: QemuSession, types: list[dict[str, Any]],
               drivers: set[str], relaunch: Relaunch | None = None) -> dict[str, Any]:
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
    crashed: list[str] = []
    for name in sorted(parents):
        if name in abstract or not (is_a(name, "device") or any(is_a(name, r) for r in roots)):
            continue
        try:
            if is_a(name, "device"):
                listed = await session.device_properties(name)
                # device-list-properties leaves out class properties that only
                # qom-list-properties shows (x86_64-cpu legacy-cache, apic
                # legacy-instance-id, ...), though compat tables set them.
                # QEMU 7.2 cannot list module types (qxl, ...) that way: keep
                # what device-list-properties said.
                with contextlib.suppress(QmpCommandError):
                    shown = {str(p["name"]) for p in listed}
                    listed += [p for p in await session.object_properties(name)
                               if str(p["name"]) not in shown and p["name"] not in _QOM_BASICS]
            else:
                listed = await session.object_properties(name)
        except QmpCommandError:
            continue  # QEMU cannot describe this type; it stays without properties
        except EnvironmentUnavailable:
            # Some QEMUs die describing a type (microvm-machine in 5.2 and 7.2):
            # start a fresh one and go on without that type.
            if relaunch is None:
                raise
            crashed.append(name)
            session = await relaunch()
            continue
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
        **({"undescribed": crashed} if crashed else {}),
    }


# What every object or device has, which device-list-properties leaves out on
# purpose: not settable by -device or -global, so not part of the model.
_QOM_BASICS = frozenset({"type", "realized", "hotpluggable", "hotplugged", "parent_bus"})


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


async def _instances(binary: QemuCommand, timeout: float, machines: list[dict[str, Any]],
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
        # Only the PC families host the sample devices (xenfv-4.2 in 5.2 wants Xen).
        if parsed.versioned and parsed.prefix.startswith("pc-") and (parsed.prefix not in newest
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
    # CPU models are created on the newest pc type without compat properties
    # (a QEMU before 9.1 lists none for any type: its newest is still clean).
    clean = next((n for n in sorted(newest.values()) if not entries[n]), None)
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


async def describe(session: QemuSession, relaunch: Relaunch | None = None,
                   drivers: Iterable[str] = ()) -> dict[str, Any]:
    """What one QEMU says about itself: version, machines, QOM types and properties.

    ``relaunch`` starts a fresh QEMU when one dies describing a type;
    ``drivers`` are more types that compat arrays name (from the source, for
    a QEMU that does not list compat-props).
    """
    version, package = await session.version()
    machines = await session.machines()
    types = await session.types()
    named = {str(p.get("qom-type")) for m in machines for p in m.get("compat-props") or []}
    drivers = named | set(drivers)
    qom = await _qom(session, types, drivers, relaunch)
    return {"version": version, "package": package, "machines": machines, "qom": qom,
            "drivers": drivers}


async def _query(binary: QemuCommand, timeout: float, drivers: Iterable[str] = (),
                 progress: Progress = _quiet) -> dict[str, Any]:
    progress("machine types and QOM properties")
    async with contextlib.AsyncExitStack() as stack:
        async def launch() -> QemuSession:
            process = QemuProcess(binary, IMPORT_ARGS, timeout=timeout)
            await stack.enter_async_context(process)
            return QemuSession(process)

        described = await describe(await launch(), launch, drivers)
    version, package, machines, qom, named = (described[k] for k in (
        "version", "package", "machines", "qom", "drivers"))
    parents = {n: v[0] for n, v in qom["types"].items()}
    abstract = {n for n, v in qom["types"].items() if v[1]}
    qom["instances"] = share_up(await _instances(binary, timeout, machines, qom, named,
                                                 progress),
                                parents, abstract, keep_empty=True)
    return {"version": version, "package": package, "machines": machines, "qom": qom}


def import_build(qemu: str | QemuCommand, source: Path | None = None, timeout: float = 20.0,
                 command: Sequence[str] = (), known: Sequence[Path] = (),
                 progress: Progress = _quiet) -> dict[str, Any]:
    """Everything the data file holds, read from ``qemu`` (and ``source``).

    ``source`` is a QEMU source tree or a source-arrays file of the same
    version (``python -m machines.compat.csource``); ``known`` are such files
    (or imports) of other versions, used only to name arrays.  ``progress``
    hears each step as it starts (a run takes 5-15 s).
    """
    binary = QemuCommand.of(qemu)
    arrays = options = None
    if source is not None:
        arrays, options = load_source(source)
    names = load_known(known)
    progress(f"{binary.name} -machine help")
    listing = _machine_help(binary, timeout)
    drivers = {e[0] for t in (arrays or {}).get("tables", {}).values() for e in t}
    raw = asyncio.run(_query(binary, timeout, drivers, progress))
    return assemble(binary.name, listing, raw, arrays, options, command, names)


def load_source(source: Path) -> tuple[SourceArrays, dict[str, bool] | None]:
    """A source tree (arrays and options) or a source-arrays file (arrays only)."""
    from machines.schema import check_schema, load_json

    if source.is_dir():
        from machines.compat.csource import read_options, source_arrays_doc

        return source_arrays_doc(source), read_options(source)
    doc = load_json(str(source), "source arrays")
    check_schema(doc, "source-arrays", 1, where=str(source))
    return doc, None


def load_known(paths: Sequence[Path]) -> dict[str, list[Entry]]:
    """Named arrays from source-arrays files or imports, for :func:`label_with_known`."""
    from machines.schema import load_json

    known: dict[str, list[Entry]] = {}
    for path in paths:
        doc = load_json(str(path), "known arrays")
        for name, entries in (doc.get("tables") or {}).items():
            if not name.startswith("compat@") and not name.endswith("-defaults"):
                known[name] = [tuple(e) for e in entries]
    return known


def assemble(binary: str, listing: list[dict[str, Any]], raw: dict[str, Any],
             source: SourceArrays | None = None, options: dict[str, bool] | None = None,
             command: Sequence[str] = (), known: Mapping[str, Sequence[Entry]] | None = None
             ) -> dict[str, Any]:
    """The data file from what QEMU said (``raw``) and, optionally, its sources."""
    flat = {str(m["name"]): _entries(m) for m in raw["machines"]}
    listed = {row["name"] for row in listing}
    if set(flat) != listed:
        raise EnvironmentUnavailable("query-machines and -machine help list different machines")
    if source is not None and source["qemu"] != raw["version"]:
        raise DataError(f"source is QEMU {source['qemu']} but the binary is {raw['version']}")
    # QEMU before 9.1 does not list compat-props: the source's arrays are the
    # only record, checked below against the properties the binary has.
    from_source = not any("compat-props" in m for m in raw["machines"])
    if from_source:
        if source is None:
            raise DataError(f"QEMU {raw['version']} does not report compat-props (added in "
                            "QEMU 9.1): give --source with its source tree or source arrays")
        flat.update(flat_from_source(source, list(flat)))
        check_against_qom(flat, raw["qom"])
    if source is not None:
        tables, machine_tables = label_from_source(flat, source)
        rest = {n: e for n, e in flat.items() if n not in machine_tables}
        more_tables, more_machines = label_by_family(rest)
        tables.update(more_tables)
        machine_tables.update(more_machines)
        labels = "source"
    elif known:
        tables, machine_tables = label_with_known(flat, known)
        labels = "known"
    else:
        tables, machine_tables = label_by_family(flat)
        labels = "family"
    machines: dict[str, Any] = {}
    for m in raw["machines"]:
        name = str(m["name"])
        src = source["machines"].get(name) if source else None
        machines[name] = {
            "tables": machine_tables[name],
            "kernel_irqchip_split": src["kernel_irqchip_split"] if src else None,
            "default_cpu_type": m.get("default-cpu-type"),
            "cpu_max": m.get("cpu-max"),
        }
    return {
        "schema": SCHEMA,
        "qemu": {"version": raw["version"], "package": raw["package"], "binary": binary},
        "provenance": {
            "importer": f"machines {__version__}",
            "command": " ".join(command) if command else None,
            "labels": labels,
            "compat_props": "source" if from_source else "query-machines",
            "source_version": source["qemu"] if source else None,
            "source_package": source.get("source") if source else None,
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


def check_against_qom(flat: Mapping[str, Sequence[Entry]], qom: Mapping[str, Any]) -> None:
    """Every source entry for a type the binary has names a property it has.

    Types the binary lacks are fine (hw_compat arrays name arm-cpu and other
    targets' devices; QEMU skips them too).  Properties are looked up along
    the type's ancestry, as a global reaches subtypes.
    """
    types: dict[str, list[Any]] = qom["types"]
    props: dict[str, dict[str, Any]] = qom["properties"]
    below: dict[str, list[str]] = {}
    for name, (parent, _abstract) in types.items():
        if parent:
            below.setdefault(parent, []).append(name)

    def has(typename: str, prop: str) -> bool:
        node: str | None = typename
        while node is not None:  # the type or an ancestor declares it
            if prop in props.get(node, {}):
                return True
            node = types.get(node, [None])[0]
        pending = list(below.get(typename, []))
        while pending:  # an abstract type's property may live on its subtypes
            node = pending.pop()
            if prop in props.get(node, {}):
                return True
            pending.extend(below.get(node, []))
        return False

    for machine, entries in flat.items():
        for driver, prop, _value in entries:
            if driver in types and not has(driver, prop):
                raise DataError(f"source arrays of {machine} set {driver}.{prop}, which the "
                                "binary does not have")
