"""Generate the model's release data (10.0 to 11.1).

Each model release takes its compat arrays from the best record there is:

* ``10.0``: the real QEMU 10.0.2 import (every array up to 10.0, exactly as
  that binary holds them);
* ``10.1``, ``10.1.2``: that import plus the team's reference of what 10.1
  changed (``merged`` entries only, per ``in_releases``); no binary exists;
* ``10.2.2``: Debian's 10.2.2 source package, read by
  :mod:`machines.compat.csource` (``sources/qemu-10.2.2-arrays.json``);
  ``10.2``: the same without the stable backport 10.2.2 added;
* ``11.1``: the real QEMU 11.1.3 import; ``11.0``: the same arrays without
  the ones 11.1 added (the 11.0 arrays of its 11.0 machine types).

Output: one JSON file where each array entry says in which releases it
exists.  The machine-type chain itself is code (``machines/i386/pc.py``),
as in QEMU.  No release carries SEOIB: no QEMU release has it (the RFC's
designs are an explicit overlay, ``machines/i386/designs.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from machines import __version__

SCHEMA = "machines/model/v1"
RELEASES = ("10.0", "10.1", "10.1.2", "10.2", "10.2.2", "11.0", "11.1")
SOURCES = Path(__file__).parent / "sources"
DATA = Path(__file__).parent / "data"

# Arrays whose code QEMU 10.1 deleted along with the 2.4/2.5 machine types.
_DELETED_IN_10_1 = {"hw_compat_2_4", "pc_compat_2_4", "hw_compat_2_5", "pc_compat_2_5"}
# The 10.2 stable series backported this into pc_compat_10_1 (10.2.2 has it,
# 10.2.0 did not; see shared reference notes and Debian's 10.2.2 source).
_BACKPORTED_IN_10_2_2 = {("pc_compat_10_1", ("x86_64-cpu", "x-migrate-error-code", "false"))}
# Which real build's QOM data (types, properties, instances) each release uses.
QOM_BASE = {"10.0": "10.0.2", "10.1": "10.0.2", "10.1.2": "10.0.2", "10.2": "10.0.2",
            "10.2.2": "10.0.2", "11.0": "11.1.3", "11.1": "11.1.3"}

Entry = tuple[str, str, str]
Tables = dict[str, list[Entry]]


def _expand(in_releases: list[str]) -> list[str]:
    """Reference release names to model release ids (10.1 covers 10.1.2)."""
    out: set[str] = set()
    for release in in_releases:
        if release == "10.1":
            out |= {"10.1", "10.1.2"}
        elif release == "10.1.2+":
            out.add("10.1.2")
    return [r for r in RELEASES if r in out]


def _import_tables(doc: dict[str, Any]) -> Tables:
    return {name: [tuple(e) for e in entries]
            for name, entries in doc["tables"].items()}


def _reference_tables(base: Tables, reference: dict[str, Any], release: str) -> Tables:
    """10.1 and 10.1.2: the 10.0.2 arrays plus the reference's merged entries."""
    tables = {n: list(e) for n, e in base.items() if n not in _DELETED_IN_10_1}
    for name, entries in [*reference["arrays"].items(), *reference["family_defaults"].items()]:
        if name == "notes" or not isinstance(entries, list):
            continue
        merged = [(e["driver"], e["property"], e["value"]) for e in entries
                  if e["status"] == "merged" and release in _expand(e["in_releases"])]
        if name.endswith("_compat_defaults") or merged or name not in tables:
            tables[name] = merged
    return tables


def release_tables(release: str, imports: dict[str, dict[str, Any]], reference: dict[str, Any],
                   source_10_2_2: dict[str, Any]) -> Tables:
    """The compat arrays of one model release (see the module docstring)."""
    if release == "10.0":
        return _import_tables(imports["10.0.2"])
    if release in ("10.1", "10.1.2"):
        return _reference_tables(_import_tables(imports["10.0.2"]), reference, release)
    if release in ("10.2", "10.2.2"):
        tables = {n: [tuple(e) for e in entries]
                  for n, entries in source_10_2_2["tables"].items()}
        if release == "10.2":
            for name, entry in _BACKPORTED_IN_10_2_2:
                tables[name] = [e for e in tables[name] if e != entry]
        return tables
    tables = _import_tables(imports["11.1.3"])
    if release == "11.0":
        tables = {n: e for n, e in tables.items() if not n.endswith("compat_11_0")}
    return tables


