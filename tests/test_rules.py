"""One test per rule an audit could break unnoticed (issue 16), each from an independent source.

Every rule has a fast model-level test (no QEMU, no KVM: the mutation run uses these) and,
where one exists, a test against the real thing: QEMU 10.0.2 (the host's, under KVM), the
real /dev/kvm through kvmglue, or the SEOIB RFC's own QEMU (tests/test_rfc_oracle.py).
Each was checked by breaking the rule by hand and watching the test fail (docs/mutation.md).
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from kvmglue.kvm import Kvm, lvr_of, open_kvm, x2apic_cpuid
from kvmglue.sim import SimKernel
from machines.cli import main
from machines.config import configure
from machines.hostprofile import from_spec
from machines.i386.ioapic import ioapic
from machines.i386.seoib import SeoibState, decide, inputs_from
from machines.kernels import caps
from machines.options import keyval_parse, opts_parse, parse_args
from machines.preflight import judge, source_from
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession, QmpCommandError
from machines.registry import build_for_version, get_build
from machines.resolve import Resolver

SPLIT = "-accel kvm,kernel-irqchip=split"


def _codes(args: str, dest: str, state: SeoibState | None, release: str,
           dest_args: str | None = None) -> list[str]:
    config = configure(get_build(release), parse_args(args.split()))
    source = source_from(config, state, "test")
    d = judge(source, from_spec(dest), parse_args(dest_args.split()) if dest_args else None)
    return [r.code for r in d.reasons]


# -- ioapic-version-mismatch compares the IOAPIC type as well as the version ----------------

# (source args, destination args): the same version 0x11 on both sides, but one IOAPIC is
# QEMU's (split irqchip: ioapic) and the other KVM's (kernel-irqchip=on: kvm-ioapic).
IOAPIC_PAIRS = [
    (f"-M pc-q35-10.0 {SPLIT} -global ioapic.version=0x11", "-accel kvm"),
    (f"-M pc-q35-10.0 {SPLIT} -global ioapic.version=0x11", "-accel kvm,kernel-irqchip=on"),
    (f"-M pc-i440fx-10.0 {SPLIT} -global ioapic.version=0x11", "-accel kvm"),
    (f"-M pc-i440fx-2.7 {SPLIT}", "-accel kvm"),  # 0x11 from the compat table, not -global
    ("-M pc-q35-10.0 -accel kvm", f"{SPLIT} -global ioapic.version=0x11"),
    # and the same type and version: no mismatch
    (f"-M pc-q35-10.0 {SPLIT}", SPLIT),
    (f"-M pc-q35-10.0 {SPLIT} -global ioapic.version=0x11", f"{SPLIT} -global "
     "ioapic.version=0x11"),
    ("-M pc-q35-10.0 -accel kvm", "-accel kvm,kernel-irqchip=on"),
    # and a different version of the same type
    (f"-M pc-q35-10.0 {SPLIT}", f"{SPLIT} -global ioapic.version=0x11"),
]


def _model_pic(args: str) -> tuple[str, int]:
    pic = ioapic(Resolver(configure(get_build("10.0.2"), parse_args(args.split()))))
    assert pic is not None
    return pic.type, pic.version


@pytest.mark.parametrize(("source", "dest"), IOAPIC_PAIRS)
def test_ioapic_mismatch_is_type_and_version(source: str, dest: str) -> None:
    differ = _model_pic(source) != _model_pic(f"-M {source.split()[1]} {dest}")
    codes = _codes(source, "linux-7.0/10.0.2", SeoibState.QUIRKED, "10.0.2", dest)
    assert ("ioapic-version-mismatch" in codes) == differ, (source, dest, codes)
    # the same-version pairs are the point: the type alone must block them
    if ("0x11" in source and "0x11" in dest) or "2.7" in source:
        assert differ == (("split" in source) != ("split" in dest))


async def _real_pic(binary: str, args: list[str]) -> tuple[str, int]:
    async with QemuProcess(binary, [*args, "-S", *BASE_ARGS]) as process:
        session = QemuSession(process)
        for board in ("/machine/q35", "/machine/i440fx"):
            try:
                children = await session.qom_list(board)
            except QmpCommandError:
                continue
            kind = next(str(c["type"]) for c in children if c["name"] == "ioapic")
            kind = kind[len("child<"):-1]
            if kind == "kvm-ioapic":  # no version property: KVM's IOAPIC is version 0x11
                return kind, 0x11     # (IOAPIC_VERSION_ID in arch/x86/kvm/ioapic.h)
            return kind, int(await session.qom_get(f"{board}/ioapic", "version"))
    raise AssertionError(f"no IOAPIC in {args}")


@pytest.mark.qemu
@pytest.mark.kvm
def test_ioapic_mismatch_agrees_with_what_real_qemu_builds(qemu_binary: str,
                                                          real_kvm: Kvm) -> None:
    """QEMU 10.0.2 under KVM says which IOAPIC (type, version) each side builds."""
    version = subprocess.run([qemu_binary, "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()[3]
    release = build_for_version(version)
    if release is None:
        pytest.fail(f"QEMU {version} has no shipped build to compare with")

    async def all_pairs() -> list[tuple[tuple[str, int], tuple[str, int]]]:
        out = []
        for source, dest in IOAPIC_PAIRS:
            machine = source.split()[1]
            out.append((await _real_pic(qemu_binary, source.split()),
                        await _real_pic(qemu_binary, ["-M", machine, *dest.split()])))
        return out

    for (source, dest), (real_src, real_dst) in zip(IOAPIC_PAIRS, asyncio.run(all_pairs()),
                                                    strict=True):
        codes = _codes(source, f"linux-7.0/{release}", SeoibState.QUIRKED, release, dest)
        assert ("ioapic-version-mismatch" in codes) == (real_src != real_dst), \
            (source, dest, real_src, real_dst, codes)
    # the list has pairs that differ by type alone, as QEMU builds them
    same_version_other_type = 0
    for src, dst in asyncio.run(all_pairs()):
        same_version_other_type += src[1] == dst[1] and src[0] != dst[0]
    assert same_version_other_type >= 3


# -- seoib-section-unsupported: NOT_ADVERTISED carries the section too -----------------------

@pytest.mark.parametrize("release", ["10.2+rfc-v2", "10.2+opt-in", "10.2+gated:10.0"])
@pytest.mark.parametrize("state", [SeoibState.RESPECTED, SeoibState.NOT_ADVERTISED])
@pytest.mark.parametrize("dest", ["linux-7.0/10.0.2", "linux-7.0/10.2", "linux-6.12/10.1"])
def test_section_unsupported_for_every_state_that_sends_it(release: str, state: SeoibState,
                                                           dest: str) -> None:
    """A design-less QEMU refuses x86-seoib-state whatever state it carries."""
    args = f"-M pc-q35-10.0 {SPLIT}"
    codes = [c for c in _codes(args, dest, state, release) if c.startswith("seoib")]
    assert codes == ["seoib-section-unsupported"], codes
    config = configure(get_build(release), parse_args(args.split()))
    d = judge(source_from(config, state, "test"), from_spec(dest))
    assert state.name in d.reasons[0].message
    # QUIRKED sends no section, and neither does a VM without a split irqchip
    assert "seoib-section-unsupported" not in _codes(args, dest, SeoibState.QUIRKED, release)
    assert "seoib-section-unsupported" not in _codes("-M pc-q35-10.0 -accel kvm", dest, state,
                                                     release)


def test_not_advertised_to_a_design_aware_destination_is_not_unsupported() -> None:
    for design in ("rfc-v2", "opt-in", "gated:10.0"):
        codes = _codes(f"-M pc-q35-10.0 {SPLIT}", f"linux-7.0/10.2+{design}",
                       SeoibState.NOT_ADVERTISED, "10.2+rfc-v2")
        assert "seoib-section-unsupported" not in codes, (design, codes)


# -- compat_effective: later entries win ------------------------------------------------------

# Machine types whose compat list names one driver.property twice with different values
# (the later table is the newer default being reverted, or a per-board fixup).
LATER_WINS = [
    ("pc-i440fx-2.5", "pci-bridge", "shpc"),
    ("pc-i440fx-2.4", "Opteron_G3-x86_64-cpu", "rdtscp"),
    ("pc-i440fx-2.10", "virtio-balloon-device", "qemu-4-0-config-size"),
    ("pc-q35-2.11", "nvme-ns", "eui64-default"),
]


@pytest.mark.parametrize(("machine", "driver", "prop"), LATER_WINS)
def test_compat_effective_later_entries_win(machine: str, driver: str, prop: str) -> None:
    build = get_build("10.0.2")
    resolver = Resolver(configure(build, parse_args(["-M", machine, "-accel", "tcg"])))
    entries = [cp for cp in build.machines[machine].compat_props()
               if (cp.driver, cp.property) == (driver, prop)]
    assert len({cp.value for cp in entries}) > 1, "no longer a repeated entry"
    folded = resolver.compat_effective()[(driver, prop)]
    last = entries[-1]
    assert (folded.source.table, folded.source.entry) == (last.table, last.entry)
    assert folded.source.text == last.value
    assert [(s.table, s.entry) for s in folded.overridden] == \
        [(cp.table, cp.entry) for cp in entries[:-1]]
    # the fold and the resolver agree on every key
    for (drv, name), r in resolver.compat_effective().items():
        if drv in build.qom and name in build.qom.properties(drv) and \
                drv not in build.qom.abstract:
            assert resolver.resolve(drv, name).value == r.value, (drv, name)


@pytest.mark.qemu
def test_compat_effective_later_entry_is_what_real_qemu_sets(qemu_binary: str) -> None:
    """pc-i440fx-2.5 lists pci-bridge.shpc=off then =on: QEMU's bridge has shpc on."""
    async def shpc() -> Any:
        args = ["-M", "pc-i440fx-2.5", "-accel", "tcg", "-device",
                "pci-bridge,chassis_nr=1,id=br", "-S", *BASE_ARGS]
        async with QemuProcess(qemu_binary, args) as process:
            return await QemuSession(process).qom_get("/machine/peripheral/br", "shpc")

    real = asyncio.run(shpc())
    build = get_build("10.0.2")
    resolver = Resolver(configure(build, parse_args(["-M", "pc-i440fx-2.5", "-accel", "tcg"])))
    assert resolver.compat_effective()[("pci-bridge", "shpc")].value == real is True


