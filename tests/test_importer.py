"""The importer: real QEMU in, data file out; source labels; downstream builds."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from procs import children, processes_mentioning

from machines.cli import main
from machines.compat.csource import read_source, source_arrays_doc
from machines.compat.importer import (
    check_against_qom,
    flat_from_source,
    label_by_family,
    label_from_source,
    label_with_known,
    parse_machine_help,
)
from machines.errors import DataError
from machines.registry import DATA as _DATA
from machines.registry import get_build

DATA = Path(_DATA)


@pytest.fixture(scope="module")
def imported(qemu_binary: str, tmp_path_factory: Any) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("import") / "build.json"
    scratch = tmp_path_factory.mktemp("import-tmp")
    saved, tempfile.tempdir = tempfile.tempdir, str(scratch)  # where QMP sockets go
    try:
        assert main(["import", "--qemu", qemu_binary, "-o", str(out)]) == 0
    finally:
        tempfile.tempdir = saved
    # Every QEMU it started (one per family and per CPU model) is gone, sockets too.
    assert processes_mentioning(str(scratch)) == []
    assert list(scratch.iterdir()) == []
    assert [c for c in children() if c[1] == "Z"] == []
    return out, json.loads(out.read_text())


def _flat(doc: dict[str, Any]) -> dict[str, list[list[str]]]:
    return {name: [e for t in info["tables"] for e in doc["tables"][t]]
            for name, info in doc["machines"].items()}


@pytest.mark.qemu
def test_shipped_data_is_what_the_importer_reads(imported: tuple[Path, dict[str, Any]],
                                                 installed_build: str) -> None:
    """The shipped import of the installed QEMU's version equals a fresh import of it."""
    from conftest import missing

    from machines.registry import IMPORTED

    _, doc = imported
    if installed_build not in IMPORTED:
        missing(f"build {installed_build} is a model, not an import of QEMU "
                f"{doc['qemu']['version']}", "MACHINES_REQUIRE_QEMU")
    shipped = json.loads(Path(IMPORTED[installed_build]).read_text())
    assert doc["qemu"]["version"] == shipped["qemu"]["version"]
    assert _flat(doc) == _flat(shipped)
    assert doc["listing"] == shipped["listing"]
    assert doc["qom"] == shipped["qom"]
    assert doc["provenance"]["labels"] == "family"