def merge_releases(per_release: dict[str, Tables]) -> dict[str, list[dict[str, Any]]]:
    """Arrays with per-entry release membership; every release reads back exactly."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for release, tables in per_release.items():
        for name, entries in tables.items():
            rows = merged.setdefault(name, [])
            at = 0
            for entry in entries:
                match = next((i for i in range(at, len(rows))
                              if tuple(rows[i]["entry"]) == entry), None)
                if match is None:
                    rows.insert(at, {"entry": list(entry), "releases": []})
                    match = at
                rows[match]["releases"].append(release)
                at = match + 1
    for release, tables in per_release.items():  # the merge must lose nothing
        for name, entries in tables.items():
            back = [tuple(r["entry"]) for r in merged[name] if release in r["releases"]]
            if back != entries:
                raise ValueError(f"{name} in {release} does not read back after merging")
    return {name: [{"driver": r["entry"][0], "property": r["entry"][1], "value": r["entry"][2],
                    "optional": False, "releases": r["releases"]} for r in rows]
            for name, rows in merged.items()}


def _others(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Machines outside the PC families, in the places -machine help lists them."""
    rows = doc["listing"]
    first_pc = next(i for i, row in enumerate(rows)
                    if row["name"].startswith(("pc-i440fx-", "pc-q35-")))
    return [{"name": row["name"], "desc": row["desc"], "deprecated": row["deprecated"],
             "before_pc": i < first_pc,
             "default_cpu_type": doc["machines"][row["name"]]["default_cpu_type"],
             "tables": doc["machines"][row["name"]]["tables"]}
            for i, row in enumerate(rows)
            if not row["name"].startswith(("pc-i440fx-", "pc-q35-"))]


def build_model(imports: dict[str, dict[str, Any]], reference: dict[str, Any],
                properties: dict[str, Any], source_10_2_2: dict[str, Any],
                releases: Iterable[str] = RELEASES) -> dict[str, Any]:
    """The model data: arrays with per-release membership, and new properties."""
    releases = list(releases)
    per_release = {r: release_tables(r, imports, reference, source_10_2_2) for r in releases}
    return {
        "schema": SCHEMA,
        "releases": releases,
        "base": "10.0.2",
        "qom_base": {r: QOM_BASE[r] for r in releases},
        "provenance": {
            "generator": f"machines {__version__} (machines/compat/reference.py)",
            "inputs": ["data/qemu-10.0.2.json", "data/qemu-11.1.3.json",
                       "sources/qemu-compat-10.1-11.0.json", "sources/qemu-10.2.2-arrays.json",
                       "sources/model-properties.json"],
            "source_10_2_2": source_10_2_2.get("source"),
        },
        "tables": merge_releases(per_release),
        "properties": [dict(p) for p in properties["properties"]],
        "other_machines": {base: _others(doc) for base, doc in imports.items()},
        "options": imports["10.0.2"]["options"],
        "behaviours": [dict(b) for b in properties.get("behaviours", [])],
    }


def model_from_sources() -> dict[str, Any]:
    """The model data from the shipped inputs."""
    imports = {v: json.loads((DATA / f"qemu-{v}.json").read_text()) for v in ("10.0.2", "11.1.3")}
    reference = json.loads((SOURCES / "qemu-compat-10.1-11.0.json").read_text())
    properties = json.loads((SOURCES / "model-properties.json").read_text())
    source_10_2_2 = json.loads((SOURCES / "qemu-10.2.2-arrays.json").read_text())
    return build_model(imports, reference, properties, source_10_2_2)


def regenerate(out: Path | None = None) -> Path:
    """Rebuild ``data/model.json`` from the shipped inputs."""
    from machines.fileio import atomic_write_json

    out = out or DATA / "model.json"
    atomic_write_json(out, model_from_sources())
    return out
