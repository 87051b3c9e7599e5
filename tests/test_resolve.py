"""Resolution order and provenance, without a QEMU (the oracle tests check values)."""

from __future__ import annotations

import pytest

from machines.config import configure
from machines.errors import PropertyError, UsageError
from machines.i386.ioapic import ioapic
from machines.options import parse_args
from machines.registry import get_build
from machines.resolve import Resolver


def resolver(*args: str, release: str = "10.2") -> Resolver:
    return Resolver(configure(get_build(release), parse_args(list(args))))


def test_type_default_when_no_compat_applies() -> None:
    r = resolver("-M", "pc-q35-10.2").resolve("ioapic", "version")
    assert (r.value, r.source.kind) == (0x20, "default")


def test_compat_entry_with_table_and_index() -> None:
    r = resolver("-M", "pc-q35-5.0", release="10.2").resolve("x86_64-cpu", "x-vendor-cpuid-only-v2")
    assert r.value is False
    assert (r.source.kind, r.source.table, r.source.driver) == ("compat", "pc_compat_10_0",
                                                               "x86_64-cpu")
    old = resolver("-M", "pc-q35-2.7", release="10.0").resolve("ioapic", "version")
    assert (old.value, old.source.table) == (0x11, "hw_compat_2_7")


def test_later_compat_entries_win_and_history_is_kept() -> None:
    # intel-iommu aw-bits: 39 from pc_compat_9_1, older tables do not touch it again.
    r = resolver("-M", "pc-q35-8.0", release="10.0").resolve("intel-iommu", "aw-bits")
    assert r.value == 39 and r.source.table == "pc_compat_9_1"
    # virtio-iommu-pci aw-bits: family default 39, then hw_compat_8_2 says 64 (later wins).
    r = resolver("-M", "pc-q35-8.1", release="10.0").resolve("virtio-iommu-pci", "aw-bits")
    assert r.value == 64 and r.source.table == "hw_compat_8_2"
    assert [s.table for s in r.overridden[1:]] == ["pc_q35_compat_defaults"]


def test_global_beats_compat_and_last_global_wins() -> None:
    r = resolver("-M", "pc-q35-2.7", "-global", "ioapic.version=0x20",
                 "-global", "driver=ioapic,property=version,value=021", release="10.0"
                 ).resolve("ioapic", "version")
    assert (r.value, r.source.kind, r.source.text) == (17, "global", "021")
    assert [s.kind for s in r.overridden] == ["default", "compat", "global"]


def test_global_for_a_parent_type_reaches_subtypes() -> None:
    r = resolver("-M", "pc-q35-10.0", "-global", "virtio-pci.ioeventfd=off", release="10.0"
                 ).resolve("virtio-net-pci", "ioeventfd")
    assert (r.value, r.source.kind, r.source.driver) == (False, "global", "virtio-pci")


def test_compat_for_the_backend_reaches_the_proxy_through_its_alias() -> None:
    r = resolver("-M", "pc-q35-8.1", release="10.0").resolve("virtio-net-pci", "host_uso")
    assert (r.value, r.source.table, r.source.driver) == (False, "hw_compat_8_1",
                                                         "virtio-net-device")


def test_cpu_features_are_globals_on_the_cpu_type() -> None:
    r = resolver("-M", "pc-q35-2.7", "-cpu", "qemu64,l3-cache=on", release="10.0"
                 ).resolve("qemu64-x86_64-cpu", "l3-cache")
    assert (r.value, r.source.kind) == (True, "cpu")
    assert r.overridden[-1].table == "pc_compat_2_7"


def test_realize_forces_virtio_1_on_modern_only_devices() -> None:
    r = resolver("-M", "pc-i440fx-2.6", release="10.0").resolve("virtio-tablet-pci",
                                                                "disable-modern")
    assert (r.value, r.source.kind) == (False, "realize")
    assert r.overridden[-1].kind == "compat"  # hw_compat_2_6 said on; realize wins


def test_new_properties_of_a_model_release() -> None:
    r = resolver("-M", "pc-q35-10.2").resolve("mch", "extended-tseg-mbytes")
    assert (r.value, r.source.kind) == (64, "default")
    r = resolver("-M", "pc-q35-10.1").resolve("mch", "extended-tseg-mbytes")
    assert (r.value, r.source.table) == (16, "pc_compat_10_1")
    with pytest.raises(PropertyError):
        resolver("-M", "pc-q35-10.0", release="10.0").resolve("mch", "x-nonexistent")


def test_kernel_irqchip_sources() -> None:
    assert resolver("-M", "pc-q35-10.2").kernel_irqchip() is None  # TCG by default
    r = resolver("-M", "pc-q35-10.2", "-accel", "kvm").kernel_irqchip()
    assert r is not None and (r.value, r.source.kind) == ("on", "machine-default")
    r = resolver("-M", "pc-q35-4.0", "-accel", "kvm", release="10.0").kernel_irqchip()
    assert r is not None and r.value == "split"
    r = resolver("-M", "q35,kernel-irqchip=split", "-accel", "kvm").kernel_irqchip()
    assert r is not None and (r.value, r.source.kind) == ("split", "sugar")
    r = resolver("-M", "q35,kernel-irqchip=off", "-accel", "kvm,kernel-irqchip=split"
                 ).kernel_irqchip()
    assert r is not None and (r.value, r.source.kind) == ("split", "accel")


def test_default_accelerator_follows_the_program_name() -> None:
    assert configure(get_build(), parse_args([], "qemu-system-x86_64")).accel == "tcg"
    assert configure(get_build(), parse_args([], "/usr/libexec/qemu-kvm")).accel == "kvm"
    assert configure(get_build(), parse_args(["-enable-kvm"])).accel == "kvm"
    assert configure(get_build(), parse_args(["-M", "q35,accel=kvm:tcg"])).accel == "kvm"


def test_ioapic_follows_irqchip_mode_and_version_rules() -> None:
    assert ioapic(resolver("-M", "q35", "-accel", "kvm")).type == "kvm-ioapic"
    pic = ioapic(resolver("-M", "q35", "-accel", "kvm,kernel-irqchip=split"))
    assert (pic.type, pic.version, pic.path) == ("ioapic", 0x20, "/machine/q35/ioapic")
    pic = ioapic(resolver("-M", "pc", "-global", "ioapic.version=0x11"))
    assert (pic.version, pic.path, pic.has_eoi_register) == (0x11, "/machine/i440fx/ioapic",
                                                            False)
    with pytest.raises(PropertyError, match="IOAPIC only supports version 0x11 or 0x20"):
        ioapic(resolver("-M", "q35", "-global", "ioapic.version=0x12"))


def test_configuration_errors() -> None:
    with pytest.raises(UsageError, match="unable to find CPU model 'nosuch'"):
        resolver("-cpu", "nosuch")
    with pytest.raises(PropertyError, match=r"Property 'pc-q35-10.2-machine.bogus' not found"):
        resolver("-M", "q35,bogus=1")
    with pytest.raises(PropertyError, match="Parameter 'usb' expects 'on' or 'off'"):
        resolver("-M", "q35,usb=maybe")
    with pytest.raises(UsageError, match="unknown QOM type"):
        resolver().device("no-such-device")


def test_compat_effective_is_the_fold_of_the_list() -> None:
    r = resolver("-M", "pc-q35-2.7", release="10.0")
    folded = r.compat_effective()
    assert folded[("ioapic", "version")].value == 0x11
    machine = get_build("10.0").machines["pc-q35-2.7"]
    assert len(folded) == len({(cp.driver, cp.property) for cp in machine.compat_props()})