@pytest.mark.qemu
def test_an_imported_file_is_a_build(imported: tuple[Path, dict[str, Any]], capsys: Any) -> None:
    path, doc = imported
    build = get_build(str(path))
    assert len(build.registered()) == len(doc["listing"])
    q = build.machines
    assert issubclass(q["pc-q35-9.2"], q["pc-q35-10.0"])
    assert main(["resolve", "--release", str(path), "-M", "pc-q35-2.7", "--device", "ioapic",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["devices"]["ioapic"]["version"]["value"] == 0x11


def test_machine_help_parsing() -> None:
    rows = parse_machine_help(
        "Supported machines are:\n"
        "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)\n"
        "pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)\n"
        "pc-q35-2.4           Standard PC (Q35 + ICH9, 2009) (deprecated)\n"
        "a-very-long-machine-name-here Something (x)\n")
    assert rows[0] == {"name": "pc-i440fx-10.0", "desc": "Standard PC (i440FX + PIIX, 1996)",
                       "default": True, "deprecated": False, "alias": "pc"}
    assert rows[1]["deprecated"] and rows[1]["desc"] == "Standard PC (Q35 + ICH9, 2009)"
    assert rows[2]["name"] == "a-very-long-machine-name-here" and rows[2]["desc"] == "Something (x)"


def test_downstream_names_chain_by_family() -> None:
    a, b, c = ["d", "p", "1"], ["d", "p", "2"], ["d", "q", "3"]
    flat = {
        "pc-q35-rhel9.6.0": [a],
        "pc-q35-rhel9.4.0": [a, b],
        "pc-q35-rhel8.6.0": [a, b, c],
        "pc-q35-rhel10.0.0": [],
        "none": [],
    }
    tables, machines = label_by_family({k: [tuple(e) for e in v] for k, v in flat.items()})
    assert machines["pc-q35-rhel8.6.0"] == ["pc-q35-defaults", "compat@pc-q35-rhel9.6.0",
                                            "compat@pc-q35-rhel9.4.0",
                                            "compat@pc-q35-rhel8.6.0"]
    assert tables["compat@pc-q35-rhel8.6.0"] == [tuple(c)]
    assert [tuple(e) for t in machines["pc-q35-rhel9.4.0"] for e in tables[t]] == [
        tuple(a), tuple(b)]


def _tree(root: Path, hw_entries: str, pc_entries: str) -> Path:
    (root / "hw/core").mkdir(parents=True)
    (root / "hw/i386").mkdir(parents=True)
    (root / "include").mkdir(parents=True)
    (root / "include/types.h").write_text('#define TYPE_X "v"\n#define TYPE_Z "z"\n')
    (root / "VERSION").write_text("10.0.2\n")
    (root / "hw/core/machine.c").write_text(
        "GlobalProperty hw_compat_9_2[] = {\n" + hw_entries + "};\n")
    (root / "hw/i386/pc.c").write_text(
        "#define IDS(v) \\\n    { \"a\", \"model-id\", v },\\\n    { \"b\", \"model-id\", v },\n"
        "GlobalProperty pc_compat_9_2[] = {\n" + pc_entries + "};\n")
    (root / "hw/i386/pc_q35.c").write_text(
        "static GlobalProperty pc_q35_compat_defaults[] = {\n"
        "    { TYPE_X, \"aw-bits\", \"39\" },\n};\n"
        "#define DEFINE_Q35_MACHINE(major, minor) \\\n"
        "    DEFINE_PC_VER_MACHINE(pc_q35, \"pc-q35\", pc_q35_init, false, NULL, major, minor);\n"
        "static void pc_q35_machine_options(MachineClass *m)\n{\n"
        "    compat_props_add(m->compat_props, pc_q35_compat_defaults, 1);\n}\n"
        "static void pc_q35_machine_10_0_options(MachineClass *m)\n{\n"
        "    pc_q35_machine_options(m);\n}\nDEFINE_Q35_MACHINE(10, 0);\n"
        "static void pc_q35_machine_9_2_options(MachineClass *m)\n{\n"
        "    pc_q35_machine_10_0_options(m);\n    m->default_kernel_irqchip_split = true;\n"
        "    compat_props_add(m->compat_props, hw_compat_9_2, hw_compat_9_2_len);\n"
        "    compat_props_add(m->compat_props, pc_compat_9_2, pc_compat_9_2_len);\n}\n"
        "DEFINE_Q35_MACHINE(9, 2);\n")
    (root / "hw/i386/pc_piix.c").write_text("/* nothing */\n")
    return root


def test_source_labels_split_the_flat_list(tmp_path: Path) -> None:
    root = _tree(tmp_path, '    { "x", "p1", "on" },\n    { "y", "p2", "off" }, /* c */\n',
                 '    IDS("2.4")\n    { TYPE_Z, "p3", "1" },\n')
    facts = read_source(root)
    assert facts.machines["pc-q35-9.2"].tables == ("pc_q35_compat_defaults", "hw_compat_9_2",
                                                   "pc_compat_9_2")
    assert facts.machines["pc-q35-9.2"].kernel_irqchip_split is True
    assert facts.tables["pc_compat_9_2"].properties == ("model-id", "model-id", "p3")
    source = source_arrays_doc(root)
    flat = {"pc-q35-10.0": [("v", "aw-bits", "39")],
            "pc-q35-9.2": [("v", "aw-bits", "39"), ("x", "p1", "on"), ("y", "p2", "off"),
                           ("a", "model-id", "2.4"), ("b", "model-id", "2.4"),
                           ("z", "p3", "1")]}
    tables, machines = label_from_source(flat, source)
    assert tables["hw_compat_9_2"] == [("x", "p1", "on"), ("y", "p2", "off")]
    assert len(tables["pc_compat_9_2"]) == 3
    assert machines["pc-q35-9.2"] == ["pc_q35_compat_defaults", "hw_compat_9_2", "pc_compat_9_2"]


def test_source_and_binary_must_agree(tmp_path: Path) -> None:
    source = source_arrays_doc(
        _tree(tmp_path, '    { "x", "p1", "on" },\n', '    { "z", "p3", "1" },\n'))
    flat = {"pc-q35-10.0": [("v", "aw-bits", "39")],
            "pc-q35-9.2": [("v", "aw-bits", "39"), ("x", "other", "on"), ("z", "p3", "1")]}
    with pytest.raises(DataError, match=re.escape('hw_compat_9_2 has { "x", "p1", "on" } where the '
                                                  'binary has { "x", "other", "on" }')):
        label_from_source(flat, source)
    flat["pc-q35-9.2"][1] = ("x", "p1", "off")  # the value counts too
    with pytest.raises(DataError, match=re.escape('where the binary has { "x", "p1", "off" }')):
        label_from_source(flat, source)
    flat["pc-q35-9.2"].append(("extra", "e", "1"))
    flat["pc-q35-9.2"][1] = ("x", "p1", "on")
    with pytest.raises(DataError, match="1 entries left over"):
        label_from_source(flat, source)


def test_known_arrays_name_a_build_without_its_source() -> None:
    """11.1.3 has no source package: its shares are named from other versions' arrays."""
    hw0, pc0 = ("h", "a", "1"), ("p", "b", "2")
    hw1, pc1, gone = ("h", "c", "3"), ("p", "d", "4"), ("p", "e", "5")
    flat = {"pc-q35-11.1": [],
            "pc-q35-11.0": [("n", "x", "1")],
            "pc-q35-10.1": [("n", "x", "1"), hw1, pc1],
            "pc-q35-10.0": [("n", "x", "1"), hw1, pc1, hw0, ("h", "new", "6"), pc0],
            "pc-q35-9.2": [("n", "x", "1"), hw1, pc1, hw0, ("h", "new", "6"), pc0,
                           ("q", "r", "s")]}
    known = {"hw_compat_10_1": [hw1], "pc_compat_10_1": [pc1, gone],
             "hw_compat_10_0": [hw0], "pc_compat_10_0": [pc0]}
    tables, machines = label_with_known(flat, known)
    assert machines["pc-q35-10.0"] == ["pc_q35_compat_defaults", "hw+pc_compat_11_0",
                                       "hw_compat_10_1", "pc_compat_10_1",
                                       "hw_compat_10_0", "pc_compat_10_0"]
    # 10.1's pc array lost its last entry, 10.0's hw array grew at its end: both
    # still line up with their namesakes.
    assert tables["pc_compat_10_1"] == [pc1]
    assert tables["hw_compat_10_0"] == [hw0, ("h", "new", "6")]
    assert tables["pc_compat_10_0"] == [pc0]
    # No namesake for 11.0 or 9.2: the share keeps both names.
    assert tables["hw+pc_compat_11_0"] == [("n", "x", "1")]
    assert tables["hw+pc_compat_9_2"] == [("q", "r", "s")]
    flat_again = {m: [e for t in ts for e in tables[t]] for m, ts in machines.items()}
    assert flat_again == flat
    # Changed at both ends: no cut is safe, so the share keeps both names.
    tables, machines = label_with_known(flat, {"hw_compat_10_0": [hw0, hw1],
                                               "pc_compat_10_0": [gone, pc0]})
    assert "hw+pc_compat_10_0" in machines["pc-q35-10.0"]


def test_old_builds_take_their_compat_lists_from_source(tmp_path: Path) -> None:
    source = source_arrays_doc(
        _tree(tmp_path, '    { "x", "p1", "on" },\n', '    { "z", "p3", "1" },\n'))
    flat = flat_from_source(source, ["pc-q35-9.2", "isapc"])
    assert flat == {"pc-q35-9.2": [("v", "aw-bits", "39"), ("x", "p1", "on"), ("z", "p3", "1")]}
    qom = {"types": {"x": ["device", False], "device": [None, True]},
           "properties": {"x": {"p1": ["bool", True, True]}}}
    check_against_qom(flat, qom)  # v and z are not in this binary: skipped, as QEMU does
    qom["properties"]["x"] = {"other": ["bool", True, True]}
    with pytest.raises(DataError, match=r"set x\.p1, which the binary does not have"):
        check_against_qom(flat, qom)


def test_not_a_source_tree(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a QEMU source tree"):
        read_source(tmp_path)
