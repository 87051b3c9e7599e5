"""csource against real Debian-patched QEMU trees and the binaries built from them.

The trees come from ``scripts/fetch-qemu-source SUITE VERSION`` and live under
``/var/tmp/qemu-src`` (or ``$MACHINES_QEMU_SOURCE_DIR``).  Without one, its
tests skip, unless ``MACHINES_REQUIRE_QEMU_SOURCE=1`` makes that a failure.  The
binaries: 10.0.2 is the host's ``qemu-system-x86_64``, the others run chrooted
in ``/var/lib/machines-zoo/SUITE`` (skipped without them unless
``MACHINES_REQUIRE_QEMU=1``).  One QEMU process per binary, over ``-qmp stdio``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from machines.compat.csource import SCHEMA, SourceFacts, read_source, source_arrays_doc
from machines.errors import DataError

SOURCES = Path(os.environ.get("MACHINES_QEMU_SOURCE_DIR", "/var/tmp/qemu-src"))
ZOO = Path("/var/lib/machines-zoo")
SNAPSHOTS = Path(__file__).resolve().parent.parent / "machines/compat/sources"

# Tree (its Debian version) -> how to run the binary built from it (None: no binary here).
# 10.0.2+ds-orig is the upstream orig tarball of Debian's 10.0.2 unpacked without
# Debian's patches, whose .dsc and .debian.tar.xz the mirror no longer serves
# (`scripts/fetch-qemu-source --orig-only bookworm-backports 1:10.0.2+ds-2+deb13u1~bpo12+1`);
# its binary is the host's bookworm-backports build.
TREES: dict[str, tuple[str, ...] | None] = {
    "5.2+dfsg-11+deb11u3": ("chroot", str(ZOO / "bullseye"), "qemu-system-x86_64"),
    "7.2+dfsg-7+deb12u18": ("chroot", str(ZOO / "bookworm"), "qemu-system-x86_64"),
    "10.0.2+ds-orig": ("qemu-system-x86_64",),
    "10.0.13+ds-0+deb13u1": ("chroot", str(ZOO / "trixie"), "qemu-system-x86_64"),
    "10.2.2+ds-1": None,
}
BUILT_FROM = {"10.0.2+ds-orig": "10.0.2+ds-2+deb13u1~bpo12+1"}
# Drivers named by the shared hw_compat arrays (or a retired CPU model) that this
# qemu-system-x86_64 does not have: their compat entries never match anything.
_OTHER_ARCH = ("pflash_cfi01", "pl011", "pl031", "arm-gicv3-common")
ABSENT: dict[str, tuple[str, ...]] = {
    "5.2+dfsg-11+deb11u3": (*_OTHER_ARCH, "vhost-blk-device"),
    "7.2+dfsg-7+deb12u18": (*_OTHER_ARCH, "vhost-blk-device", "Icelake-Client-x86_64-cpu"),
}
SNAPSHOT_OF = {"5.2+dfsg-11+deb11u3": "5.2.0", "7.2+dfsg-7+deb12u18": "7.2.22",
               "10.0.13+ds-0+deb13u1": "10.0.13", "10.2.2+ds-1": "10.2.2"}


def _missing(what: str, env: str) -> None:
    if os.environ.get(env) == "1":
        pytest.fail(f"{what} ({env}=1)")
    pytest.skip(what)


def _tree(version: str) -> Path:
    found = sorted((SOURCES / version).glob("qemu-*/hw/i386/pc.c"))
    if not found:
        _missing(f"no QEMU source tree {SOURCES / version}: run scripts/fetch-qemu-source",
                 "MACHINES_REQUIRE_QEMU_SOURCE")
    return found[0].parent.parent.parent


@cache
def _facts(version: str) -> SourceFacts:
    return read_source(_tree(version))


class _Qmp:
    """One QEMU (``-machine none``) talking QMP over its stdin and stdout."""

    def __init__(self, argv: tuple[str, ...]) -> None:
        self.proc = subprocess.Popen([*argv, "-machine", "none", "-nodefaults", "-display",
                                      "none", "-S", "-qmp", "stdio"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert "QMP" in json.loads(self._line())
        self("qmp_capabilities")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "QEMU closed its QMP stream"
        return line

    def __call__(self, execute: str, **arguments: Any) -> Any:
        """The command's 'return', or its whole error reply."""
        assert self.proc.stdin is not None
        cmd: dict[str, Any] = {"execute": execute}
        if arguments:
            cmd["arguments"] = arguments
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        while True:
            msg = json.loads(self._line())
            if "return" in msg or "error" in msg:
                return msg.get("return", msg)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self("quit")
                self.proc.wait(timeout=30)
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait()