# -- the simulated kernel's LVR: the whole register, not only bit 24 --------------------------

def _lvrs(kvm: Kvm) -> list[int]:
    """The LVR a fresh vCPU reports, over irqchips, x2APIC CPUID and SEOIB modes."""
    out = []
    for split in (False, True):
        for x2apic in (False, True):
            with kvm.create_vm() as vm:
                if split:
                    vm.enable_split_irqchip()
                else:
                    vm.create_irqchip()
                with vm.create_vcpu(0) as vcpu:
                    out.append(lvr_of(vcpu.get_lapic()))
                    vcpu.set_cpuid2(x2apic_cpuid(x2apic))
                    out.append(lvr_of(vcpu.get_lapic()))
                    vcpu.set_lapic(bytes(len(vcpu.get_lapic())))  # userspace writes zeroes
                    out.append(lvr_of(vcpu.get_lapic()))
    return out


def test_sim_lvr_version_and_max_lvt() -> None:
    """Version 0x14 and max LVT entry 5 (six LVTs), as Linux's KVM reports them."""
    kernel = SimKernel(seoib=True)
    with open_kvm(kernel.device, ops=kernel) as kvm:
        for lvr in _lvrs(kvm):
            assert lvr & 0xFF == 0x14
            assert (lvr >> 16) & 0xFF == 5
            assert lvr & ~0x01FF00FF == 0  # nothing outside version, max LVT, bit 24


