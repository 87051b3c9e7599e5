"""Generate the model's release data (10.0, 10.1, 10.1.2, 10.2).

Inputs (``sources/``): the real QEMU 10.0.2 import, which gives every array
up to 10.0 exactly as that binary holds them; the team's reference of what
10.1 and 10.2 changed (only ``merged`` entries, per ``in_releases``); the
properties those releases added.  (No release carries SEOIB: the RFC's designs
are an overlay, ``machines/i386/designs.py``.)  Output: one JSON
file where each array entry says in which model releases it exists.  The
machine-type chain itself is code (``machines/i386/pc.py``), as in QEMU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from machines import __version__

SCHEMA = "machines/model/v1"
RELEASES = ("10.0", "10.1", "10.1.2", "10.2")
SOURCES = Path(__file__).parent / "sources"
DATA = Path(__file__).parent / "data"

# Arrays whose code QEMU 10.1 deleted along with the 2.4/2.5 machine types.
_DELETED_IN_10_1 = {"hw_compat_2_4", "pc_compat_2_4", "hw_compat_2_5", "pc_compat_2_5"}


def _expand(in_releases: list[str]) -> list[str]:
    """Reference release names to model release ids (10.1 covers 10.1.2)."""
    out: set[str] = set()
    for release in in_releases:
        if release == "10.1":
            out |= {"10.1", "10.1.2"}
        elif release == "10.1.2+":
            out.add("10.1.2")
        elif release in RELEASES:
            out.add(release)
    return [r for r in RELEASES if r in out]


def _entry(driver: str, prop: str, value: str, optional: bool, releases: list[str],
           source: str) -> dict[str, Any]:
    return {"driver": driver, "property": prop, "value": value, "optional": optional,
            "releases": releases, "source": source}


def build_model(base: dict[str, Any], reference: dict[str, Any], properties: dict[str, Any]
                ) -> dict[str, Any]:
    """The model data: arrays with per-release membership, and new properties."""
    base_version = base["qemu"]["version"]
    tables: dict[str, list[dict[str, Any]]] = {}
    for name, entries in base["tables"].items():
        releases = ["10.0"] if name in _DELETED_IN_10_1 else list(RELEASES)
        tables[name] = [_entry(d, p, v, False, releases, f"QEMU {base_version} query-machines")
                        for d, p, v in entries]
    for name, entries in reference["arrays"].items():
        merged = [e for e in entries if e["status"] == "merged" and _expand(e["in_releases"])]
        if merged or name not in tables:
            tables[name] = [_entry(e["driver"], e["property"], e["value"], e["optional"],
                                   _expand(e["in_releases"]), e["source"]) for e in merged]
    for name, entries in reference["family_defaults"].items():
        if not name.endswith("_compat_defaults"):
            continue  # "notes"
        tables[name] = [_entry(e["driver"], e["property"], e["value"], e["optional"],
                               _expand(e["in_releases"]), e["source"])
                        for e in entries if e["status"] == "merged"]
    new_props = [dict(p) for p in properties["properties"]]
    # Machines outside the PC families (microvm, isapc, none, x-remote) come from the
    # base build as they are, in the places its -machine help had them.
    rows = base["listing"]
    first_pc = next(i for i, row in enumerate(rows)
                    if row["name"].startswith(("pc-i440fx-", "pc-q35-")))
    others = [{"name": row["name"], "desc": row["desc"], "deprecated": row["deprecated"],
               "before_pc": i < first_pc,
               "default_cpu_type": base["machines"][row["name"]]["default_cpu_type"],
               "tables": base["machines"][row["name"]]["tables"]}
              for i, row in enumerate(rows)
              if not row["name"].startswith(("pc-i440fx-", "pc-q35-"))]
    return {
        "schema": SCHEMA,
        "releases": list(RELEASES),
        "base": base_version,
        "provenance": {
            "generator": f"machines {__version__} (machines/compat/reference.py)",
            "inputs": [f"data/qemu-{base_version}.json", "sources/qemu-compat-10.1-11.0.json",
                       "sources/model-properties.json"],
        },
        "tables": tables,
        "properties": new_props,
        "other_machines": others,
        "options": base["options"],
        "behaviours": [dict(b) for b in properties.get("behaviours", [])],
    }


def regenerate(base_path: Path | None = None, out: Path | None = None) -> Path:
    """Rebuild ``data/model.json`` from the shipped inputs."""
    from machines.fileio import atomic_write_json

    base_path = base_path or DATA / "qemu-10.0.2.json"
    base = json.loads(base_path.read_text())
    reference = json.loads((SOURCES / "qemu-compat-10.1-11.0.json").read_text())
    properties = json.loads((SOURCES / "model-properties.json").read_text())
    out = out or DATA / "model.json"
    atomic_write_json(out, build_model(base, reference, properties))
    return out
