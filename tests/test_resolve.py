"""Resolution order and provenance, without a QEMU (the oracle tests check values)."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_resolve_oracle import _with_accel

from machines.build import Build
from machines.cli import main
from machines.compat.tables import CompatTable, GlobalProperty
from machines.config import configure
from machines.errors import PropertyError, UsageError
from machines.i386.ioapic import ioapic
from machines.options import parse_args
from machines.qom import PropertyInfo, QomTypes
from machines.registry import get_build
from machines.resolve import DEVICE_OPTIONS, Resolved, Resolver, Source, _pci_devfn


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


# -- against what QEMU 10.0.2 said (tests/fixtures/qemu-10.0.2-resolve.json, which
# tests/test_resolve_oracle.py reads again from the real binary) ----------------------------

QEMU_SAID = json.loads((Path(__file__).parent / "fixtures" / "qemu-10.0.2-resolve.json")
                       .read_text())
# What qom-list shows for every object, which are no qdev properties: the resolver leaves them out.
QOM_BOOKKEEPING = {"type", "realized", "hotpluggable", "hotplugged"}


@pytest.mark.parametrize("case", QEMU_SAID["devices"], ids=lambda c: c["type"])
def test_every_property_of_a_device_is_what_qom_get_read(case: dict[str, Any]) -> None:
    config = configure(get_build("10.0.2"), parse_args([*case["args"], "-accel", "tcg"]))
    given = [d for d in config.options.devices if d.driver == case["type"]]
    ours = Resolver(config).device(case["type"], given[0] if given else None)
    real = case["properties"]
    # Every property QEMU lists but links, children and QOM's own bookkeeping, no other.
    assert set(ours) == {n for n, p in real.items() if not p["type"].startswith(
        ("link<", "child<"))} - QOM_BOOKKEEPING
    compared = 0
    for name, r in ours.items():
        if r.decided_at_realize:  # the type default is no answer: QEMU decides at realize
            continue
        assert r.value == real[name]["value"], (name, r.source.describe())
        assert all(isinstance(step, Source) for step in r.overridden), name
        compared += 1
    assert compared >= len(ours) // 2
    for name, text in (given[0].props if given else ()):
        if name not in DEVICE_OPTIONS and name != "addr":
            assert ours[name].source == Source("device", given[0].text, driver=case["type"],
                                               text=text)


def _ids(prefix: str, rows: list[Any]) -> list[str]:
    """Plain, stable test ids: mutmut selects tests by id and maps them to the functions they
    reach, so an id must not hold quotes, blanks or escapes, nor move when a row is added."""
    out = []
    for row in rows:
        raw = json.dumps(row)
        plain = re.sub(r"[^A-Za-z0-9]+", "-", raw).strip("-")[:40]
        out.append(f"{prefix}-{plain}-{zlib.crc32(raw.encode()):08x}")
    return out


@pytest.mark.parametrize(("text", "devfn"), QEMU_SAID["addr"], ids=_ids("addr", QEMU_SAID["addr"]))
def test_pci_addr_as_qemu_reads_it(text: str, devfn: int | None) -> None:
    device = parse_args(["-device", f"e1000,id=e0,addr={text}"]).devices[0]
    resolver = Resolver(configure(get_build("10.0.2"), parse_args(["-accel", "tcg"])))
    if devfn is None:
        with pytest.raises(PropertyError) as err:
            resolver.device("e1000", device)
        assert str(err.value) == \
            f"-device e1000,id=e0,addr={text}: Property 'e1000.addr' doesn't take value '{text}'"
    else:
        r = resolver.device("e1000", device)["addr"]
        assert (r.value, r.source.kind, r.decided_at_realize) == (devfn, "device", False)


def _set_pci_devfn(text: str) -> int | None:
    """QEMU's set_pci_devfn (hw/core/qdev-properties-system.c) with glibc's own sscanf."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    raw = text.encode()
    slot, fn, end = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_int(-1)
    if libc.sscanf(raw, b"%x.%x%n", ctypes.byref(slot), ctypes.byref(fn),
                   ctypes.byref(end)) != 2:
        fn = ctypes.c_uint(0)
        if libc.sscanf(raw, b"%x%n", ctypes.byref(slot), ctypes.byref(end)) != 1:
            return None
    if end.value != len(raw) or fn.value & ~0x7 or slot.value & ~0x1F:
        return None
    return slot.value << 3 | fn.value