@pytest.mark.kvm
def test_sim_lvr_equals_the_real_kvm_lvr(real_kvm: Kvm) -> None:
    from kvmglue._cdefs import KVM_CAP_X2APIC_API, X2APIC_API_SEOIB

    seoib = bool(real_kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB)
    kernel = SimKernel(seoib=seoib)
    with open_kvm(kernel.device, ops=kernel) as sim:
        assert [hex(v) for v in _lvrs(sim)] == [hex(v) for v in _lvrs(real_kvm)]


# -- IOAPIC 0x11 -> NOT_ADVERTISED (rfc-v2), in every spelling and on every board -------------

# The same rows run on the RFC's own QEMU in tests/test_rfc_oracle.py (POWER_ON), which
# checks the state it traces and saves against decide(): these are the oracle's answers.
IOAPIC_ROWS = [
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11", SeoibState.NOT_ADVERTISED),
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=17", SeoibState.NOT_ADVERTISED),
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=021", SeoibState.NOT_ADVERTISED),
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic-common.version=0x11", SeoibState.NOT_ADVERTISED),
    (f"-M pc-q35-10.2 {SPLIT} -global driver=ioapic,property=version,value=0x11",
     SeoibState.NOT_ADVERTISED),
    (f"-M pc-i440fx-5.0 {SPLIT} -global ioapic.version=0x11", SeoibState.NOT_ADVERTISED),
    (f"-M microvm {SPLIT} -global ioapic.version=0x11", SeoibState.NOT_ADVERTISED),
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11 -global ioapic.version=0x20",
     SeoibState.NOT_ADVERTISED),  # the RFC reads the first -global
    (f"-M pc-i440fx-9.0 {SPLIT} -global ioapic.version=0x20 -global ioapic.version=0x11",
     SeoibState.RESPECTED),
    (f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x20", SeoibState.RESPECTED),
    (f"-M pc-q35-10.2 {SPLIT}", SeoibState.RESPECTED),
]


