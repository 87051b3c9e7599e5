"""The machine-type registry: classes, chains, lifecycle, releases."""

from __future__ import annotations

import pytest

from machines.errors import UnknownMachineError, UsageError
from machines.naming import closest_names, parse_machine_name
from machines.registry import get_build, known_elsewhere


def _names(release: str) -> list[str]:
    return [m.name for m in get_build(release).registered() if m.family]


def test_real_10_0_2_registers_61_pc_types_with_the_bugfix_one() -> None:
    names = _names("10.0.2")
    assert len(names) == 61
    assert "pc-q35-4.0.1" in names and "pc-i440fx-4.0.1" not in names
    assert get_build("10.0.2").default_machine.name == "pc-i440fx-10.0"  # type: ignore[union-attr]


def test_older_version_derives_from_the_next_newer_one() -> None:
    build = get_build("10.2")
    q = build.machines
    assert issubclass(q["pc-q35-9.2"], q["pc-q35-10.0"])
    assert q["pc-q35-9.2"].newer() is q["pc-q35-10.0"]
    assert q["pc-q35-4.0"].newer() is q["pc-q35-4.0.1"]
    assert q["pc-q35-4.0.1"].newer() is q["pc-q35-4.1"]
    assert q["pc-q35-10.2"].newer() is None


def test_compat_tables_in_the_order_qemu_applies_them() -> None:
    tables = [t.name for t in get_build("10.2").machines["pc-q35-9.2"].compat_tables()]
    assert tables == ["pc_q35_compat_defaults", "hw_compat_10_1", "pc_compat_10_1",
                      "hw_compat_10_0", "pc_compat_10_0", "hw_compat_9_2", "pc_compat_9_2"]
    i440fx = [t.name for t in get_build("10.2").machines["pc-i440fx-10.1"].compat_tables()]
    assert i440fx == ["pc_piix_compat_defaults", "hw_compat_10_1", "pc_compat_10_1"]


def test_q35_4_0_split_irqchip_default_and_4_0_1_applies_its_arrays() -> None:
    q = get_build("10.0").machines
    assert q["pc-q35-4.0"].default_kernel_irqchip_split is True
    assert q["pc-q35-4.0.1"].default_kernel_irqchip_split is False
    assert q["pc-q35-3.1"].default_kernel_irqchip_split is False
    assert q["pc-q35-4.0"].own_compat == ()
    assert [t.name for t in q["pc-q35-4.0.1"].own_compat] == ["hw_compat_4_0", "pc_compat_4_0"]
    assert q["pc-q35-4.0"].compat_props() == q["pc-q35-4.0.1"].compat_props()


def test_point_release_difference_in_pc_compat_10_0() -> None:
    def table(release: str) -> list[str]:
        machine = get_build(release).machines["pc-q35-10.0"]
        return [e.property for t in machine.compat_tables() if t.name == "pc_compat_10_0"
                for e in t.entries]

    assert table("10.1") == ["x-consistent-cache", "x-vendor-cpuid-only-v2"]
    assert table("10.1.2") == ["x-consistent-cache", "x-vendor-cpuid-only-v2",
                               "x-arch-cap-always-on", "x-pdcm-on-even-without-pmu"]
    assert table("10.2") == table("10.1.2")


def test_10_2_arrays_from_the_reference() -> None:
    machine = get_build("10.2").machines["pc-q35-10.1"]
    hw = [e for t in machine.compat_tables() if t.name == "hw_compat_10_1" for e in t.entries]
    assert [(e.driver, e.property, e.value) for e in hw][:2] == [
        ("acpi-ged", "x-has-hest-addr", "false"), ("virtio-net-device", "host_tunnel", "off")]
    assert len(hw) == 5
    pc = [(e.driver, e.property) for t in machine.compat_tables() if t.name == "pc_compat_10_1"
          for e in t.entries]
    assert ("mch", "extended-tseg-mbytes") in pc
    family = [(e.driver, e.property) for e in machine.compat_tables()[0].entries]
    assert family == [("virtio-iommu-pci", "aw-bits"), ("ramfb", "use-legacy-x86-rom"),
                      ("vfio-pci-nohotplug", "use-legacy-x86-rom")]