def _binary(version: str) -> tuple[str, ...]:
    argv = TREES[version]
    assert argv is not None
    if argv[0] == "chroot":
        if not (Path(argv[1]) / "usr/bin" / argv[2]).exists() or os.geteuid() != 0:
            _missing(f"no {argv[2]} in {argv[1]} (or not root)", "MACHINES_REQUIRE_QEMU")
    elif shutil.which(argv[0]) is None:
        _missing(f"no {argv[0]}", "MACHINES_REQUIRE_QEMU")
    out = subprocess.run([*argv, "--version"], capture_output=True, text=True,
                         check=True).stdout
    built = re.search(r"\(Debian 1:([^)]+)\)", out)
    got = re.sub(r"\+b\d+$", "", built.group(1)) if built else out.splitlines()[0]
    if got != BUILT_FROM.get(version, version):
        _missing(f"{' '.join(argv)} is {got}, not {version}", "MACHINES_REQUIRE_QEMU")
    return argv


@pytest.mark.parametrize("version", ["10.0.2+ds-orig", "10.0.13+ds-0+deb13u1"])
@pytest.mark.qemu
def test_flat_lists_equal_the_binary(version: str) -> None:
    """Every pc machine's resolved flat list is query-machines' compat-props, exactly."""
    facts = _facts(version)
    qmp = _Qmp(_binary(version))
    try:
        listing = qmp("query-machines", **{"compat-props": True})
    finally:
        qmp.close()
    binary = {m["name"]: [(p["qom-type"], p["property"], p["value"])
                          for p in m.get("compat-props", [])]
              for m in listing if m["name"].startswith("pc-")}
    assert sorted(binary) == sorted(facts.machines)
    for name, flat in binary.items():
        assert list(facts.machines[name].entries) == flat, name
    _check_flags(facts, listing)


def _properties(qmp: _Qmp, driver: str) -> set[str] | None:
    """A type's properties; of an abstract one, with those its instances add."""
    found = qmp("qom-list-properties", typename=driver)
    if isinstance(found, dict):  # not registered: device-list-properties loads modules
        found = qmp("device-list-properties", typename=driver)
        if isinstance(found, dict):
            return None
    have = {p["name"] for p in found}
    concrete = qmp("qom-list-types", implements=driver, abstract=False)
    if isinstance(concrete, list) and concrete and driver not in {t["name"] for t in concrete}:
        # older QEMU adds some properties per instance (x86 CPU features): ask one instance
        sub = qmp("qom-list-properties", typename=sorted(t["name"] for t in concrete)[0])
        if isinstance(sub, list):
            have |= {p["name"] for p in sub}
    return have


def _check_flags(facts: SourceFacts, listing: list[dict[str, Any]]) -> None:
    for m in listing:
        src = facts.machines.get(m["name"])
        if src is None:
            continue
        assert src.alias == m.get("alias"), m["name"]
        assert src.is_default == bool(m.get("is-default")), m["name"]
        assert bool(m.get("deprecated")) == (src.deprecation_reason is not None), m["name"]