@pytest.mark.parametrize(("args", "state"), IOAPIC_ROWS, ids=[r[0] for r in IOAPIC_ROWS])
def test_rfc_ioapic_version_decides_the_state(args: str, state: SeoibState) -> None:
    kernel = caps(from_spec("linux-7.0/10.2+rfc-v2").kernel)
    config = configure(get_build("10.2+rfc-v2"), parse_args(args.split()))
    d = decide(inputs_from(Resolver(config)), kernel)
    assert not d.refused and d.state is state, d


def test_rfc_oracle_covers_these_rows() -> None:
    from test_rfc_oracle import POWER_ON

    assert {args for args, _ in IOAPIC_ROWS} <= set(POWER_ON)


# -- the keyval ',,' escape: a literal comma, in every parser ---------------------------------

def test_double_comma_is_a_literal_comma_in_each_parser() -> None:
    assert keyval_parse("type=q35,id=a,,b", "type") == [("type", "q35"), ("id", "a,b")]
    assert keyval_parse("q35,x=a,,b,y=c", "type") == [("type", "q35"), ("x", "a,b"), ("y", "c")]
    assert keyval_parse("q35,x=,,", "type") == [("type", "q35"), ("x", ",")]
    assert keyval_parse("type=q35,x=a,,,,b", "type") == [("type", "q35"), ("x", "a,,b")]
    assert opts_parse("kvm,x=a,,b", "accel")[0] == [("accel", "kvm"), ("x", "a,b")]
    assert opts_parse("kvm,x=a,,,,b,y=c", "accel")[0] == [("accel", "kvm"), ("x", "a,,b"),
                                                            ("y", "c")]
    opts = parse_args(["-device", "virtio-net-pci,romfile=a,,b,mac=52:54:00:00:00:01"])
    assert dict(opts.devices[0].props)["romfile"] == "a,b"
    # -global is not an option list: QEMU takes the value verbatim (checked below)
    assert parse_args(["-global", "ioapic.version=0x11,,0x20"]).globals[0].value == \
        "0x11,,0x20"


HELP = "help is not available here; see 'machines list' and 'machines show'"
NIC = "virtio-net-pci"