@given(st.text(alphabet=" \t+-0xX.15fFg", max_size=9)
       | st.from_regex(r"\A[ +-]?(0[xX])?[0-9a-f]{1,20}(\.[ +-]?(0[xX])?[0-9a-f]{0,3})?\Z"))
def test_pci_addr_is_read_as_glibc_sscanf_reads_it(text: str) -> None:
    assert _set_pci_devfn(text) == _devfn_or_none(text)


def _devfn_or_none(text: str) -> int | None:
    """What the resolver makes of ``addr=text``: the devfn, or None when it refuses it."""
    try:
        return _pci_devfn(text, "e1000")
    except PropertyError:
        return None


@pytest.mark.parametrize("case", QEMU_SAID["refused"], ids=_ids("refused", QEMU_SAID["refused"]))
def test_refused_in_qemus_own_words(case: dict[str, Any], capsys: Any) -> None:
    device = ["--device", case["device"]] if case["device"] else []
    assert main(["resolve", "--release", "10.0.2", *_with_accel(case["args"]), *device]) == 1
    assert capsys.readouterr().err == f"machines: {case['qemu_says']}\n"


def test_compat_effective_is_qemus_list_folded_later_entries_winning() -> None:
    """The fold against QEMU's own compat list (query-machines), entry by entry: each
    driver.property's value, type and source are those of QEMU's last entry for it, and the
    devices QEMU creates read back (qom-get) what the fold says."""
    fold = QEMU_SAID["fold"]
    build = get_build("10.0.2")
    resolver = Resolver(configure(build, parse_args([*fold["args"], "-accel", "tcg"])))
    ours = resolver.compat_effective()
    theirs: dict[tuple[str, str], list[int]] = {}
    for index, (driver, prop, _) in enumerate(fold["compat_props"]):
        theirs.setdefault((driver, prop), []).append(index)
    assert set(ours) == set(theirs)
    assert any(len(at) > 1 for at in theirs.values())  # later entries to win
    listed = build.machines[fold["machine"]].compat_props()
    assert [(cp.driver, cp.property, cp.value) for cp in listed] == \
        [tuple(entry) for entry in fold["compat_props"]]
    for (driver, prop), at in theirs.items():
        r = ours[(driver, prop)]
        last, earlier = listed[at[-1]], [listed[i] for i in at[:-1]]
        assert (r.typename, r.prop) == (driver, prop)
        assert r.source == Source("compat", f"{last.table}[{last.entry}] {last.prop}", last.table,
                                  last.entry, driver, fold["compat_props"][at[-1]][2])
        assert [(s.kind, s.table, s.entry) for s in r.overridden] == \
            [("compat", cp.table, cp.entry) for cp in earlier]
        types = fold["types"][driver]
        if types is None:  # QEMU has no such class: its text, as a string
            assert (r.type, r.value) == ("str", fold["compat_props"][at[-1]][2])
        elif prop in types:
            assert r.type == types[prop], (driver, prop)
    for driver, prop, value in fold["read"]:
        assert ours[(driver, prop)].value == value, (driver, prop)
        assert resolver.resolve(driver, prop).value == value


