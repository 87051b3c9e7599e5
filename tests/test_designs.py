"""The design overlay itself: names, gates, the gate machine types it adds, its QOM.

The facts checked are QEMU's own conventions for a new machine type (the alias and the
default move to the newest type, which is listed first and is not deprecated, and which
inherits the previous newest type's compat tables), so a gate type is built as QEMU's
next release would build it; the SEOIB behaviour each design gives is checked against
the RFC's own QEMU in tests/test_rfc_oracle.py.
"""

from __future__ import annotations

import pytest

from machines.build import Build
from machines.config import configure
from machines.errors import UsageError
from machines.i386.designs import (
    GATED,
    OPT_IN,
    DesignBuild,
    design_of,
    gated_in,
    newest_version,
    next_version,
    overlay,
    parse_design,
    split_build_name,
)
from machines.machine import MachineType
from machines.naming import MachineVersion
from machines.options import parse_args
from machines.qom import QomTypes
from machines.registry import get_build
from machines.resolve import Resolver


@pytest.mark.parametrize(("version", "following"), [
    ((10, 2), (11, 0)), ((11, 1), (11, 2)), ((11, 0), (11, 1)), ((4, 2), (5, 0)),
    ((4, 1), (4, 2)), ((3, 1), (3, 2)), ((9, 2), (10, 0)),
])
def test_next_version(version: tuple[int, ...], following: tuple[int, ...]) -> None:
    assert next_version(version) == following


@pytest.mark.parametrize(("name", "base", "label"), [
    ("10.2+rfc-v2", "10.2", "rfc-v2"), ("10.2+gated", "10.2", "gated"),
    ("10.2+gated:11.2", "10.2", "gated:11.2"), ("10.2+gated:pc-q35-11.2", "10.2", "gated:11.2"),
    ("11.1+opt-in", "11.1", "opt-in"), ("10.2+NONE", "10.2", "none"),
    ("10.2+ Opt-In ", "10.2", "opt-in"),
])
def test_split_build_name(name: str, base: str, label: str) -> None:
    got_base, design = split_build_name(name)
    assert got_base == base and design is not None and design.label == label


@pytest.mark.parametrize("name", ["10.2", "/tmp/a+b/qemu.json", "x+y.json", "+rfc-v2"])
def test_names_without_a_design_part(name: str) -> None:
    assert split_build_name(name) == (name, None)