# Command lines with ',,' that QEMU 10.0.2 accepts (None) or refuses (its first error line,
# without the program name), as QEMU printed them (-S -nodefaults -display none); the test
# below runs each on the host's QEMU again.  HELP: QEMU prints a list and exits.
DOUBLE_COMMA: list[tuple[list[str], str | None]] = [
    (["-machine", "q35,,x"], "-machine q35,,x: Invalid parameter ''"),
    (["-machine", "pc-q35-10.0,dump-guest-core=on,,off"],
     "Parameter 'dump-guest-core' expects 'on' or 'off'"),
    (["-machine", "pc-q35-10.0,,,dump-guest-core=on"],
     "-machine pc-q35-10.0,,,dump-guest-core=on: Invalid parameter ''"),
    (["-machine", "q35,id=a,,b"], "Property 'pc-q35-10.0-machine.id' not found"),
    (["-accel", "kvm,kernel-irqchip=split,,on"], "-accel kvm,kernel-irqchip=split,,on: "
     "Parameter 'kernel-irqchip' does not accept value 'split,on'"),
    # an implied value takes ',,' as a comma too: the accelerator is named 'tcg,x'
    (["-accel", "tcg,,x"], "-accel tcg,,x: invalid accelerator tcg,x"),
    (["-accel", ",,"], "-accel ,,: invalid accelerator ,"),
    (["-accel", "tcg,,x", "-accel", "tcg"], None),
    (["-machine", "accel=tcg,,x"], "invalid accelerator tcg,x"),
    (["-machine", "q35", "-device", f"{NIC},id=ok,mac=52:54:00:00:00:01,,x"],
     f"-device {NIC},id=ok,mac=52:54:00:00:00:01,,x: Property 'virtio-net-device.mac' "
     "doesn't take value '52:54:00:00:00:01,x'"),
    (["-machine", "q35", "-device", f"{NIC},,id=x"],
     f"-device {NIC},,id=x: '{NIC},id=x' is not a valid device model name"),
    # the id is read first, and the first id= counts: 'a,b' is not an identifier
    (["-machine", "q35", "-device", f"{NIC},id=a,,b"],
     f"-device {NIC},id=a,,b: Parameter 'id' expects an identifier"),
    (["-machine", "q35", "-device", "id=a,,b"], "-device id=a,,b: Parameter 'id' expects an "
     "identifier"),
    (["-machine", "q35", "-device", f"{NIC},id=b,,c,id=a"],
     f"-device {NIC},id=b,,c,id=a: Parameter 'id' expects an identifier"),
    (["-machine", "q35", "-device", f"{NIC},id=a,id=b,,c"], None),
    (["-machine", "q35", "-device", f'{{"driver":"{NIC}","id":"a,b"}}'], None),  # JSON: any id
    # -global's short form takes the value verbatim; its uint8 visitor refuses a list
    (["-machine", "q35", "-global", "ioapic.version=0x11,,0x20"],
     "can't apply global ioapic.version=0x11,,0x20: Parameter 'version' expects uint64"),
    (["-machine", "q35", "-global", "driver=ioapic,property=version,value=0x11,,0x20"],
     "can't apply global ioapic.version=0x11,0x20: Parameter 'version' expects uint64"),
    (["-machine", "q35", "-global", "driver=ioapic,property=version,value=0x11,id=g,,h"],
     "-global driver=ioapic,property=version,value=0x11,id=g,,h: Parameter 'id' expects an "
     "identifier"),
]