def test_json_of_resolved_values() -> None:
    """What `resolve --json` prints per property (docs/api.md): the value, the step that set
    it and, for compat entries, QEMU's array, index, driver and text (hw_compat_2_7[2] is
    ioapic.version=0x11 in QEMU's own list); empty and absent fields are left out."""
    q35_27 = resolver("-M", "pc-q35-2.7", release="10.0.2")
    assert q35_27.resolve("ioapic", "version").to_json() == {
        "value": 0x11, "source": "compat", "detail": "hw_compat_2_7[2] ioapic.version=0x11",
        "table": "hw_compat_2_7", "entry": 2, "driver": "ioapic", "text": "0x11"}
    q35 = resolver("-M", "pc-q35-10.0", "-global", "e1000.romsize=0", release="10.0.2")
    assert q35.resolve("virtio-iommu-pci", "aw-bits").to_json() == {
        "value": 39, "source": "compat",
        "detail": "pc_q35_compat_defaults[0] virtio-iommu-pci.aw-bits=39",
        "table": "pc_q35_compat_defaults", "entry": 0, "driver": "virtio-iommu-pci",
        "text": "39"}
    assert q35.resolve("e1000", "romsize").to_json() == {
        "value": 0, "source": "global", "detail": "-global e1000.romsize=0", "driver": "e1000",
        "text": "0"}
    addr = q35.device("e1000")["addr"]
    assert addr.to_json() == {
        "value": -1, "source": "default", "detail": "type default", "decided_at_realize": True,
        "realized_on_plain_machine": addr.realized,
        "realize_rule": "-1: the first free slot of the bus is taken at realize"}
    assert isinstance(addr.realized, int) and addr.realized >= 0
    assert q35.resolve("virtio-tablet-pci", "disable-modern").to_json() == {
        "value": False, "source": "realize",
        "detail": "virtio_pci_force_virtio_1(): modern-only virtio device"}
    assert Source("unset").to_json() == {"source": "unset"}
    assert Source("unset").describe() == "unset"
    assert Source("unset", "no default").describe() == "unset: no default"


def _reaching_accel(base: Build) -> Build:
    """``base`` as a QEMU whose -global reached the accelerator object (Build's knob)."""
    return Build(f"{base.name}-globals-reach-accel", base.version, base.kind,
                 list(base.machines.values()), base.listing, lambda: base.qom,
                 globals_reach_accel=True, accel_compat=base.accel_compat)


def test_global_reaches_the_accelerator_only_where_the_build_says() -> None:
    # Real QEMU (5.2 to 11.1) applies -global to devices only: "global kvm-accel.kernel-irqchip
    # has invalid class name" is all QEMU 10.0.2 says, and the machine's default stays.
    args = parse_args(["-M", "q35", "-global", "kvm-accel.kernel-irqchip=split",
                       "-global", "ioapic.version=0x11", "-accel", "kvm"])
    real = configure(get_build("10.0.2"), args)
    assert "global kvm-accel.kernel-irqchip has invalid class name" in real.warnings
    irqchip = Resolver(real).kernel_irqchip()
    assert irqchip is not None and (irqchip.value, irqchip.source.kind) == ("on",
                                                                          "machine-default")
    knob = Resolver(configure(_reaching_accel(get_build("10.0.2")), args))
    irqchip = knob.kernel_irqchip()
    assert irqchip is not None and (irqchip.value, irqchip.source.kind) == ("split", "global")
    for r in (Resolver(real), knob):  # a device's global applies either way
        assert r.resolve("ioapic", "version").source.kind == "global"


def test_default_sources_say_where_the_default_comes_from() -> None:
    e1000 = next(c for c in QEMU_SAID["devices"] if c["type"] == "e1000")
    r = resolver("-M", "pc-q35-4.0", release="10.0.2").resolve("e1000", "romfile")
    # instance_init sets it (qom-get reads efi-e1000.rom), not the class default
    assert r.value == e1000["properties"]["romfile"]["value"] == "efi-e1000.rom"
    assert r.source.describe() == "instance: value the object sets when created"
    r = resolver("-M", "pc-q35-10.0", release="10.0.2").resolve("ioapic", "version")
    assert r.source.describe() == "default: type default"
    r = resolver("-M", "pc-q35-10.2").resolve("mch", "extended-tseg-mbytes")
    assert r.source.describe() == "default: type default (new or changed in QEMU 10.2)"


def test_kernel_irqchip_machine_default_in_full() -> None:
    # kvm_init(): "split" when the machine class says default_kernel_irqchip_split (only
    # pc-q35-4.0, as test_qemu_oracle reads from the IOAPIC type), else "on".
    for machine, value, flag in (("pc-q35-10.0", "on", "false"), ("pc-q35-4.0", "split", "true")):
        r = resolver("-M", machine, "-accel", "kvm", release="10.0.2").kernel_irqchip()
        assert r == Resolved("kvm-accel", "kernel-irqchip", "on|off|split", value,
                             Source("machine-default",
                                    f"{machine} default_kernel_irqchip_split={flag}"))