@pytest.mark.parametrize(("text", "says"), [
    ("gated:", "the gate must be a machine-type version"),
    ("gated:11", "the gate must be a machine-type version"),
    ("gated:11.x", "the gate must be a machine-type version"),
    ("gated:11.22222", "the gate must be a machine-type version"),
    ("gated:pc-q35-11.2-tag", "the gate must be"),
    ("rfc-v3", "unknown SEOIB design 'rfc-v3'; expected none, rfc-v2, gated"),
    ("", "unknown SEOIB design ''"),
])
def test_bad_designs(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        parse_design(text)


def test_gate_numbers_of_every_spelling() -> None:
    assert parse_design("gated:11.2").gate == (11, 2)
    assert parse_design("gated:pc-i440fx-11.2").gate == (11, 2)
    assert parse_design("gated:2.12.1").gate == (2, 12, 1)
    assert parse_design("GATED").gate is None and parse_design("gated").label == GATED


def test_none_is_the_build_itself_and_overlays_do_not_stack() -> None:
    base = get_build("10.2")
    assert overlay(base, parse_design("none")) is base
    assert design_of(base).name == "none" and not design_of(base).sets_flags
    with pytest.raises(UsageError, match=r"QEMU 10\.2\+rfc-v2 already has a SEOIB design"):
        overlay(get_build("10.2+rfc-v2"), parse_design("opt-in"))


@pytest.mark.parametrize("spec", ["10.2+rfc-v2", "10.2+opt-in", "10.2+gated:10.1"])
def test_a_design_build_is_its_base_with_a_label(spec: str) -> None:
    base, built = get_build("10.2"), get_build(spec)
    assert isinstance(built, DesignBuild) and built.base is base
    assert built.name == spec and built.version == base.version and built.kind == base.kind
    assert built.seoib_aware and design_of(built).sets_flags
    assert built.provenance["seoib_design"] == spec.split("+")[1]
    assert built.provenance["seoib_design_base"] == "10.2"
    assert {k: v for k, v in built.provenance.items() if not k.startswith("seoib")} == \
        base.provenance
    assert (built.package, built.globals_reach_accel, built.accel_compat) == \
        (base.package, base.globals_reach_accel, base.accel_compat)
    assert built.added_machines == () and built.listing == base.listing
    assert set(built.machines) == set(base.machines)


def test_gated_adds_the_next_machine_type_to_each_family() -> None:
    base, built = get_build("10.2"), get_build("10.2+gated")
    assert isinstance(built, DesignBuild) and built.gate == (11, 0)
    assert built.added_machines == ("pc-i440fx-11.0", "pc-q35-11.0")
    assert newest_version(built) == (11, 0) and newest_version(base) == (10, 2)
    for family, old in (("pc_q35", "pc-q35-10.2"), ("pc_piix", "pc-i440fx-10.2")):
        gate = built.machines[old.replace("10.2", "11.0")]
        before = base.machines[old]
        assert gate.family == family and gate.registered and not gate.deprecated
        assert gate.version is not None and gate.version.numbers == (11, 0)
        assert gate.added_in == "11.0" and gate.prefix == before.prefix
        assert gate.alias == before.alias and gate.is_default == before.is_default
        assert gate.desc == before.desc and gate.default_cpu_type == before.default_cpu_type
        assert gate.default_kernel_irqchip_split == before.default_kernel_irqchip_split
        assert [cp for cp in gate.compat_props()] == [cp for cp in before.compat_props()]
        assert "gate of the SEOIB design over QEMU 10.2" in (gate.__doc__ or "")
        demoted = built.machines[old]
        assert demoted.alias is None and not demoted.is_default and demoted.name == old
        assert built.listing.index(gate.name) == built.listing.index(old) - 1
    assert len(built.listing) == len(base.listing) + 2
    # q35 now names the gate type, as QEMU's alias names its newest type
    config = configure(built, parse_args(["-M", "q35", "-accel", "tcg"]))
    assert config.machine.name == "pc-q35-11.0"
    assert configure(base, parse_args(["-M", "q35"])).machine.name == "pc-q35-10.2"
    # the gate type has the QOM type of the newest one, and resolves like it
    assert "pc-q35-11.0-machine" in built.qom and "pc-q35-11.0-machine" not in base.qom
    new = Resolver(configure(built, parse_args(["-M", "pc-q35-11.0", "-accel", "tcg"])))
    old = Resolver(configure(base, parse_args(["-M", "pc-q35-10.2", "-accel", "tcg"])))
    assert new.resolve("ioapic", "version").value == old.resolve("ioapic", "version").value


def test_gate_within_the_build_adds_nothing() -> None:
    built = get_build("10.2+gated:10.1")
    assert isinstance(built, DesignBuild) and built.gate == (10, 1)
    assert built.added_machines == ()
    assert gated_in(built, built.machines["pc-q35-10.1"])
    assert gated_in(built, built.machines["pc-q35-10.2"])
    assert not gated_in(built, built.machines["pc-q35-10.0"])
    assert gated_in(built, built.machines["microvm"])  # unversioned: not gated
    assert gated_in(get_build("10.2+rfc-v2"), built.machines["pc-q35-2.7"])
    assert not gated_in(get_build("10.2"), built.machines["pc-q35-10.2"])


def test_opt_in_adds_the_policy_property_and_nothing_else() -> None:
    base, built = get_build("10.2"), get_build("10.2+opt-in")
    props = built.qom.properties("kvm-accel")
    assert "seoib-policy" not in base.qom.properties("kvm-accel")
    info = props["seoib-policy"]
    assert (info.type, info.default) == ("SeoibPolicy", "quirked")
    assert "quirked, respected or not-advertised" in info.description
    assert set(props) - {"seoib-policy"} == set(base.qom.properties("kvm-accel"))
    assert "seoib-policy" not in get_build("10.2+rfc-v2").qom.properties("kvm-accel")
    assert design_of(built).name == OPT_IN


def test_newest_version_needs_a_versioned_type() -> None:
    empty = Build("empty", get_build("10.2").version, "model", [], [], lambda: get_build(
        "10.2").qom)
    with pytest.raises(UsageError, match="no versioned PC machine type to gate on"):
        newest_version(empty)


def test_gate_numbers_take_up_to_four_digits_a_part() -> None:
    assert parse_design("gated:9999.2").gate == (9999, 2)
    with pytest.raises(UsageError) as err:
        parse_design("gated:10000.2")
    assert str(err.value) == ("SEOIB design 'gated:10000.2': the gate must be a machine-type "
                              "version such as 11.2 or a versioned type such as pc-q35-11.2")


@pytest.mark.parametrize(("name", "base"), [("/tmp/a+b.json+rfc-v2", "/tmp/a+b.json"),
                                            ("x+y.json+opt-in", "x+y.json")],
                         ids=["path", "file"])
def test_the_design_is_the_part_after_the_last_plus(name: str, base: str) -> None:
    got, design = split_build_name(name)
    assert got == base and design is not None and design.label == name.rsplit("+", 1)[1]


def test_a_plus_in_a_directory_of_a_file_name_is_no_design() -> None:
    assert split_build_name("/tmp/a+b/qemu-build") == ("/tmp/a+b/qemu-build", None)


def test_a_design_build_keeps_what_its_base_says() -> None:
    base = get_build("10.0.2")  # an imported build: its Debian package is known
    built = get_build("10.0.2+rfc-v2")
    assert built.package == base.package == "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1"
    assert (built.seoib_design, base.seoib_design) == ("rfc-v2", "none")
    reaching = Build("reaching", base.version, base.kind, list(base.machines.values()),
                     base.listing, lambda: base.qom, globals_reach_accel=True)
    assert overlay(reaching, parse_design("rfc-v2")).globals_reach_accel is True


def test_the_gate_type_is_its_familys_newest_under_the_new_version() -> None:
    base, built = get_build("10.2"), get_build("10.2+gated")
    for old in ("pc-q35-10.2", "pc-i440fx-10.2"):
        gate = built.machines[old.replace("10.2", "11.0")]
        assert gate.version == MachineVersion("", (11, 0))
        assert gate.build == base.machines[old].build == "10.2"
        # its QOM type is the newest one's of the same family, not the other family's
        assert built.qom.properties(f"{gate.name}-machine") == \
            base.qom.properties(f"{old}-machine")
    assert built.qom.properties("pc-q35-11.0-machine") != \
        base.qom.properties("pc-i440fx-10.2-machine")


def test_opt_in_policy_property_in_full() -> None:
    built = get_build("10.2+opt-in")
    info = built.qom.properties("kvm-accel")["seoib-policy"]
    assert info.description == ("Suppress EOI Broadcast policy (the RFC's opt-in design): "
                                "quirked, respected or not-advertised")
    r = Resolver(configure(built, parse_args(["-M", "q35", "-accel", "kvm"])))
    assert r.resolve("kvm-accel", "seoib-policy").source.describe() == "default: type default"


def _tagged(name: str, family: str, prefix: str, tag: str, numbers: tuple[int, ...]
            ) -> type[MachineType]:
    """A downstream machine type with a tagged version (pc-q35-rhel9.4.0)."""
    return type(name, (MachineType,), {"name": name, "family": family, "prefix": prefix,
                                       "version": MachineVersion(tag, numbers)})


def test_tagged_machine_types_are_not_gated_nor_the_newest() -> None:
    built = get_build("10.2+gated:10.1")
    rhel = _tagged("pc-q35-rhel9.4.0", "pc_q35", "pc-q35", "rhel", (9, 4, 0))
    assert gated_in(built, rhel)  # like unversioned types: no compat props to gate by
    base = get_build("10.2")
    future = _tagged("pc-q35-rhel99.0.0", "pc_q35", "pc-q35", "rhel", (99, 0, 0))
    downstream = Build("downstream", base.version, base.kind, [*base.machines.values(), future],
                       [*base.listing, future.name], lambda: base.qom)
    assert newest_version(downstream) == (10, 2)


def test_the_gate_type_keeps_its_newest_types_irqchip_default() -> None:
    """Over a build whose newest q35 type is pc-q35-4.0 (the one type whose kernel-irqchip
    defaults to split), the gate type pc-q35-4.1 is that type under a new version."""
    base = get_build("10.0.2")
    upto = [m for m in base.machines.values() if m.version is None or
            m.version.numbers <= (4, 0)]
    old = Build("4.0-like", (4, 0), base.kind, upto, [n for n in base.listing
                                                    if n in {m.name for m in upto}],
                lambda: base.qom)
    built = overlay(old, parse_design("gated"))
    assert built.machines["pc-q35-4.0"].default_kernel_irqchip_split is True
    assert built.machines["pc-q35-4.1"].default_kernel_irqchip_split is True
    assert built.machines["pc-i440fx-4.1"].default_kernel_irqchip_split is False


def test_a_gate_type_without_a_qom_type_to_copy_gets_none() -> None:
    """A build whose QOM data lacks its newest q35 type's class (a build file may) still
    gets the gate types; only the QOM types it can copy are added."""
    base = get_build("10.2")

    def qom_without_newest_q35() -> QomTypes:
        qom = base._qom()
        del qom.parents["pc-q35-10.2-machine"]
        return qom

    partial = Build("partial", base.version, base.kind, list(base.machines.values()),
                    base.listing, qom_without_newest_q35)
    built = overlay(partial, parse_design("gated"))
    assert "pc-q35-11.0" in built.machines and "pc-q35-11.0-machine" not in built.qom
    assert "pc-i440fx-11.0-machine" in built.qom