# The rest of what QEMU's option groups do with accelerators and ids, found with the rows
# above (QEMU 10.0.2's answers, checked by the same test).
ACCEL_AND_ID: list[tuple[list[str], str | None]] = [
    (["-accel", "foo"], "-accel foo: invalid accelerator foo"),
    (["-accel", "xen"], "-accel xen: invalid accelerator xen"),  # not in this build
    (["-accel", "qtest"], "-accel qtest: invalid accelerator qtest"),
    (["-accel", "foo", "-accel", "tcg"], None),
    (["-accel", "tcg", "-accel", "foo"], None),
    (["-accel", "accel="], "-accel accel=: invalid accelerator "),
    (["-accel", "x=1"], HELP),  # no accelerator named: QEMU lists them
    (["-accel", "tcg,accel=help"], HELP),
    (["-accel", "tcg,help"], "-accel tcg,help: Property 'tcg-accel.help' not found"),
    (["-accel", "kvm,accel=tcg"], None),
    (["-accel", "tcg,id=x"], None),
    (["-accel", "tcg,id=1x"], "-accel tcg,id=1x: Parameter 'id' expects an identifier"),
    (["-accel", "tcg,id="], "-accel tcg,id=: Parameter 'id' expects an identifier"),
    (["-accel", "tcg,id=x", "-accel", "kvm,id=x"], "-accel kvm,id=x: Duplicate ID 'x' for "
     "accel"),
    (["-machine", "accel="], "no accelerator found"),
    (["-machine", "accel=foo"], "invalid accelerator foo"),
    (["-machine", "accel=tcg:foo"], None),
    (["-machine", "accel=foo::tcg"], None),
    (["-machine", "q35", "-device", f"{NIC},id=a", "-device", f"{NIC},id=a"],
     f"-device {NIC},id=a: Duplicate ID 'a' for device"),
    (["-machine", "q35", "-device", f"{NIC},id=a.b-c_d"], None),
    (["-machine", "q35", "-device", f"{NIC},id"], None),  # a short-form id=on
    (["-machine", "q35", "-device", f"{NIC},help"], HELP),
    (["-machine", "q35", "-device", "id=ab"], "-device id=ab: Parameter 'driver' is missing"),
    (["-machine", "q35", "-global", "driver=ioapic,property=version,value=0x11,id=g"], None),
    (["-machine", "q35", "-global", "driver=ioapic,property=version,value=0x11,id=g",
      "-global", "driver=ioapic,property=version,value=0x11,id=g"],
     "-global driver=ioapic,property=version,value=0x11,id=g: Duplicate ID 'g' for global"),
    (["-machine", "q35", "-global", "driver=ioapic,bogus=1,help"],
     "-global driver=ioapic,bogus=1,help: Invalid parameter 'bogus'"),
]