def _with_accel_compat(base: Build, accel: str, entries: list[GlobalProperty]) -> Build:
    """``base`` with compat properties for one accelerator (as a build file may carry)."""
    return Build(f"{base.name}-accel-compat", base.version, base.kind,
                 list(base.machines.values()), base.listing, lambda: base.qom,
                 accel_compat={**base.accel_compat, accel: entries})


def test_accelerator_compat_props_come_before_the_machine_types() -> None:
    """object_compat_props[0] (the accelerator's) is applied before [1] (the machine
    type's): a machine compat entry overrides it, and it applies only to its own
    accelerator, driver (or a subtype) and property."""
    entries = [GlobalProperty("virtio-pci", "shpc", "on"),
               GlobalProperty("pci-bridge", "msi", "off"),
               GlobalProperty("pci-device", "shpc", "off")]
    build = _with_accel_compat(get_build("10.0.2"), "kvm", entries)
    kvm = Resolver(configure(build, parse_args(["-M", "pc-q35-10.0", "-accel", "kvm"])))
    r = kvm.resolve("pci-bridge", "shpc")
    assert (r.value, r.source) == (False, Source("accel-compat", "kvm accelerator", None, 2,
                                                 "pci-device", "off"))
    assert [s.kind for s in r.overridden] == ["default"]
    tcg = Resolver(configure(build, parse_args(["-M", "pc-q35-10.0", "-accel", "tcg"])))
    assert tcg.resolve("pci-bridge", "shpc").source.kind == "default"
    old = Resolver(configure(build, parse_args(["-M", "pc-i440fx-2.5", "-accel", "kvm"])))
    r = old.resolve("pci-bridge", "shpc")
    assert r.source.kind == "compat" and r.value is True  # hw_compat_2_8's shpc=on, last
    assert [s.kind for s in r.overridden] == ["default", "accel-compat", "compat"]


def test_an_optional_compat_entry_applies_where_the_property_exists() -> None:
    """QEMU's object_apply_global_props skips an ``optional`` entry only on an object
    without the property; where the property exists it applies like any other entry.
    (No shipped build has one; a build file may.)"""
    base = get_build("10.0.2")
    machine = base.machines["pc-q35-10.0"]
    entry = GlobalProperty("pci-bridge", "shpc", "off", optional=True)
    extended = type("Q35WithOptional", (machine,), {
        "own_compat": (CompatTable("test_optional", (entry,)),)})
    build = Build(f"{base.name}-optional", base.version, base.kind,
                  [extended if m is machine else m for m in base.machines.values()],
                  base.listing, lambda: base.qom)
    r = Resolver(configure(build, parse_args(["-M", "pc-q35-10.0", "-accel", "tcg"])))
    got = r.resolve("pci-bridge", "shpc")
    assert (got.value, got.source.table, got.source.entry) == (False, "test_optional", 0)


def test_sources_of_sugar_globals_and_cpu_options_in_full() -> None:
    r = resolver("-M", "q35,kernel-irqchip=split,kvm-shadow-mem=0x1000000", "-accel", "kvm",
                 "-cpu", "qemu64,l3-cache=on", release="10.0.2")
    irqchip = r.kernel_irqchip()
    assert irqchip is not None and (irqchip.value, irqchip.source) == (
        "split", Source("sugar", "-machine kernel-irqchip=split", driver="kvm-accel",
                        text="split"))
    shadow = r.resolve("kvm-accel", "kvm-shadow-mem")
    assert (shadow.value, shadow.source) == (0x1000000, Source(
        "sugar", "-machine kvm-shadow-mem=0x1000000", driver="kvm-accel", text="0x1000000"))
    l3 = r.resolve("qemu64-x86_64-cpu", "l3-cache")
    assert (l3.value, l3.source) == (True, Source("cpu", "-cpu qemu64,l3-cache=on",
                                                  driver="qemu64-x86_64-cpu", text="on"))
    old = resolver("-M", "pc-q35-2.7", release="10.0.2").resolve("ioapic", "version")
    assert old.source == Source("compat", "hw_compat_2_7[2] ioapic.version=0x11",
                                "hw_compat_2_7", 2, "ioapic", "0x11")


@pytest.mark.parametrize(("cpu", "prop", "value"), QEMU_SAID["cpu"],
                         ids=_ids("cpu", QEMU_SAID["cpu"]))
