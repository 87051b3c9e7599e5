"""Which QEMU builds this tool knows, and loading them.

* the model's releases ``10.0``, ``10.1`` (10.1.0), ``10.1.2``, ``10.2``,
  ``10.2.2``, ``11.0`` and ``11.1`` (the newest, and the default);
* real binaries read by ``machines import``: Debian's ``5.2``, ``7.2``,
  ``10.0.2``, ``10.0.13`` and ``11.1.3`` ship, and any import file can be
  named by its path.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from machines.build import Build, help_order, imported_machines
from machines.compat.tables import CompatTable, GlobalProperty
from machines.errors import UsageError
from machines.machine import MachineType
from machines.naming import parse_machine_name, version_key
from machines.qom import PropertyInfo, QomTypes
from machines.schema import check_schema, expect, get, load_json

DATA = os.path.join(os.path.dirname(__file__), "compat", "data")  # no pathlib: cold start
MODEL_RELEASES = ("10.0", "10.1", "10.1.2", "10.2", "10.2.2", "11.0", "11.1")
NEWEST = "11.1"
# Real builds, by the name they go by; each file records its Debian package.
IMPORTED = {name: os.path.join(DATA, f"qemu-{name}.json")
            for name in ("5.2", "7.2", "10.0.2", "10.0.13", "11.1.3")}
# Full versions of the imported builds whose short name differs.
VERSION_NAMES = {"5.2.0": "5.2", "7.2.22": "7.2", "10.1.0": "10.1", "10.2.0": "10.2",
                 "11.0.0": "11.0", "11.1.0": "11.1"}
BUILD_SCHEMA = ("qemu-build", 1)
MODEL_SCHEMA = ("model", 1)


def build_names() -> list[str]:
    return [*MODEL_RELEASES, *IMPORTED]


def get_build(name: str | None = None) -> Build:
    """A build by release name (``10.2``), imported name (``10.0.2``) or file path."""
    name = name or NEWEST
    if "+" in name:  # BUILD+DESIGN: a SEOIB design laid over a build (machines/i386/designs.py)
        from machines.i386.designs import overlay, split_build_name

        base, design = split_build_name(name)
        if design is not None:
            return overlay(get_build(base), design)
    if name in MODEL_RELEASES:
        return _model_build(name)
    name = VERSION_NAMES.get(name, name)
    if name in MODEL_RELEASES:
        return _model_build(name)
    if name in IMPORTED:
        return _imported_build(str(IMPORTED[name]))
    if name.endswith(".json") or os.path.exists(name):
        return _imported_build(os.path.realpath(name))
    raise UsageError(f"unknown QEMU build '{name}'; known: {', '.join(build_names())} "
                     "or the path of a file written by 'machines import'")


@cache
def _load_import(path: str) -> dict[str, Any]:
    # The files shipped in the package are checked by the test suite like
    # code; only files from elsewhere pay for the field-by-field check.
    if os.path.dirname(path) == os.path.realpath(DATA):
        # the packed form: the QOM tables are decoded per type, when asked for
        from machines.compat.packed import load_shipped

        return check_import(load_shipped(path, "QEMU build data"), path, deep=False)
    return check_import(load_json(path, "QEMU build data"), path)


def check_import(doc: Any, path: str, deep: bool = True) -> dict[str, Any]:
    """Validate a ``machines import`` document (``path`` names it in messages)."""
    check_schema(doc, *BUILD_SCHEMA, where=path)
    if not deep:
        return doc  # type: ignore[no-any-return]
    for key, kind in (("qemu", dict), ("listing", list), ("tables", dict), ("machines", dict),
                      ("qom", dict)):
        get(doc, key, kind, path)
    for name, entries in doc["tables"].items():
        for i, entry in enumerate(expect(entries, list, f"tables.{name}", path)):
            ok = isinstance(entry, list) and len(entry) == 3
            if not ok or not all(isinstance(x, str) for x in entry):
                raise UsageError(
                    f"{path}: field tables.{name}[{i}] must be [driver, property, value]")
    for name, info in doc["machines"].items():
        expect(info, dict, f"machines.{name}", path)
        for i, table in enumerate(get(info, "tables", list, path)):
            if table not in doc["tables"]:
                raise UsageError(f"{path}: field machines.{name}.tables[{i}] names unknown "
                                 f"array {table!r}")
    for i, row in enumerate(doc["listing"]):
        expect(row, dict, f"listing[{i}]", path)
        expect(row.get("name"), str, f"listing[{i}].name", path)
    return doc  # type: ignore[no-any-return]


def _qom_from(doc: dict[str, Any]) -> QomTypes:
    qom = doc["qom"]
    return QomTypes(qom.get("types", {}), qom.get("properties", {}), qom.get("instances", {}))


def _tables_from(doc: dict[str, Any]) -> dict[str, CompatTable]:
    return {name: CompatTable(name, tuple(GlobalProperty(*e) for e in entries))
            for name, entries in doc["tables"].items()}


@cache
def _imported_build(path: str) -> Build:
    doc = _load_import(path)
    shipped = next((n for n, p in IMPORTED.items() if os.path.realpath(p) == path), None)
    return build_from_import(doc, shipped or path)


def build_from_import(doc: dict[str, Any], name: str) -> Build:
    """A Build from a validated import document (a file, or one embedded in a host profile)."""
    version = str(doc["qemu"]["version"])
    from machines.i386.pc import FAMILIES


    machines = imported_machines(name, doc, _tables_from(doc),
                                 {f.prefix: f.family for f in FAMILIES})
    numbers = tuple(int(x) for x in version.split(".") if x.isdigit())
    return Build(
        name, numbers, "imported", machines,
        [row["name"] for row in doc["listing"]], lambda: _qom_from(doc),
        package=doc["qemu"].get("package", ""),
        accel_compat={k: [GlobalProperty(*e) for e in v]
                      for k, v in doc.get("accel_compat", {}).items()},
        provenance=doc.get("provenance", {}),
    )


@cache
def model_doc() -> dict[str, Any]:
    """The generated model data (compat arrays per release, options), decoded once."""
    from machines.compat.packed import load_shipped

    path = os.path.join(DATA, "model.json")
    doc: dict[str, Any] = load_shipped(path, "model data")
    check_schema(doc, *MODEL_SCHEMA, where=str(path))
    return doc


def _model_tables(release: str) -> dict[str, CompatTable]:
    tables = {}
    for name, entries in model_doc()["tables"].items():
        tables[name] = CompatTable(name, tuple(
            GlobalProperty(e["driver"], e["property"], e["value"], e["optional"])
            for e in entries if release in e["releases"]))
    return tables


def _model_qom(release: str) -> QomTypes:
    base_name = model_doc()["qom_base"][release]
    base = _load_import(str(IMPORTED[base_name]))
    qom = _qom_from(base)
    # Machine types newer than the base build get the QOM type of their family's
    # newest one there (their machine properties are the same).
    for name, family in _model_build(release).machines.families.items():
        typename = f"{name}-machine"
        if typename not in qom and family:
            prefix = parse_machine_name(name).prefix
            siblings = [m for m in base["machines"] if m.startswith(prefix + "-")
                        and f"{m}-machine" in qom]
            newest = max(siblings, key=version_key)
            qom.add_type(typename, like=f"{newest}-machine")
    # Properties added after the base build, up to this release (model-properties.json).
    order = MODEL_RELEASES.index(release)
    for prop in model_doc()["properties"]:
        if base_name == "10.0.2" and MODEL_RELEASES.index(prop["release"]) <= order:
            qom.add_property(prop["type"], PropertyInfo(
                prop["property"], prop["qapi_type"], prop["default"], True,
                prop.get("description", ""), prop["release"]))
    return qom


@cache
def _model_build(release: str) -> Build:
    from machines.i386.pc import pc_machines

    numbers = tuple(int(x) for x in release.split("."))
    tables = _model_tables(release)
    machines = pc_machines(release, numbers, tables)
    # Machines outside the PC families (microvm, isapc, none, x-remote) are
    # carried from the imported base build, in the places its listing had them.
    others = model_doc()["other_machines"][model_doc()["qom_base"][release]]
    before = [row["name"] for row in others if row["before_pc"]]
    after = [row["name"] for row in others if not row["before_pc"]]
    for row in others:
        name = row["name"]
        machines.add_class(type(name.replace("-", "_").capitalize(), (MachineType,), {
            "name": name, "build": release, "desc": row["desc"], "prefix": name,
            "deprecated": bool(row["deprecated"]),
            # microvm runs a split irqchip unless told otherwise (as the RFC oracle shows)
            "default_kernel_irqchip_split": True if name == "microvm" else None,
            "default_cpu_type": row["default_cpu_type"],
            "own_compat": tuple(tables[t] for t in row["tables"]),
            "__doc__": f"{name} as QEMU {release} defines it "
                       f"(as in {model_doc()['qom_base'][release]}).",
        }))
    return Build(
        release, numbers, "model", machines,
        help_order(machines.families, before, after), lambda: _model_qom(release),
        accel_compat={"kvm": [], "tcg": []},
        provenance=model_doc().get("provenance", {}),
    )


def known_elsewhere(name: str) -> str:
    """Where a name the asked build lacks is known: "not available since QEMU 10.1"."""
    last = None
    for release in MODEL_RELEASES:
        machine = _model_build(release).machines.get(name)
        if machine is not None and machine.registered:
            last = release
    if last is None:
        return ""
    later = MODEL_RELEASES[MODEL_RELEASES.index(last) + 1:]
    if not later:
        return ""
    gone = later[0]
    in_source = name in _model_build(gone).machines
    how = ("no longer registered: machine types are withdrawn 6 years after their release"
           if in_source else "removed from QEMU's source")
    return f"not available since QEMU {gone}: {how}"


def build_for_version(version: str) -> str | None:
    """The build name whose data is QEMU ``version`` (``10.0.2``), or None when none ships.

    An imported build of that very version wins; otherwise a model release of
    the same version (``10.1`` is 10.1.0).  Versions compare as three numbers,
    so ``10.1`` and ``10.1.0`` are one.
    """
    def numbers(text: str) -> tuple[int, ...] | None:
        parts = text.split(".")
        if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
            return None
        return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))

    wanted = numbers(version)
    if wanted is None:
        return None
    for name in [*IMPORTED, *MODEL_RELEASES]:  # imported first: they are the real binaries
        if numbers(name) == wanted:
            return name
    return None


def builds_registering(machine: str) -> list[str]:
    """Names of the shipped builds that register ``machine``, newest first."""
    def numbers(name: str) -> tuple[int, ...]:
        parts = tuple(int(x) for x in name.split("."))
        return parts + (0,) * (3 - len(parts))

    names = sorted([*MODEL_RELEASES, *IMPORTED], key=numbers, reverse=True)
    return [n for n in names if get_build(n).find(machine) is not None]