# keyval's key names (parse_qapi_name: '__RFQDN_' downstream prefixes, index fragments) and
# -device's JSON form, as QEMU 10.0.2 answered them.
NAMES_AND_JSON: list[tuple[list[str], str | None]] = [
    (["-machine", "q35,_x=1"], "-machine q35,_x=1: Invalid parameter '_x'"),
    (["-machine", "q35,__x=1"], "-machine q35,__x=1: Invalid parameter '__x'"),
    (["-machine", "q35,__=1"], "-machine q35,__=1: Invalid parameter '__'"),
    (["-machine", "q35,__a_=1"], "-machine q35,__a_=1: Invalid parameter '__a_'"),
    (["-machine", "q35,_a_b=1"], "-machine q35,_a_b=1: Invalid parameter '_a_b'"),
    (["-machine", "q35,__a__b=1"], "-machine q35,__a__b=1: Invalid parameter '__a__b'"),
    (["-machine", "q35,__com.redhat_1=1"],
     "-machine q35,__com.redhat_1=1: Invalid parameter '__com.redhat_1'"),
    (["-machine", "q35,__com.redhat_x=1"],
     "Property 'pc-q35-10.0-machine.--com.redhat-x' not found"),
    (["-machine", "q35,__com-1.r_y-z=1"], "Property 'pc-q35-10.0-machine.--com-1.r-y-z' not "
     "found"),
    (["-machine", "q35,x.1a=1"], "-machine q35,x.1a=1: Invalid parameter 'x.1a'"),
    (["-machine", "q35,_=1"], "-machine q35,_=1: Invalid parameter '_'"),
    (["-machine", "q35", "-"], "-: invalid option"),  # not a disk image
    (["-machine", "q35,aXb=1"], "Property 'pc-q35-10.0-machine.aXb' not found"),
    (["-accel", "tcg,aXb=1"], "-accel tcg,aXb=1: Property 'tcg-accel.aXb' not found"),
    (["-machine", f"q35,{'a' * 127}=1"], f"Property 'pc-q35-10.0-machine.{'a' * 127}' not found"),
    (["-machine", f"q35,{'a' * 128}=1"],
     f"-machine q35,{'a' * 128}=1: Parameter '{'a' * 128}' is too long"),
    (["-machine", f"q35,x.{'a' * 128}=1"],
     f"-machine q35,x.{'a' * 128}=1: Parameter fragment '{'a' * 128}' is too long"),
    (["-machine", "q35,_.a=1"], "-machine q35,_.a=1: Invalid parameter '_.a'"),
    (["-machine", "q35,___b=1"], "Property 'pc-q35-10.0-machine.---b' not found"),
    (["-machine", "q35,é=1"], "-machine q35,é=1: Invalid parameter 'é'"),
    (["-machine", f"q35,{'a' * 130}.b@=1"],
     f"-machine q35,{'a' * 130}.b@=1: Parameter fragment '{'a' * 130}' is too long"),
    (["-machine", "q35", "-global", "driver=ioapic,property=version"],
     "-global driver=ioapic,property=version: options 'driver', 'property', and 'value' are "
     "required"),
    (["-machine", "q35,a.b"], "-machine q35,a.b: Expected '=' after parameter 'a.b'"),
    (["-machine", "q35,x.1=1"], "-machine q35,x.1=1: Parameter 'x.0' missing"),
    (["-machine", "q35,x.__a.b_c=1"], "Property 'pc-q35-10.0-machine.x' not found"),
    (["-machine", "q35,smp-cache.0.cache=l1d,smp-cache.0.topology=core"], None),
    (["-machine", "q35,smp_cache.0.cache=l1d,smp_cache.0.topology=core"], None),
    (["-machine", "q35,smp_cache.0.cache=l1d,smp-cache.0.topology=core"],
     "Conflict between 'smp_cache' and 'smp-cache'"),
    (["-machine", "q35", "-device", "[1]"], "-device [1]: '[1]' is not a valid device model "
     "name"),
    (["-machine", "q35", "-device", '{"id":"a"}'], "-device {\"id\":\"a\"}: Parameter 'driver' "
     "is missing"),
    (["-machine", "q35", "-device", '{"driver":1}'], "-device {\"driver\":1}: Parameter "
     "'driver' is missing"),
    (["-machine", "q35", "-device", '{"driver":"nope"}'], "-device {\"driver\":\"nope\"}: "
     "'nope' is not a valid device model name"),
    (["-machine", "q35", "-device", '{"driver":"virtio-net-pci","mq":true}'], None),
    (["-machine", "q35", "-device", '{"driver":"virtio-net-pci","driver":"e1000"}'],
     '-device {"driver":"virtio-net-pci","driver":"e1000"}: JSON parse error, duplicate key'),
    (["-machine", "q35", "-device", "{bad"], "-device {bad: JSON parse error, invalid keyword "
     "'bad'"),
]


# The accelerator QEMU falls back to and the lines it prints on the way.
FALLBACK = [
    (["-accel", "foo", "-accel", "tcg"], ["-accel foo: invalid accelerator foo",
                                          "falling back to tcg"]),
    (["-accel", "tcg,,x", "-accel", "tcg"], ["-accel tcg,,x: invalid accelerator tcg,x",
                                            "falling back to tcg"]),
    (["-accel", "tcg", "-accel", "foo"], []),
    (["-machine", "accel=tcg:foo"], ["invalid accelerator foo", "falling back to tcg"]),
    (["-machine", "accel=foo::tcg"], ["invalid accelerator foo", "invalid accelerator ",
                                      "falling back to tcg"]),
]


def _with_accel(args: list[str]) -> list[str]:
    """The arguments, with -accel tcg unless they choose an accelerator (no KVM needed)."""
    chosen = any(a == "-accel" or a.startswith("accel=") for a in args)
    return args if chosen else [*args, "-accel", "tcg"]