def test_cpu_plus_and_minus_features_win_as_in_qemu(cpu: str, prop: str, value: bool) -> None:
    """+feat/-feat apply at realize over everything (minus last), '_' spelling allowed."""
    r = resolver("-M", "pc-i440fx-10.0", "-cpu", cpu, release="10.0.2"
                 ).resolve("qemu64-x86_64-cpu", prop)
    flag = ("+" if value else "-") + prop
    assert (r.value, r.source) == (value, Source("cpu", f"-cpu {cpu}",
                                                 driver="qemu64-x86_64-cpu", text=flag))


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_every_accelerator_property_after_the_check(accel: str) -> None:
    """Resolver.accel(): each property qom-list-properties shows for the accelerator class,
    resolved; an -accel option QEMU refuses fails first, in QEMU's words."""
    r = resolver("-M", "q35", "-accel", f"{accel},kernel-irqchip=split" if accel == "kvm"
                 else accel, release="10.0.2")
    props = r.accel()
    assert set(props) == set(QEMU_SAID["accel"][f"{accel}-accel"])
    for name, got in props.items():
        assert got == r.resolve(f"{accel}-accel", name)
    if accel == "kvm":
        assert props["kernel-irqchip"].source == Source("accel", "-accel kvm,kernel-irqchip=split",
                                                        text="split")
    with pytest.raises(PropertyError, match=rf"^-accel {accel},bogus=1: Property "
                                            rf"'{accel}-accel\.bogus' not found$"):
        resolver("-M", "q35", "-accel", f"{accel},bogus=1", release="10.0.2").accel()


def test_a_compat_value_that_does_not_parse_names_its_property() -> None:
    """A build file may carry a compat value the property's type refuses; the fold says
    which property, in QEMU's words for the value."""
    base = get_build("10.0.2")
    machine = base.machines["pc-q35-10.0"]
    bad = type("Q35WithBadValue", (machine,), {"own_compat": (CompatTable(
        "test_bad", (GlobalProperty("pci-bridge", "shpc", "maybe"),)),)})
    build = Build(f"{base.name}-bad", base.version, base.kind,
                  [bad if m is machine else m for m in base.machines.values()],
                  base.listing, lambda: base.qom)
    r = Resolver(configure(build, parse_args(["-M", "pc-q35-10.0", "-accel", "tcg"])))
    with pytest.raises(PropertyError) as err:
        r.compat_effective()
    assert str(err.value) == "Parameter 'shpc' expects 'on' or 'off'"


def test_an_abstract_type_has_no_properties_to_show() -> None:
    with pytest.raises(UsageError) as err:
        resolver("-M", "q35", release="10.0.2").device("virtio-pci")
    assert str(err.value) == "'virtio-pci' is an abstract type; name a concrete one"


@pytest.mark.parametrize(("mode", "prop", "value"), QEMU_SAID["kvm_cpu"],
                         ids=_ids("kvm_cpu", QEMU_SAID["kvm_cpu"]))
def test_kvm_cpu_defaults_follow_kernel_irqchip(mode: str, prop: str, value: bool) -> None:
    r = resolver("-M", "pc-q35-10.0", "-cpu", "qemu64", "-accel", f"kvm,kernel-irqchip={mode}",
                 release="10.0.2").resolve("qemu64-x86_64-cpu", prop)
    assert r.value is value and r.source.kind in ("accel-default", "instance", "default")


def test_properties_without_a_default() -> None:
    r = resolver("-M", "q35", "-accel", "kvm", release="10.0.2")
    for prop, value in (("notify-window", None), ("device", "")):  # NULL strings read ""
        got = r.resolve("kvm-accel", prop)
        assert (got.value, got.source) == (value, Source("unset", "no default")), prop
    with pytest.raises(PropertyError) as err:
        r.resolve("e1000", "bogus")
    assert str(err.value) == "Property 'e1000.bogus' not found"