LIFECYCLE = {
    # release: (oldest registered, deprecated versions)
    "10.0": ("2.4", {"2.4", "7.0"}),
    "10.1": ("4.2", {"4.2", "7.1"}),
    "10.2": ("5.0", {"5.0", "7.2"}),
}


@pytest.mark.parametrize("release", sorted(LIFECYCLE))
def test_lifecycle_per_release(release: str) -> None:
    build = get_build(release)
    oldest, deprecated = LIFECYCLE[release]
    versions = {str(m.version) for m in build.registered() if m.family == "pc_q35"}
    assert oldest in versions
    assert all(parse_machine_name(f"x-{v}").version >= parse_machine_name(f"x-{oldest}").version
               for v in versions)
    assert all(build.machines[f"pc-q35-{v}"].deprecated for v in deprecated)
    # the newest q35 type is the release's own version, and it is not deprecated
    newest = max(versions, key=lambda v: parse_machine_name(f"x-{v}").version)
    assert newest == release
    assert not build.machines[f"pc-q35-{newest}"].deprecated


def test_10_1_drops_old_types_and_deletes_2_4_2_5_code() -> None:
    b101 = get_build("10.1")
    assert "pc-q35-4.1" in b101.machines and not b101.machines["pc-q35-4.1"].registered
    assert "pc-q35-2.4" not in b101.machines and "pc-i440fx-2.5" not in b101.machines
    assert "pc-q35-2.6" in b101.machines  # code still there, not registered
    # 4.2, 5.0 .. 9.2 (15), 10.0, 10.1: 18 per family
    assert len(_names("10.1")) == 36
    assert known_elsewhere("pc-q35-4.1").startswith("not available since QEMU 10.1: no longer")
    assert known_elsewhere("pc-q35-2.4") == \
        "not available since QEMU 10.1: removed from QEMU's source"
    assert known_elsewhere("pc-q35-4.2").startswith("not available since QEMU 10.2")
    assert known_elsewhere("pc-q35-9.2") == ""


def test_aliases_and_short_form() -> None:
    build = get_build("10.2")
    assert build.lookup("pc").name == "pc-i440fx-10.2"
    assert build.lookup("q35").name == "pc-q35-10.2"
    assert build.lookup("pc-9.2").name == "pc-i440fx-9.2"
    assert get_build("10.0").lookup("q35").name == "pc-q35-10.0"


def test_unknown_machine_suggests_closest_and_says_why() -> None:
    with pytest.raises(UnknownMachineError) as err:
        get_build("10.2").lookup("pc-q35-4.1", known_elsewhere)
    assert "not available since QEMU 10.1" in str(err.value)
    assert err.value.suggestions[0] == "pc-q35-5.0"
    with pytest.raises(UnknownMachineError) as err:
        get_build("10.2").lookup("pc-q35-10.9")
    assert err.value.suggestions == ("pc-q35-10.2", "pc-q35-10.1", "pc-q35-10.0")
    with pytest.raises(UnknownMachineError) as err:
        get_build("10.2").lookup("qq35")
    assert "q35" in err.value.suggestions


def test_closest_names_for_downstream_versions() -> None:
    names = ["pc-q35-rhel9.6.0", "pc-q35-rhel9.4.0", "pc-q35-rhel8.6.0"]
    assert closest_names("pc-q35-rhel9.5.0", names)[0] in ("pc-q35-rhel9.6.0", "pc-q35-rhel9.4.0")


def test_downstream_names_sort_without_special_cases() -> None:
    versions = sorted(parse_machine_name(n).version for n in  # type: ignore[type-var]
                      ["pc-q35-rhel9.6.0", "pc-q35-rhel10.0.0", "pc-q35-rhel9.10.0"])
    assert [str(v) for v in versions] == ["rhel9.6.0", "rhel9.10.0", "rhel10.0.0"]


def test_unknown_build() -> None:
    with pytest.raises(UsageError, match=r"unknown QEMU build '9\.9'"):
        get_build("9.9")