def _model_answer(args: list[str], capsys: Any, release: str = "10.0.2") -> str | None:
    code = main(["resolve", "--release", release, *_with_accel(args)])
    err = capsys.readouterr().err
    if code == 0:
        return None
    assert code == 1 and err.startswith("machines: ") and err.endswith("\n"), (code, err)
    answer = err.removeprefix("machines: ").removesuffix("\n")
    return HELP if answer.endswith(HELP) else answer


# Where the model and QEMU part: the model checks a -device's driver and id, not the
# values of its properties (open, docs/mutation.md).
OPEN = {
    f"-machine q35 -device {NIC},id=ok,mac=52:54:00:00:00:01,,x":
        "the model does not check -device property values",
    "-machine q35,x.1=1": "the model does not check keyval's lists (keyval_listify)",
    "-machine q35 -device {bad": "the model words JSON errors as Python's json does",
}
ANSWERS = [pytest.param(args, answer, id=" ".join(args), marks=[
    pytest.mark.xfail(strict=True, reason=OPEN[" ".join(args)])] if " ".join(args) in OPEN
    else []) for args, answer in DOUBLE_COMMA + ACCEL_AND_ID + NAMES_AND_JSON]


@pytest.mark.parametrize(("args", "answer"), ANSWERS)
def test_double_comma_gets_qemus_answer(args: list[str], answer: str | None,
                                        capsys: Any) -> None:
    assert _model_answer(args, capsys) == answer


@pytest.mark.parametrize(("args", "lines"), FALLBACK, ids=[" ".join(a) for a, _ in FALLBACK])
def test_accelerator_fallback_lines(args: list[str], lines: list[str]) -> None:
    config = configure(get_build("10.0.2"), parse_args(args))
    assert config.accel == "tcg"
    assert [w for w in config.warnings if "accelerator" in w or "falling" in w] == lines


@pytest.mark.qemu
@pytest.mark.parametrize(("args", "answer"), ANSWERS)
def test_double_comma_gets_qemus_own_answer(qemu_binary: str, args: list[str],
                                            answer: str | None, capsys: Any) -> None:
    version = subprocess.run([qemu_binary, "--version"], capture_output=True, text=True,
                             check=True, timeout=60).stdout.split()[3]
    release = build_for_version(version)
    if release is None:
        pytest.fail(f"QEMU {version} has no shipped build to compare with")
    qemu_says = _qemu_answer(qemu_binary, _with_accel(args))[0]
    if version == "10.0.2":
        assert qemu_says == answer
    assert _model_answer(args, capsys, release) == qemu_says


@pytest.mark.qemu
@pytest.mark.parametrize(("args", "lines"), FALLBACK, ids=[" ".join(a) for a, _ in FALLBACK])
def test_accelerator_fallback_lines_are_qemus(qemu_binary: str, args: list[str],
                                              lines: list[str]) -> None:
    assert _qemu_answer(qemu_binary, args) == (None, lines)


def _qemu_answer(binary: str, args: list[str]) -> tuple[str | None, list[str]]:
    """(QEMU's first error line, or None when it starts; HELP when it prints a list and
    exits), and its other lines, without the program name.

    QEMU has started when it answers a QMP command: it reads none before the machine and
    its devices exist (a -global that does not apply stops it after its QMP greeting).
    """
    proc = subprocess.run(
        [binary, *args, "-S", *BASE_ARGS, "-qmp", "stdio"], capture_output=True, text=True,
        timeout=60, input='{"execute": "qmp_capabilities"}\n{"execute": "query-status"}\n'
        '{"execute": "quit"}\n', check=False)
    prefix = binary.rsplit("/", 1)[-1] + ": "
    lines = [line.removeprefix(prefix) for line in proc.stderr.splitlines()
             if line.startswith(prefix) and "warning: " not in line]
    if '"status": "prelaunch"' in proc.stdout:
        return None, lines
    if proc.returncode == 0 and not lines:
        return HELP, []
    return lines[0], lines[1:]