def test_each_step_is_kept_in_order_in_the_history() -> None:
    kvm = resolver("-M", "pc-q35-10.0", "-cpu", "qemu64", "-accel", "kvm,kernel-irqchip=split",
                   release="10.0.2")
    r = kvm.resolve("qemu64-x86_64-cpu", "kvm-msi-ext-dest-id")
    assert (r.typename, r.prop, r.value) == ("qemu64-x86_64-cpu", "kvm-msi-ext-dest-id", True)
    assert r.source == Source("accel-default", "kvm_default_props: on with a split irqchip",
                              text="on")
    assert r.overridden == (Source("instance", "value the object sets when created"),)
    both = resolver("-M", "q35,kernel-irqchip=on", "-accel", "kvm,kernel-irqchip=split",
                    release="10.0.2").kernel_irqchip()
    assert both is not None and both.overridden == (
        Source("unset", "no default"),
        Source("sugar", "-machine kernel-irqchip=on", driver="kvm-accel", text="on"))
    flags = resolver("-M", "pc", "-cpu", "qemu64,x2apic=off,+x2apic", release="10.0.2"
                     ).resolve("qemu64-x86_64-cpu", "x2apic")
    assert [s.kind for s in flags.overridden] == ["instance", "cpu"]
    assert flags.overridden[1].text == "off"
    config = configure(get_build("10.0.2"), parse_args(["-device", "e1000,mac=52:54:00:00:00:01"]))
    mac = Resolver(config).device("e1000", config.options.devices[0])["mac"]
    assert mac.overridden == (Source("instance", "value the object sets when created"),)


def test_an_unspecified_vector_count_is_left_to_realize() -> None:
    r = resolver("-M", "pc-q35-10.0", release="10.0.2").resolve("virtio-net-pci", "vectors")
    assert (r.value, r.decided_at_realize) == (0xFFFFFFFF, True)
    assert r.realize_rule == "an unspecified vector count (0xFFFFFFFF): realize works it out"


def test_accel_options_reach_the_accelerator_only() -> None:
    # resolve() without check_accel: an -accel option never sets a device's property
    r = resolver("-M", "q35", "-accel", "tcg,netdev=x", release="10.0.2")
    assert r.resolve("e1000", "netdev").value == ""
    bad = resolver("-M", "q35", "-accel", "kvm,kernel-irqchip=maybe", release="10.0.2")
    with pytest.raises(PropertyError) as err:
        bad.kernel_irqchip()
    assert str(err.value) == "Parameter 'kernel-irqchip' does not accept value 'maybe'"


def _with_property(base: Build, typename: str, info: PropertyInfo) -> Build:
    """``base`` whose QOM data records ``info`` on ``typename`` (as a build file may)."""
    def qom() -> QomTypes:
        types = base._qom()
        types.add_property(typename, info)
        return types

    return Build(f"{base.name}-edited", base.version, base.kind, list(base.machines.values()),
                 base.listing, qom)


def test_a_record_without_has_default_is_unset_whatever_its_default_says() -> None:
    build = _with_property(get_build("10.0.2"), "e1000", PropertyInfo("x-test", "uint32", 5,
                                                                      False))
    r = Resolver(configure(build, parse_args(["-M", "q35"]))).resolve("e1000", "x-test")
    assert (r.value, r.source) == (None, Source("unset", "no default"))


def test_kvms_cpu_default_that_does_not_parse_names_its_property() -> None:
    build = _with_property(get_build("10.0.2"), "x86_64-cpu",
                           PropertyInfo("kvm-msi-ext-dest-id", "uint32", 0, True))
    r = Resolver(configure(build, parse_args(["-M", "q35", "-cpu", "qemu64",
                                              "-accel", "kvm,kernel-irqchip=split"])))
    with pytest.raises(PropertyError) as err:
        r.resolve("qemu64-x86_64-cpu", "kvm-msi-ext-dest-id")
    assert str(err.value) == "Parameter 'kvm-msi-ext-dest-id' expects uint64"


def test_a_nics_default_mac_is_decided_at_realize() -> None:
    """QEMU hands out default MACs in creation order: the same e1000 reads :56 alone and :57
    after a virtio-net-pci, so no value of the type is the answer."""
    (alone, alone_mac), (second, second_mac) = QEMU_SAID["mac_order"]
    assert alone_mac != second_mac
    for args in (alone, second):
        r = resolver("-M", "pc-i440fx-10.0", *args, release="10.0.2").resolve("e1000", "mac")
        assert r.decided_at_realize and r.realize_rule is not None
        assert "52:54:00:12:34:56 and up" in r.realize_rule