@pytest.mark.parametrize("version", ["5.2+dfsg-11+deb11u3", "7.2+dfsg-7+deb12u18"])
@pytest.mark.qemu
def test_old_builds_have_every_property_and_machine(version: str) -> None:
    """Before 9.1 QMP has no compat-props: every (driver, property) must exist, and
    the machine names, aliases, default and deprecations must be the binary's."""
    facts = _facts(version)
    used = {t for m in facts.machines.values() for t in m.tables}
    wanted: dict[str, set[str]] = {}
    for table in used:
        src = facts.tables[table]
        for i, (driver, prop, _) in enumerate(src.entries):
            if i not in src.optional:
                wanted.setdefault(driver, set()).add(prop)
    qmp = _Qmp(_binary(version))
    try:
        listing = qmp("query-machines")
        names = sorted(m["name"] for m in listing if m["name"].startswith("pc-"))
        assert names == sorted(facts.machines)
        _check_flags(facts, listing)
        problems = []
        for driver in sorted(wanted):
            have = _properties(qmp, driver)
            if have is None:
                if driver not in ABSENT.get(version, ()):
                    problems.append(f"{driver}: no such type in the binary")
                continue
            problems.extend(f"{driver}.{p}: no such property"
                            for p in sorted(wanted[driver] - have))
    finally:
        qmp.close()
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("version", sorted(TREES))
def test_every_tree_resolves(version: str) -> None:
    facts = _facts(version)
    assert facts.machines
    for m in facts.machines.values():
        assert len(m.entries) == sum(len(facts.tables[t].entries) for t in m.tables)
    newest = [m for m in facts.machines.values() if m.alias]
    assert {m.alias for m in newest} == {"pc", "q35"}
    assert [m.name for m in facts.machines.values() if m.is_default] == \
        [m.name for m in newest if m.alias == "pc"]


@pytest.mark.parametrize("version", sorted(SNAPSHOT_OF))
def test_committed_snapshot_is_what_the_tree_gives(version: str) -> None:
    path = SNAPSHOTS / f"qemu-{SNAPSHOT_OF[version]}-arrays.json"
    committed = json.loads(path.read_text())
    assert committed["schema"] == SCHEMA
    assert committed["debian_version"].split(":")[-1] == version
    assert source_arrays_doc(_tree(version)) == committed


# --- synthetic trees ---------------------------------------------------------


def _mini(root: Path, pc_c: str, header: str = "") -> Path:
    for sub in ("hw/core", "hw/i386", "include/hw"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "include/hw/types.h").write_text(
        "#ifndef TYPES_H\n#define TYPES_H\n#ifdef TARGET_X86_64\n"
        "#define TYPE_X86_CPU \"x86_64-cpu\"\n#else\n#define TYPE_X86_CPU \"i386-cpu\"\n"
        "#endif\n#define stringify(s) tostring(s)\n#define tostring(s) #s\n"
        "#define PCI_CLASS_X 0x0500\n" + header + "#endif\n")
    (root / "hw/core/machine.c").write_text("")
    (root / "hw/i386/pc.c").write_text(pc_c)
    (root / "hw/i386/pc_q35.c").write_text(
        "#define DEFINE_Q35_MACHINE(suffix, name, compatfn, optionfn) \\\n"
        "    DEFINE_PC_MACHINE(suffix, name, pc_init_##suffix, optionfn)\n"
        "static void pc_q35_machine_options(MachineClass *m)\n{\n"
        "    m->alias = \"q35\";\n#ifdef CONFIG_MICROVM_DEFAULT\n    m->is_default = true;\n"
        "#endif\n}\n"
        "static void pc_q35_2_0_machine_options(MachineClass *m)\n{\n"
        "    static GlobalProperty compat[] = { { \"d\", \"p\", \"v\" }, };\n"
        "    pc_q35_machine_options(m);\n    m->alias = NULL;\n"
        "    compat_props_add(m->compat_props, pc_compat_2_0, pc_compat_2_0_len);\n"
        "    compat_props_add(m->compat_props, compat, G_N_ELEMENTS(compat));\n}\n"
        "DEFINE_Q35_MACHINE(v2_0, \"pc-q35-2.0\", NULL, pc_q35_2_0_machine_options);\n")
    (root / "hw/i386/pc_piix.c").write_text("")
    return root


def test_macros_resolve_as_the_compiler_would(tmp_path: Path) -> None:
    root = _mini(tmp_path, (
        "#define IDS(v) \\\n    { \"qemu32-\" TYPE_X86_CPU, \"model-id\", \"QEMU \" v },\\\n"
        "    { \"qemu64\" \"-\" TYPE_X86_CPU, \"model-id\", \"QEMU \" v },\n"
        "GlobalProperty pc_compat_2_0[] = {\n    IDS(\"2.0.0\")\n"
        "    { TYPE_X86_CPU, \"class\", stringify(PCI_CLASS_X) }, /* a, \"b\" */\n"
        "    { \"virtio-pci\", \"x\", \"on\", .optional = true },\n};\n"))
    facts = read_source(root)
    assert facts.tables["pc_compat_2_0"].entries == (
        ("qemu32-x86_64-cpu", "model-id", "QEMU 2.0.0"),
        ("qemu64-x86_64-cpu", "model-id", "QEMU 2.0.0"),
        ("x86_64-cpu", "class", "0x0500"),
        ("virtio-pci", "x", "on"))
    assert facts.tables["pc_compat_2_0"].optional == frozenset({3})
    machine = facts.machines["pc-q35-2.0"]
    assert machine.tables == ("pc_compat_2_0", "pc_q35_2_0_machine_options.compat")
    assert machine.entries[-1] == ("d", "p", "v")
    assert machine.alias is None and machine.is_default is False


def test_an_unresolvable_token_names_array_and_entry(tmp_path: Path) -> None:
    root = _mini(tmp_path, "GlobalProperty pc_compat_2_0[] = {\n"
                 "    { \"a\", \"b\", \"c\" },\n    { TYPE_NOWHERE, \"p\", \"on\" },\n};\n")
    with pytest.raises(DataError, match=r"array pc_compat_2_0: entry 2 .*TYPE_NOWHERE"):
        read_source(root)


def test_an_unknown_condition_is_an_error(tmp_path: Path) -> None:
    root = _mini(tmp_path, "#ifdef CONFIG_SOMETHING\nGlobalProperty pc_compat_2_0[] = {};\n"
                 "#endif\n")
    with pytest.raises(DataError, match="CONFIG_SOMETHING"):
        read_source(root)


def test_an_ambiguous_macro_is_an_error(tmp_path: Path) -> None:
    root = _mini(tmp_path, "GlobalProperty pc_compat_2_0[] = { { TYPE_Y, \"p\", \"1\" } };\n",
                 "#ifdef CONFIG_WHATEVER\n#define TYPE_Y \"a\"\n#else\n#define TYPE_Y \"b\"\n"
                 "#endif\n")
    with pytest.raises(DataError, match="TYPE_Y has 2 definitions"):
        read_source(root)


def test_variadic_pick_and_rescan_with_what_follows() -> None:
    from machines.compat.csource import Macro, _expand, _integer

    macros = {
        "PICK": Macro(("x1", "x2", "x3", "x4", "..."), ("x4",)),
        "IS3": Macro(("c", "a", "b", "d"), ("(", "a", ">", "c", ")")),
        "IS2": Macro(("c", "a", "b"), ("(", "(", "MAJ", "-", "a", ")", ">", "c", ")")),
        "OLD": Macro(("...",), ("PICK", "(", "__VA_ARGS__", ",", "IS3", ",", "IS2", ")",
                                "(", "3", ",", "__VA_ARGS__", ")")),
        "MAJ": Macro(None, ("10",)),
    }
    toks = _expand(["OLD", "(", "6", ",", "2", ")"], macros.get)
    assert _integer(toks, "t") == 1
    assert _integer(_expand(["OLD", "(", "7", ",", "2", ")"], macros.get), "t") == 0
    with pytest.raises(DataError, match="as an integer"):
        _integer(["UNKNOWN", "+", "1"], "t")
