"""The SEOIB decision: table-driven rows, invariants over a sweep, snapshot restore."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from kvmglue.profile import shipped
from machines.config import configure
from machines.i386.seoib import (
    DISABLE,
    ENABLE,
    KernelCaps,
    SeoibDecision,
    SeoibInputs,
    SeoibState,
    check_restore,
    decide,
    inputs_from,
)
from machines.kernels import caps
from machines.options import parse_args
from machines.registry import get_build
from machines.resolve import Resolver, Source

NEW = caps(shipped("linux-7.0"))
OLD = caps(shipped("linux-6.12"))
Q, R, N = SeoibState.QUIRKED, SeoibState.RESPECTED, SeoibState.NOT_ADVERTISED


def decision(args: str, kernel: KernelCaps = NEW, release: str = "10.2",
             stream: SeoibState | None = None) -> SeoibDecision:
    resolver = Resolver(configure(get_build(release), parse_args(args.split())))
    return decide(inputs_from(resolver, stream), kernel)


SPLIT = "-accel kvm,kernel-irqchip=split"
RFC, OPT = "10.2+rfc-v2", "10.2+opt-in"

# (build, QEMU args, kernel, stream, state, flags, lvr bit 24, suppressed, section,
#  rules that must fire in this order, text the error contains)
ROWS: list[tuple[Any, ...]] = [
    # every real build (design none): QUIRKED, no flag, no section
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["seoib-unaware", "kvm-lapic", "guest"], None),
    ("10.0", f"-M pc-q35-2.7 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["seoib-unaware", "kvm-lapic", "guest"], None),
    ("10.0.2", f"-M pc-q35-10.0 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["seoib-unaware"], None),
    ("10.1", "-M pc-q35-10.1 -accel kvm", NEW, None, Q, 0, False, False, False,
     ["seoib-unaware"], None),
    ("10.0.2", f"-M pc-q35-10.0 {SPLIT} -incoming defer", NEW, R, None, 0, False, False, False,
     ["seoib-unaware", "refused"], "Unknown savevm section or instance 'x86-seoib-state' 0"),
    # rfc-v2: split irqchip under KVM; the IOAPIC version from -global only
    (RFC, f"-M pc-q35-10.2 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["design", "kvm-lapic", "ioapic", "set-state", "guest", "migration"], None),
    (RFC, f"-M pc-i440fx-5.0 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["set-state"], None),
    (RFC, f"-M microvm {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["rfc-microvm", "set-state"], None),
    (RFC, "-M microvm -accel kvm", NEW, None, R, ENABLE, True, True, True, ["set-state"], None),
    (RFC, f"-M none {SPLIT}", NEW, None, Q, 0, True, False, False, ["no-x86-cpus-init"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11", NEW, None, N, DISABLE, False,
     False, True, ["ioapic", "set-state"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11 -global ioapic.version=0x20",
     NEW, None, N, DISABLE, False, False, True,
     ["ioapic", "rfc-first-global", "rfc-ioapic-mismatch", "set-state"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x20 -global ioapic.version=0x11",
     NEW, None, R, ENABLE, True, True, True, ["rfc-first-global", "rfc-ioapic-mismatch"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -global ioapic-common.version=17", NEW, None, N, DISABLE,
     False, False, True, ["set-state"], None),
    ("10.0+rfc-v2", f"-M pc-q35-2.7 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["ioapic", "rfc-ioapic-mismatch", "set-state"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT}", OLD, None, Q, 0, True, False, False,
     ["kernel-check", "rfc-fallback", "guest"], None),
    (RFC, "-M pc-q35-10.2 -accel kvm", NEW, None, Q, 0, False, False, False,
     ["in-kernel", "guest"], None),
    (RFC, "-M pc-q35-10.2 -accel kvm,kernel-irqchip=off", NEW, None, None, 0, False, False,
     False, ["no-kvm-lapic"], None),
    (RFC, "-M pc-q35-10.2 -accel tcg", NEW, None, None, 0, False, False, False,
     ["no-kvm-lapic"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -cpu qemu64,-x2apic", NEW, None, R, ENABLE, False, False,
     True, ["set-state", "guest"], None),
    # rfc-v2 -incoming: nothing at power-on; the section sets the state, or abort()s
    (RFC, f"-M pc-q35-10.2 {SPLIT} -incoming defer", NEW, None, Q, 0, True, False, False,
     ["deferred", "stream", "guest"], None),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11 -incoming defer", NEW, R, R,
     ENABLE, True, True, True, ["deferred", "set-state"], None),
    (RFC, "-M pc-q35-10.2 -accel kvm -incoming defer", NEW, R, None, 0, False, False, False,
     ["deferred", "rfc-abort", "refused"], "SEOIB state is only valid for split irqchip mode."),
    (RFC, "-M pc-q35-10.2 -accel tcg -incoming defer", NEW, R, None, 0, False, False, False,
     ["rfc-abort"], "SEOIB state is only valid for split irqchip mode."),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -incoming defer", OLD, R, None, 0, False, False, False,
     ["set-state-failed", "rfc-abort"], "Failed to set KVM LAPIC SEOIB flags"),
    (RFC, f"-M pc-q35-10.2 {SPLIT} -loadvm snap1", NEW, None, R, ENABLE, True, True, True,
     ["set-state", "rfc-loadvm-silent"], None),
    # gated: the RFC code for types from the gate on (default: the build's next version)
    ("10.2+gated", f"-M pc-q35-10.2 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["design", "gate"], None),
    ("10.2+gated", f"-M pc-q35-11.0 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["set-state"], None),
    ("10.2+gated", f"-M q35 {SPLIT}", NEW, None, R, ENABLE, True, True, True, ["set-state"], None),
    ("10.2+gated:10.1", f"-M pc-i440fx-10.1 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["set-state"], None),
    ("10.2+gated:10.1", f"-M pc-i440fx-10.0 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["gate"], None),
    # opt-in: seoib-policy, default quirked, no gating, no IOAPIC lookup
    (OPT, f"-M pc-q35-10.2 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["policy", "kvm-lapic", "quirked", "guest"], None),
    (OPT, f"-M pc-q35-5.0 {SPLIT},seoib-policy=respected", NEW, None, R, ENABLE, True, True,
     True, ["policy", "kvm-lapic", "respected"], None),
    (OPT, f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected -global ioapic.version=0x11", NEW,
     None, R, ENABLE, True, True, True, ["no-ioapic-lookup", "respected"], None),
    (OPT, f"-M pc-q35-10.2 {SPLIT},seoib-policy=not-advertised", NEW, None, N, DISABLE,
     False, False, True, ["not-advertised"], None),
    (OPT, f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected", OLD, None, None, 0, False, False,
     False, ["refused"], "lacks KVM_X2APIC_API ENABLE_SUPPRESS_EOI_BROADCAST"),
    # no design sends the section without a split irqchip
    (OPT, "-M pc-q35-10.2 -accel kvm,seoib-policy=not-advertised", NEW, None, N, DISABLE,
     False, False, False, ["not-advertised", "migration"], None),
    (OPT, "-M pc-q35-10.2 -accel kvm,seoib-policy=respected", NEW, None, None, 0, False,
     False, False, ["refused"], "needs kernel-irqchip=split"),
    (OPT, "-M pc-q35-10.2 -accel kvm,kernel-irqchip=off,seoib-policy=respected", NEW, None,
     None, 0, False, False, False, ["no-kvm-lapic", "refused"], "needs KVM's in-kernel LAPIC"),
    (OPT, f"-M pc-q35-10.2 {SPLIT} -incoming defer", NEW, R, R, ENABLE, True, True, True,
     ["deferred", "stream"], None),
    (OPT, f"-M pc-q35-10.2 {SPLIT} -incoming defer", OLD, R, None, 0, False, False, False,
     ["deferred", "refused"], "cannot load the stream"),
    (OPT, "-M pc-q35-10.2 -accel kvm -incoming defer", NEW, R, None, 0, False, False, False,
     ["refused"], "only QUIRKED is possible without a split irqchip"),
]


@pytest.mark.parametrize("row", ROWS, ids=[f"{r[0]} {r[1]} {r[2].name} {r[3]}" for r in ROWS])
def test_decision_table(row: tuple[Any, ...]) -> None:
    release, args, kernel, stream, state, flags, lvr, suppressed, section, rules, error = row
    d = decision(args, kernel, release, stream)
    assert d.state is state
    assert d.flags == flags
    assert (d.lvr_directed_eoi, d.eoi_broadcast_suppressed) == (lvr, suppressed)
    assert d.migration_section is section
    fired = [s.rule for s in d.trace]
    positions = [fired.index(r) for r in rules]
    assert positions == sorted(positions), fired
    if error is None:
        assert d.error is None
    else:
        assert d.error is not None and error in d.error


def test_policy_sources() -> None:
    d = decision(f"-M pc-q35-10.2 {SPLIT}", release=OPT)
    assert d.policy == "quirked" and d.policy_source is not None
    assert d.policy_source.kind == "default"
    d = decision(f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected", release=OPT)
    assert d.policy_source is not None and d.policy_source.kind == "accel"
    d = decision(f"-M pc-q35-10.2 {SPLIT}", release=RFC)
    assert d.policy is None  # the posted code has no user setting


def test_no_real_build_reports_seoib() -> None:
    from machines.registry import build_names

    for name in build_names():
        build = get_build(name)
        assert not build.seoib_aware, name
        assert "seoib-policy" not in build.qom.properties("kvm-accel"), name
    assert get_build("10.2+opt-in").seoib_aware
    assert "seoib-policy" in get_build("10.2+opt-in").qom.properties("kvm-accel")
    assert "seoib-policy" not in get_build("10.2+rfc-v2").qom.properties("kvm-accel")


def test_gated_adds_the_next_machine_type_to_any_build() -> None:
    for base in ("10.0", "10.1", "10.2", "10.0.2"):
        plain = get_build(base)
        gated = get_build(f"{base}+gated")
        newest = max(m.version.numbers for m in plain.registered()
                     if m.family and m.version is not None)
        gate = f"{newest[0] + 1}.0" if newest[1] == 2 else f"{newest[0]}.{newest[1] + 1}"
        assert f"pc-q35-{gate}" in gated.machines and f"pc-q35-{gate}" not in plain.machines
        assert gated.find("q35").name == f"pc-q35-{gate}"  # type: ignore[union-attr]
        assert gated.default_machine.name == f"pc-i440fx-{gate}"  # type: ignore[union-attr]
        assert plain.find("q35").name != f"pc-q35-{gate}"  # type: ignore[union-attr]
    assert "pc-q35-11.2" in get_build("10.2+gated:pc-q35-11.2").machines


def test_unaware_build_ignores_global_for_the_accelerator_like_qemu() -> None:
    config = configure(get_build("10.0.2"), parse_args(
        ["-M", "pc-q35-10.0", "-accel", "kvm", "-global", "kvm-accel.kernel-irqchip=split"]))
    assert "global kvm-accel.kernel-irqchip has invalid class name" in config.warnings
    assert Resolver(config).kernel_irqchip().value == "on"  # type: ignore[union-attr]


SWEEP_MACHINES = ["pc-q35-10.2", "pc-q35-10.1", "pc-i440fx-6.0", "microvm"]
SWEEP_IRQCHIP = ["", ",kernel-irqchip=on", ",kernel-irqchip=split", ",kernel-irqchip=off"]
SWEEP_IOAPIC = ["", " -global ioapic.version=0x11", " -global ioapic.version=0x20"]
SWEEP_POLICY = ["", ",seoib-policy=quirked", ",seoib-policy=respected",
                ",seoib-policy=not-advertised"]
SWEEP_STREAM: list[tuple[str, SeoibState | None]] = [
    ("", None), (" -incoming defer", None), (" -incoming defer", R), (" -loadvm s", N)]
SWEEP_BUILDS = ["10.2", "10.0.2", RFC, "10.2+gated", OPT]


@pytest.mark.parametrize("kernel", [NEW, OLD], ids=["linux-7.0", "linux-6.12"])
@pytest.mark.parametrize("release", SWEEP_BUILDS)
def test_invariants_over_the_sweep(kernel: KernelCaps, release: str) -> None:
    seen: set[Any] = set()
    for machine, irq, pic, policy, (inc, stream) in itertools.product(
            SWEEP_MACHINES, SWEEP_IRQCHIP, SWEEP_IOAPIC, SWEEP_POLICY, SWEEP_STREAM):
        if (policy and release != OPT) or machine not in get_build(release).machines:
            continue
        args = f"-M {machine} -accel kvm{irq}{policy}{pic}{inc}"
        d = decision(args, kernel, release, stream=stream)
        seen.add(d.state)
        split = "kernel-irqchip=split" in args or (machine == "microvm" and not irq)
        assert d.flags == (d.state.flag if d.state and not d.error else 0), args
        assert not (d.refused and (d.flags or d.migration_section)), args
        # the section goes with a state other than QUIRKED, and only with a split irqchip
        assert d.migration_section == (d.state in (R, N) and not d.refused and split), args
        if release in ("10.2", "10.0.2"):
            assert d.flags == 0 and not d.migration_section, args
        if d.eoi_broadcast_suppressed:
            assert d.state is R and split, args
        if d.flags & ENABLE:
            assert kernel.enable and split, args
        if not d.refused and d.state is not None and d.state is not Q:
            assert kernel.has(d.state.flag)
        if release == OPT and not inc and not policy:
            assert d.flags == 0, f"{args}: opt-in set a flag nobody asked for"
        if release == "10.2+gated" and not inc and machine != "microvm":
            assert d.flags == 0, f"{args}: a type older than the gate set a flag"
        assert not d.aborts or release in (RFC, "10.2+gated"), args
    assert {Q, None} <= seen


RESTORE = [
    # current, snapshot, kernel, allowed, flags
    (Q, Q, NEW, True, 0),
    (Q, R, NEW, True, ENABLE),
    (Q, N, NEW, True, DISABLE),
    (R, N, NEW, True, DISABLE),
    (N, R, NEW, True, ENABLE),
    (R, Q, NEW, False, 0),
    (N, Q, NEW, False, 0),
    (Q, R, OLD, False, 0),
    (Q, N, OLD, False, 0),
    (R, R, OLD, True, 0),
]


@pytest.mark.parametrize("row", RESTORE, ids=[f"{r[0].name}->{r[1].name} {r[2].name}"
                                              for r in RESTORE])
def test_snapshot_restore(row: tuple[Any, ...]) -> None:
    current, snapshot, kernel, allowed, flags = row
    result = check_restore(current, snapshot, kernel)
    assert (result.allowed, result.flags) == (allowed, flags)
    if snapshot is Q and current is not Q:
        assert result.fix is not None and "-loadvm" in result.fix


def test_rfc_restore_of_a_snapshot_without_the_section_is_silent() -> None:
    r = check_restore(R, Q, NEW, design="rfc-v2")
    assert r.allowed and r.flags == 0 and r.warning is not None and "silently" in r.warning
    r = check_restore(Q, R, OLD, design="rfc-v2")
    assert not r.allowed and r.aborts and "Failed to set KVM LAPIC SEOIB flags" in r.reason
    r = check_restore(Q, R, NEW, kernel_irqchip="on", design="rfc-v2")
    assert r.aborts and "only valid for split irqchip" in r.reason
    r = check_restore(Q, R, NEW, design="none")
    assert not r.allowed and "Unknown savevm section" in r.reason


def test_restore_respected_needs_split() -> None:
    assert not check_restore(Q, R, NEW, kernel_irqchip="on").allowed
    assert check_restore(Q, N, NEW, kernel_irqchip="on").allowed


def test_state_names() -> None:
    assert SeoibState.parse("not-advertised") is N
    assert SeoibState.parse("enabled") is R
    assert [s.value for s in SeoibState] == [0, 1, 2]


# -- snapshot restore, every outcome in full -----------------------------------------------
#
# The kernel's rules (Documentation/virt/kvm/api.rst, KVM_CAP_X2APIC_API): the mode only moves
# QUIRKED -> ENABLED <-> DISABLED, ENABLE needs a split irqchip (test_seoib_kvm checks both on
# /dev/kvm); the RFC's code ignores a snapshot without the section and abort()s where a flag
# cannot be set (test_rfc_oracle); a QEMU without SEOIB code knows no section.

ONLY_ENABLE = KernelCaps("only-enable", True, False)
ONLY_DISABLE = KernelCaps("only-disable", False, True)
NEW_API = "restore it on a host whose kernel has the SEOIB API (Linux 7.0, 6.18.y, 6.19.y)"
UNKNOWN = ("Unknown savevm section or instance 'x86-seoib-state' 0. Make sure that your current "
           "VM setup matches your saved VM setup, including any hotplugged devices")
FLAG_NAME = {R: "ENABLE_SUPPRESS_EOI_BROADCAST", N: "DISABLE_SUPPRESS_EOI_BROADCAST"}


def _restore_expected(current: SeoibState, snapshot: SeoibState, kernel: KernelCaps,
                      irqchip: str, design: str) -> tuple[Any, ...]:
    """(allowed, flags, reason, fix, warning, aborts) by the rules above."""
    has = {Q: True, R: kernel.enable, N: kernel.disable}[snapshot]
    flag = {Q: 0, R: ENABLE, N: DISABLE}[snapshot]
    if design == "none":
        if snapshot is Q:
            return True, 0, "no section, nothing to set", None, None, False
        return (False, 0, f"the snapshot carries x86-seoib-state, which this QEMU cannot load: "
                f"{UNKNOWN}", "restore it with a QEMU that has the SEOIB design that saved it",
                None, False)
    if snapshot is current:
        return True, 0, f"both are {current.name}: nothing to set", None, None, False
    if design in ("rfc-v2", "gated"):
        if snapshot is Q:
            return (True, 0, "the snapshot has no x86-seoib-state: the RFC code sets nothing, so "
                    f"the VM keeps {current.name}",
                    "restart QEMU with -loadvm (a new VM starts QUIRKED)",
                    f"the snapshot was QUIRKED but the VM goes on {current.name}, silently",
                    False)
        if irqchip != "split":
            return (False, 0, "QEMU prints \"SEOIB state is only valid for split irqchip mode.\" "
                    "and calls abort(): the VM is lost",
                    "restore it on a VM started with kernel-irqchip=split", None, True)
        if not has:
            return (False, 0, f"kernel {kernel.name} lacks {FLAG_NAME[snapshot]}: QEMU prints "
                    "\"Failed to set KVM LAPIC SEOIB flags\" and calls abort(): the VM is lost",
                    NEW_API, None, True)
        return (True, flag, f"kvm_lapic_seoib_set_state state={snapshot.value}: "
                f"{FLAG_NAME[snapshot]} is set", None, None, False)
    if snapshot is Q:
        return (False, 0, f"the VM's kernel mode is already {current.name} and KVM never "
                "returns to the legacy QUIRKED mode once a flag is set",
                "restart QEMU with -loadvm (a new VM starts QUIRKED and loads the snapshot's "
                "state)", None, False)
    if snapshot is R and irqchip != "split":
        return (False, 0, "RESPECTED needs a split irqchip; this VM's IOAPIC is in the kernel",
                "restore it on a VM started with kernel-irqchip=split", None, False)
    if not has:
        return (False, 0, f"kernel {kernel.name} lacks {FLAG_NAME[snapshot]}", NEW_API, None,
                False)
    how = ("the first flag leaves QUIRKED for good" if current is Q
           else "ENABLED and DISABLED switch freely; the last call wins")
    return (True, flag, f"{FLAG_NAME[snapshot]} is set ({how}); the guest sees it when the "
            "snapshot's LAPIC state is loaded", None, None, False)


RESTORE_FULL = [
    (current, snapshot, kernel, irqchip, design)
    for design in ("opt-in", "rfc-v2", "gated", "none")
    for current in (Q, R, N) if design != "none" or current is Q
    for snapshot in (Q, R, N)
    for kernel in (NEW, OLD, ONLY_ENABLE, ONLY_DISABLE)
    for irqchip in ("split", "on")
]


@pytest.mark.parametrize("design", ["opt-in", "rfc-v2", "gated", "none"])
def test_snapshot_restore_every_outcome_in_full(design: str) -> None:
    for current, snapshot, kernel, irqchip, row_design in RESTORE_FULL:
        if row_design != design:
            continue
        got = check_restore(current, snapshot, kernel, irqchip, design)
        want = _restore_expected(current, snapshot, kernel, irqchip, design)
        where = (current, snapshot, kernel.name, irqchip, design)
        assert (got.current, got.snapshot) == (current, snapshot), where
        assert (got.allowed, got.flags, got.reason, got.fix, got.warning, got.aborts) == want, \
            where


def test_snapshot_restore_defaults_are_split_and_opt_in() -> None:
    # the opt-in rules (not the RFC's) with a split irqchip (RESPECTED is allowed)
    assert check_restore(R, Q, NEW) == check_restore(R, Q, NEW, "split", "opt-in")
    assert not check_restore(R, Q, NEW).allowed  # the RFC would let it through, silently
    assert check_restore(Q, R, NEW).allowed  # opt-in with kernel-irqchip=on refuses it
    with pytest.raises(ValueError, match="a VM of a QEMU without SEOIB code is always QUIRKED"):
        check_restore(R, R, NEW, design="none")


# -- every step of the trace, word for word -----------------------------------------------
#
# The trace is what `machines seoib` shows a user.  The RFC's own lines (kvm_lapic_seoib_set_state
# state=N, its failure, the fallback warning and the abort lines) are those test_rfc_oracle reads
# from the RFC's binary; the rest is this tool's wording, pinned so that a changed word fails.
# One configuration per branch of the opt-in rules, the stream rules and the RFC's code.

FULL_TRACES: list[tuple[Any, ...]] = [
    # (build, kernel, stream, state, aborts, QEMU args, error, warnings, [(rule, message)])
    ('10.2+opt-in', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split',
     None,
     [], [
         ('policy',
          'seoib-policy=quirked (default: type default)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('quirked',
          'quirked: no flag is set; KVM advertises SEOIB under a split irqchip but keeps '
          'broadcasting EOIs'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+opt-in', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm',
     None,
     [], [
         ('policy',
          'seoib-policy=quirked (default: type default)'),
         ('kvm-lapic',
          "KVM LAPIC with kernel-irqchip=on (in-kernel IOAPIC, version 0x11 from kvm: KVM's "
          'in-kernel IOAPIC is version 0x11 (kernel-irqchip=on))'),
         ('quirked',
          'quirked: no flag is set'),
         ('guest',
          'LVR bit 24 clear (quirked mode, in-kernel IOAPIC)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+opt-in', NEW, None, None, False,
     '-M pc-q35-10.2 -accel kvm,seoib-policy=respected',
     'seoib-policy=respected needs kernel-irqchip=split: KVM rejects '
     'ENABLE_SUPPRESS_EOI_BROADCAST with an in-kernel IOAPIC',
     [], [
         ('policy',
          'seoib-policy=respected (accel: -accel kvm,seoib-policy=respected)'),
         ('kvm-lapic',
          "KVM LAPIC with kernel-irqchip=on (in-kernel IOAPIC, version 0x11 from kvm: KVM's "
          'in-kernel IOAPIC is version 0x11 (kernel-irqchip=on))'),
         ('refused',
          'seoib-policy=respected needs kernel-irqchip=split: KVM rejects '
          'ENABLE_SUPPRESS_EOI_BROADCAST with an in-kernel IOAPIC'),
     ]),
    ('10.2+opt-in', NEW, None, R, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split,seoib-policy=respected -global '
     'ioapic.version=0x11',
     None,
     ['seoib-policy=respected with IOAPIC version 0x11: the opt-in design does not look at the '
      'IOAPIC; that one has no EOI register, so a guest that turns on directed EOI never EOIs '
      'level-triggered interrupts',
      ], [
         ('policy',
          'seoib-policy=respected (accel: -accel kvm,kernel-irqchip=split,seoib-policy=respected)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x11 from global: '
          '-global ioapic.version=0x11)'),
         ('no-ioapic-lookup',
          'seoib-policy=respected with IOAPIC version 0x11: the opt-in design does not look at '
          'the IOAPIC; that one has no EOI register, so a guest that turns on directed EOI '
          'never EOIs level-triggered interrupts'),
         ('respected',
          'respected: ENABLE_SUPPRESS_EOI_BROADCAST is set'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+opt-in', NEW, None, N, False,
     '-M pc-q35-10.2 -accel kvm,seoib-policy=not-advertised',
     None,
     [], [
         ('policy',
          'seoib-policy=not-advertised (accel: -accel kvm,seoib-policy=not-advertised)'),
         ('kvm-lapic',
          "KVM LAPIC with kernel-irqchip=on (in-kernel IOAPIC, version 0x11 from kvm: KVM's "
          'in-kernel IOAPIC is version 0x11 (kernel-irqchip=on))'),
         ('not-advertised',
          'not-advertised: DISABLE_SUPPRESS_EOI_BROADCAST is set (harmless: KVM never '
          'advertises SEOIB with an in-kernel IOAPIC)'),
         ('guest',
          'LVR bit 24 clear (disabled mode, in-kernel IOAPIC)'),
         ('migration',
          'no x86-seoib-state section: it is only sent with a split irqchip'),
     ]),
    ('10.2+opt-in', OLD, None, None, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split,seoib-policy=not-advertised',
     'kernel linux-6.12 lacks KVM_X2APIC_API DISABLE_SUPPRESS_EOI_BROADCAST (bit 3), which '
     'NOT_ADVERTISED needs',
     [], [
         ('policy',
          'seoib-policy=not-advertised (accel: -accel '
          'kvm,kernel-irqchip=split,seoib-policy=not-advertised)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('refused',
          'kernel linux-6.12 lacks KVM_X2APIC_API DISABLE_SUPPRESS_EOI_BROADCAST (bit 3), '
          'which NOT_ADVERTISED needs'),
     ]),
    ('10.2+opt-in', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     None,
     [], [
         ('policy',
          'seoib-policy=quirked (default: type default)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('deferred',
          '-incoming: the state comes from the stream, whatever the policy; flags are set '
          'after the section loads and before the LAPIC state does'),
         ('stream',
          'no x86-seoib-state section known yet: QUIRKED unless the stream says otherwise'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+opt-in', OLD, N, None, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     'cannot load the stream: kernel linux-6.12 lacks KVM_X2APIC_API '
     'DISABLE_SUPPRESS_EOI_BROADCAST (bit 3), which NOT_ADVERTISED needs',
     [], [
         ('policy',
          'seoib-policy=quirked (default: type default)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('deferred',
          '-incoming: the state comes from the stream, whatever the policy; flags are set '
          'after the section loads and before the LAPIC state does'),
         ('stream',
          "the stream's x86-seoib-state is NOT_ADVERTISED"),
         ('refused',
          'cannot load the stream: kernel linux-6.12 lacks KVM_X2APIC_API '
          'DISABLE_SUPPRESS_EOI_BROADCAST (bit 3), which NOT_ADVERTISED needs'),
     ]),
    ('10.2+opt-in', NEW, R, R, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     None,
     [], [
         ('policy',
          'seoib-policy=quirked (default: type default)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('deferred',
          '-incoming: the state comes from the stream, whatever the policy; flags are set '
          'after the section loads and before the LAPIC state does'),
         ('stream',
          "the stream's x86-seoib-state is RESPECTED"),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+gated', NEW, None, R, False,
     '-M pc-q35-11.0 -accel kvm,kernel-irqchip=split',
     None,
     [], [
         ('design',
          'design gated: the RFC v2 code for machine types from 11.0 on'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'no -global sets the IOAPIC version: the RFC assumes 0x20'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=1 (RESPECTED from IOAPIC 0x20: '
          'ENABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+gated:10.1', NEW, None, None, False,
     '-M pc-q35-10.1 -accel kvm,kernel-irqchip=off',
     None,
     [], [
         ('design',
          'design gated: the RFC v2 code for machine types from 10.1 on'),
         ('no-kvm-lapic',
          'kernel-irqchip=off: the RFC code does nothing, there is no SEOIB state'),
         ('guest',
          "QEMU's userspace APIC never advertises directed EOI"),
     ]),
    ('10.2+rfc-v2', NEW, R, None, True,
     '-M pc-q35-10.2 -accel tcg -incoming defer',
     'QEMU aborts: SEOIB state is only valid for split irqchip mode.',
     ['QEMU prints "SEOIB state is only valid for split irqchip mode." and calls abort() when '
      'loading x86-seoib-state without a split irqchip: the QEMU process crashes (SIGABRT)',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('no-kvm-lapic',
          'not KVM: the RFC code does nothing, there is no SEOIB state'),
         ('rfc-abort',
          'QEMU prints "SEOIB state is only valid for split irqchip mode." and calls abort() '
          'when loading x86-seoib-state without a split irqchip: the QEMU process crashes '
          '(SIGABRT)'),
         ('refused',
          'QEMU aborts: SEOIB state is only valid for split irqchip mode.'),
     ]),
    ('10.2+rfc-v2', OLD, R, None, True,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     'QEMU aborts: Failed to set KVM LAPIC SEOIB flags',
     ['QEMU prints "Failed to set KVM LAPIC SEOIB flags" and calls abort() when setting '
      'ENABLE_SUPPRESS_EOI_BROADCAST: the QEMU process crashes (SIGABRT)',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('deferred',
          '-incoming: the RFC sets nothing at power-on; only a loaded x86-seoib-state sets the '
          'flags'),
         ('set-state-failed',
          'kvm_lapic_seoib_set_state_failed state=1 supported=0x3 required=0x4'),
         ('rfc-abort',
          'QEMU prints "Failed to set KVM LAPIC SEOIB flags" and calls abort() when setting '
          'ENABLE_SUPPRESS_EOI_BROADCAST: the QEMU process crashes (SIGABRT)'),
         ('refused',
          'QEMU aborts: Failed to set KVM LAPIC SEOIB flags'),
     ]),
    ('10.2+rfc-v2', NEW, None, N, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -global ioapic.version=0x11 -global '
     'ioapic.version=0x20 -global ioapic.version=0x11',
     None,
     ["-global ioapic.version is given 3 times: the RFC reads the first (0x11), QEMU's IOAPIC "
      'takes the last (0x11)',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'IOAPIC version 0x11 from the first -global ioapic.version=0x11 (qdev_find_global_prop)'),
         ('rfc-first-global',
          "-global ioapic.version is given 3 times: the RFC reads the first (0x11), QEMU's "
          'IOAPIC takes the last (0x11)'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from IOAPIC 0x11: '
          'DISABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 clear (disabled mode)'),
         ('migration',
          'the stream carries x86-seoib-state (NOT_ADVERTISED)'),
     ]),
    ('10.0+rfc-v2', NEW, None, R, False,
     '-M pc-q35-2.7 -accel kvm,kernel-irqchip=split',
     None,
     ['the RFC decides from IOAPIC version 0x20, but QEMU builds version 0x11 (version 0x11 '
      'from compat: hw_compat_2_7[2] ioapic.version=0x11) (machine compat properties are '
      'invisible to qdev_find_global_prop)',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'no -global sets the IOAPIC version: the RFC assumes 0x20'),
         ('rfc-ioapic-mismatch',
          'the RFC decides from IOAPIC version 0x20, but QEMU builds version 0x11 (version '
          '0x11 from compat: hw_compat_2_7[2] ioapic.version=0x11) (machine compat properties '
          'are invisible to qdev_find_global_prop)'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=1 (RESPECTED from IOAPIC 0x20: '
          'ENABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+rfc-v2', NEW, N, N, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -loadvm s',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'no -global sets the IOAPIC version: the RFC assumes 0x20'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=1 (power-on, IOAPIC 0x20)'),
         ('set-state',
          "kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from the snapshot's "
          'x86-seoib-state: DISABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 clear (disabled mode)'),
         ('migration',
          'the stream carries x86-seoib-state (NOT_ADVERTISED)'),
     ]),
    ('10.2+rfc-v2', NEW, None, N, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -global ioapic.version=0x11',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'IOAPIC version 0x11 from the first -global ioapic.version=0x11 (qdev_find_global_prop)'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from IOAPIC 0x11: '
          'DISABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 clear (disabled mode)'),
         ('migration',
          'the stream carries x86-seoib-state (NOT_ADVERTISED)'),
     ]),
    ('10.2+rfc-v2', OLD, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -global ioapic.version=0x11',
     None,
     ['Kernel does not support SEOIB flags; Falling back to QUIRKED lapic SEOIB behavior.',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('kernel-check',
          'KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) on /dev/kvm is 0x3: the RFC needs both '
          'SEOIB bits (0xc)'),
         ('rfc-fallback',
          'Kernel does not support SEOIB flags; Falling back to QUIRKED lapic SEOIB behavior.'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -cpu qemu64,-x2apic',
     None,
     [], [
         ('seoib-unaware',
          'QEMU 10.2 has no SEOIB code (design none): it never sets the SEOIB flags and cannot '
          'load an x86-seoib-state section'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('guest',
          'x2APIC is off in the guest CPU (cpu: -cpu qemu64,-x2apic): LVR bit 24 stays clear '
          'in every mode'),
     ]),
    ('10.2', NEW, None, None, False,
     '-M pc-q35-10.2 -accel tcg',
     None,
     [], [
         ('seoib-unaware',
          'QEMU 10.2 has no SEOIB code (design none): it never sets the SEOIB flags and cannot '
          'load an x86-seoib-state section'),
         ('no-kvm-lapic',
          "runs without KVM: KVM's LAPIC is not used, there is no SEOIB state"),
         ('guest',
          "QEMU's userspace APIC never advertises directed EOI"),
     ]),
    ('10.2', NEW, None, None, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=off',
     None,
     [], [
         ('seoib-unaware',
          'QEMU 10.2 has no SEOIB code (design none): it never sets the SEOIB flags and cannot '
          'load an x86-seoib-state section'),
         ('no-kvm-lapic',
          "runs with kernel-irqchip=off: KVM's LAPIC is not used, there is no SEOIB state"),
         ('guest',
          "QEMU's userspace APIC never advertises directed EOI"),
     ]),
    ('10.0.2', NEW, R, None, False,
     '-M pc-q35-10.0 -accel kvm,kernel-irqchip=split -incoming defer',
     "QEMU 10.0.2 cannot load the stream's x86-seoib-state section (RESPECTED): Unknown savevm "
     "section or instance 'x86-seoib-state' 0. Make sure that your current VM setup matches "
     'your saved VM setup, including any hotplugged devices',
     [], [
         ('seoib-unaware',
          'QEMU 10.0.2 has no SEOIB code (design none): it never sets the SEOIB flags and '
          'cannot load an x86-seoib-state section'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, version 0x20 from default: '
          'type default)'),
         ('refused',
          "QEMU 10.0.2 cannot load the stream's x86-seoib-state section (RESPECTED): Unknown "
          "savevm section or instance 'x86-seoib-state' 0. Make sure that your current VM "
          'setup matches your saved VM setup, including any hotplugged devices'),
     ]),
    ('10.2+opt-in', NEW, R, None, False,
     '-M pc-q35-10.2 -accel tcg -incoming defer',
     "the stream's x86-seoib-state is RESPECTED, but this VM runs without KVM: only QUIRKED "
     'can be loaded',
     [], [
         ('no-kvm-lapic',
          "runs without KVM: KVM's LAPIC is not used, there is no SEOIB state"),
         ('refused',
          "the stream's x86-seoib-state is RESPECTED, but this VM runs without KVM: only "
          'QUIRKED can be loaded'),
     ]),
    ('10.2+opt-in', NEW, None, None, False,
     '-M pc-q35-10.2 -accel tcg -global kvm-accel.seoib-policy=not-advertised',
     "seoib-policy=not-advertised needs KVM's in-kernel LAPIC (kernel-irqchip=on or split), "
     'but this VM runs without KVM',
     [], [
         ('policy',
          'seoib-policy=not-advertised (global: -global kvm-accel.seoib-policy=not-advertised)'),
         ('no-kvm-lapic',
          "runs without KVM: KVM's LAPIC is not used, there is no SEOIB state"),
         ('refused',
          "seoib-policy=not-advertised needs KVM's in-kernel LAPIC (kernel-irqchip=on or "
          'split), but this VM runs without KVM'),
     ]),
    ('10.2+opt-in', NEW, None, None, False,
     '-M pc-q35-10.2 -accel tcg -global kvm-accel.seoib-policy=respected',
     "seoib-policy=respected needs KVM's in-kernel LAPIC (kernel-irqchip=on or split), but "
     'this VM runs without KVM',
     [], [
         ('policy',
          'seoib-policy=respected (global: -global kvm-accel.seoib-policy=respected)'),
         ('no-kvm-lapic',
          "runs without KVM: KVM's LAPIC is not used, there is no SEOIB state"),
         ('refused',
          "seoib-policy=respected needs KVM's in-kernel LAPIC (kernel-irqchip=on or split), "
          'but this VM runs without KVM'),
     ]),
    ('10.2+opt-in', NEW, None, R, False,
     '-M microvm -accel kvm,kernel-irqchip=split,seoib-policy=respected',
     None,
     [], [
         ('policy',
          'seoib-policy=respected (accel: -accel kvm,kernel-irqchip=split,seoib-policy=respected)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split (userspace IOAPIC, no IOAPIC)'),
         ('respected',
          'respected: ENABLE_SUPPRESS_EOI_BROADCAST is set'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+rfc-v2', NEW, None, Q, False,
     '-M none -accel kvm,kernel-irqchip=split',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('no-x86-cpus-init',
          'machine none does not create its CPUs with x86_cpus_init: the RFC code never runs, '
          'no flag is set'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+gated', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split',
     None,
     [], [
         ('design',
          'design gated: the RFC v2 code for machine types from 11.0 on'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('gate',
          'pc-q35-10.2 is older than the gate 11.0: the legacy QUIRKED behaviour, no flag is set'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+rfc-v2', NEW, None, R, False,
     '-M microvm -accel kvm,kernel-irqchip=split',
     None,
     ['microvm is included: the RFC code runs from x86_cpus_init, which microvm calls too',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('rfc-microvm',
          'microvm is included: the RFC code runs from x86_cpus_init, which microvm calls too'),
         ('ioapic',
          'no -global sets the IOAPIC version: the RFC assumes 0x20'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=1 (RESPECTED from IOAPIC 0x20: '
          'ENABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+rfc-v2', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('deferred',
          '-incoming: the RFC sets nothing at power-on; only a loaded x86-seoib-state sets the '
          'flags'),
         ('stream',
          'no x86-seoib-state section: no flag is set, the VM stays QUIRKED'),
         ('guest',
          'LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs (the legacy quirk)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+rfc-v2', NEW, N, N, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -incoming defer',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('deferred',
          '-incoming: the RFC sets nothing at power-on; only a loaded x86-seoib-state sets the '
          'flags'),
         ('set-state',
          "kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from the stream's "
          'x86-seoib-state: DISABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 clear (disabled mode)'),
         ('migration',
          'the stream carries x86-seoib-state (NOT_ADVERTISED)'),
     ]),
    ('10.2+rfc-v2', NEW, R, None, True,
     '-M pc-q35-10.2 -accel kvm -incoming defer',
     'QEMU aborts: SEOIB state is only valid for split irqchip mode.',
     ['QEMU prints "SEOIB state is only valid for split irqchip mode." and calls abort() when '
      'loading x86-seoib-state (RESPECTED) without a split irqchip: the QEMU process crashes '
      '(SIGABRT)',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=on'),
         ('deferred',
          '-incoming: the RFC sets nothing at power-on; only a loaded x86-seoib-state sets the '
          'flags'),
         ('rfc-abort',
          'QEMU prints "SEOIB state is only valid for split irqchip mode." and calls abort() '
          'when loading x86-seoib-state (RESPECTED) without a split irqchip: the QEMU process '
          'crashes (SIGABRT)'),
         ('refused',
          'QEMU aborts: SEOIB state is only valid for split irqchip mode.'),
     ]),
    ('10.2+rfc-v2', NEW, None, Q, False,
     '-M pc-q35-10.2 -accel kvm',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=on'),
         ('in-kernel',
          'kernel-irqchip=on: the RFC code only acts with a split irqchip; no flag is set'),
         ('guest',
          'LVR bit 24 clear (quirked mode, in-kernel IOAPIC)'),
         ('migration',
          'no x86-seoib-state section: QUIRKED is what every QEMU assumes without one'),
     ]),
    ('10.2+rfc-v2', NEW, None, R, False,
     '-M pc-q35-10.2 -accel kvm,kernel-irqchip=split -loadvm s',
     None,
     ['-loadvm of a snapshot without x86-seoib-state: the VM keeps its power-on state '
      'RESPECTED, silently',
      ], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'no -global sets the IOAPIC version: the RFC assumes 0x20'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=1 (power-on, IOAPIC 0x20)'),
         ('rfc-loadvm-silent',
          '-loadvm of a snapshot without x86-seoib-state: the VM keeps its power-on state '
          'RESPECTED, silently'),
         ('guest',
          'LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest sets SPIV '
          'bit 12'),
         ('migration',
          'the stream carries x86-seoib-state (RESPECTED)'),
     ]),
    ('10.2+rfc-v2', NEW, None, N, False,
     '-M pc-i440fx-10.2 -accel kvm,kernel-irqchip=split -global ioapic.version=0x11 -global '
     'sb16.version=0x20',
     None,
     [], [
         ('design',
          'design rfc-v2: the RFC v2 code as posted (no machine-type gate, no user setting)'),
         ('kvm-lapic',
          'KVM LAPIC with kernel-irqchip=split'),
         ('ioapic',
          'IOAPIC version 0x11 from the first -global ioapic.version=0x11 (qdev_find_global_prop)'),
         ('set-state',
          'kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from IOAPIC 0x11: '
          'DISABLE_SUPPRESS_EOI_BROADCAST)'),
         ('guest',
          'LVR bit 24 clear (disabled mode)'),
         ('migration',
          'the stream carries x86-seoib-state (NOT_ADVERTISED)'),
     ]),
]


@pytest.mark.parametrize("row", FULL_TRACES, ids=[f"{r[0]} {r[5]} {r[1].name} {r[2]}"
                                                  for r in FULL_TRACES])
def test_every_step_of_the_trace(row: tuple[Any, ...]) -> None:
    release, kernel, stream, state, aborts, args, error, warnings, steps = row
    d = decision(args, kernel, release, stream)
    assert (d.state, d.error, d.aborts) == (state, error, aborts)
    assert [tuple(s) for s in d.trace] == steps
    assert list(d.warnings) == warnings
    # each warning is also a step of the trace, in the same words
    assert all(w in [s.message for s in d.trace] for w in warnings)


def _inputs(**changes: Any) -> SeoibInputs:
    """Inputs as a caller of decide() may give them, not only as inputs_from() gathers them."""
    base = SeoibInputs(qemu="10.2+opt-in", seoib_aware=True, kvm=True, kernel_irqchip="split",
                       ioapic_version=0x20, ioapic_detail="version 0x20", policy=None,
                       policy_source=None, x2apic=True, x2apic_detail="cpu", design="opt-in",
                       machine="pc-q35-10.2")
    return base._replace(**changes)


def test_decide_reads_its_inputs_alone() -> None:
    from machines.resolve import Source

    # no seoib-policy at all: the opt-in default, quirked
    d = decide(_inputs(), NEW)
    assert (d.state, d.flags, d.error) == (Q, 0, None)
    assert [s.rule for s in d.trace] == ["kvm-lapic", "quirked", "guest", "migration"]
    # a policy only refuses a VM without KVM's LAPIC when the user gave it (-accel, -global)
    for source, refused in [(None, False), (Source("default"), False),
                            (Source("compat", "pc_compat"), False),
                            (Source("accel", "-accel"), True), (Source("global", "-global"), True)]:
        d = decide(_inputs(kvm=False, kernel_irqchip=None, policy="respected",
                           policy_source=source), NEW)
        assert d.refused is refused, source
        assert d.state is None
    # a -global the RFC cannot read as a uint8 leaves it at its 0x20 default
    d = decide(_inputs(design="rfc-v2", seoib_aware=True, ioapic_globals=("junk",)), NEW)
    assert d.state is R
    assert ("ioapic", "IOAPIC version 0x20 from the first -global ioapic.version=junk "
            "(qdev_find_global_prop)") in [tuple(s) for s in d.trace]
    # a stream state is only read with -incoming (or -loadvm): a power-on loads none
    for kvm, irqchip in [(False, None), (True, "off"), (True, "on"), (True, "split")]:
        for design in ("rfc-v2", "opt-in"):
            d = decide(_inputs(design=design, kvm=kvm, kernel_irqchip=irqchip,
                               stream_state=R), NEW)
            assert not d.refused and not d.aborts, (design, kvm, irqchip)


def test_the_rfc_abort_is_flagged_as_a_crash() -> None:
    for args, kernel, stream in [(f"-M pc-q35-10.2 {SPLIT} -incoming defer", OLD, R),
                                 ("-M pc-q35-10.2 -accel kvm -incoming defer", NEW, N),
                                 ("-M pc-q35-10.2 -accel tcg -incoming defer", NEW, R)]:
        d = decision(args, kernel, RFC, stream)
        assert d.aborts is True and d.refused and d.state is None, args
        assert d.error is not None and d.error.startswith("QEMU aborts: ")
    assert decision(f"-M pc-q35-10.2 {SPLIT}", NEW, RFC).aborts is False


def test_state_aliases() -> None:
    assert SeoibState.parse("disabled") is N and SeoibState.parse(" Disabled ") is N
    assert SeoibState.parse("ENABLED") is R and SeoibState.parse("quirked") is Q
    with pytest.raises(KeyError):
        SeoibState.parse("advertised")


def test_kernel_caps_and_all_refused() -> None:
    from machines.i386.seoib import all_refused, kernel_caps

    assert kernel_caps("k", True, False) == KernelCaps("k", True, False, None)
    assert kernel_caps("k", False, True).system_flags == DISABLE
    refused = decision("-M pc-q35-10.2 -accel kvm,seoib-policy=respected", NEW, OPT)
    ok = decision(f"-M pc-q35-10.2 {SPLIT}", NEW, OPT)
    assert refused.refused and not ok.refused
    assert all_refused([refused, refused]) is True
    assert all_refused([refused, ok]) is False and all_refused([ok]) is False
    assert all_refused([]) is False  # nothing to refuse is not "all refused"


KVM_CPU = "accel-default: kvm_default_props for built-in CPU models"
INPUTS_FROM: list[tuple[str, str, SeoibInputs]] = [
    # opt-in without KVM: the policy comes from -global kvm-accel.seoib-policy alone
    (OPT, "-M pc-q35-10.2 -accel tcg -global kvm-accel.seoib-policy=not-advertised",
     SeoibInputs("10.2+opt-in", True, False, None, 0x20, "version 0x20 from default: type default",
                 "not-advertised", Source("global", "-global kvm-accel.seoib-policy=not-advertised",
                                          driver="kvm-accel", text="not-advertised"),
                 False, "not KVM", None, None, "opt-in", "pc-q35-10.2", True, "", False, True, (),
                 "default")),
    # gated: its gate; the RFC's lookup takes the IOAPIC's -global only (not sb16's version)
    ("10.2+gated", "-M pc-i440fx-11.0 -accel kvm,kernel-irqchip=split -global ioapic.version=0x11 "
     "-global sb16.version=0x20 -incoming defer",
     SeoibInputs("10.2+gated", True, True, "split", 0x11,
                 "version 0x11 from global: -global ioapic.version=0x11", None, None, True, KVM_CPU,
                 "-incoming", None, "gated", "pc-i440fx-11.0", True, "11.0", False, True,
                 ("0x11",), "global")),
    # microvm and isapc: no PC IOAPIC, but x86_cpus_init runs
    (RFC, "-M microvm -accel kvm",
     SeoibInputs("10.2+rfc-v2", True, True, "split", 0x20, "no IOAPIC", None, None, True, KVM_CPU,
                 None, None, "rfc-v2", "microvm", True, "", True, True, (), "default")),
    (RFC, "-M isapc -accel kvm,kernel-irqchip=split -loadvm s",
     SeoibInputs("10.2+rfc-v2", True, True, "split", 0x20, "no IOAPIC", None, None, True, KVM_CPU,
                 "-loadvm", None, "rfc-v2", "isapc", True, "", False, True, (), "default")),
    # a real build: no SEOIB code; the IOAPIC of an old type from its compat table
    ("10.0.2", "-M pc-q35-2.7 -accel tcg",
     SeoibInputs("10.0.2", False, False, None, 0x11,
                 "version 0x11 from compat: hw_compat_2_7[2] ioapic.version=0x11", None, None,
                 False, "not KVM", None, None, "none", "pc-q35-2.7", False, "", False, True, (),
                 "compat")),
]


@pytest.mark.parametrize("row", INPUTS_FROM, ids=[f"{r[0]} {r[1]}" for r in INPUTS_FROM])
def test_inputs_from_in_full(row: tuple[str, str, SeoibInputs]) -> None:
    release, args, want = row
    got = inputs_from(Resolver(configure(get_build(release), parse_args(args.split()))))
    assert got._asdict() == want._asdict()
    assert inputs_from(Resolver(configure(get_build(release), parse_args(args.split()))), R
                       ).stream_state is R


@pytest.mark.parametrize(("args", "kernel", "snapshot", "aborts_with"), [
    ("-M pc-q35-10.2 -accel kvm -loadvm s", NEW, R, "SEOIB state is only valid for split"),
    ("-M pc-q35-10.2 -accel kvm,kernel-irqchip=off -loadvm s", NEW, N,
     "SEOIB state is only valid for split"),
    ("-M pc-q35-10.2 -accel tcg -loadvm s", NEW, R, "SEOIB state is only valid for split"),
    (f"-M pc-q35-10.2 {SPLIT} -loadvm s", OLD, R, "Failed to set KVM LAPIC SEOIB flags"),
    (f"-M pc-q35-10.2 {SPLIT} -loadvm s", OLD, N, "Failed to set KVM LAPIC SEOIB flags"),
    # a snapshot without the section: the power-on decision stands
    ("-M pc-q35-10.2 -accel kvm -loadvm s", NEW, None, None),
    ("-M pc-q35-10.2 -accel tcg -loadvm s", NEW, None, None),
    (f"-M pc-q35-10.2 {SPLIT} -loadvm s", OLD, None, None),
])
def test_rfc_loadvm_of_a_section_runs_its_post_load(args: str, kernel: KernelCaps,
                                                    snapshot: SeoibState | None,
                                                    aborts_with: str | None) -> None:
    """The RFC's x86_seoib_post_load runs whenever x86-seoib-state loads, -loadvm as -incoming:
    it abort()s without KVM's split irqchip, and when the kernel cannot take the flag
    (kvm_try_set_lapic_seoib_state fails).  A runtime loadvm (check_restore) says the same."""
    d = decision(args, kernel, RFC, snapshot)
    if aborts_with is None:
        assert not d.aborts and not d.refused
        return
    assert d.aborts and d.state is None and d.flags == 0 and not d.migration_section
    assert d.error is not None and aborts_with in d.error
    irqchip = "split" if "split" in args else "on"
    restore = check_restore(R if snapshot is N else N, snapshot, kernel, irqchip, "rfc-v2")
    if "tcg" not in args and "off" not in args:
        assert restore.aborts and aborts_with in restore.reason


def test_rfc_edges_in_full() -> None:
    """Steps the traces above do not reach: a kernel whose /dev/kvm lacks the bits its VM has
    (the RFC falls back at power-on, then the snapshot's section sets its state), one whose VM
    lacks ENABLE although /dev/kvm reports both (the power-on set fails), -loadvm of a section
    with KVM's IOAPIC, and an IOAPIC the RFC misreads from a -global (not a compat property)."""
    sys_lacks = KernelCaps("sys-lacks", True, True, 0x3)
    d = decision(f"-M pc-q35-10.2 {SPLIT} -loadvm s", sys_lacks, RFC, N)
    assert (d.state, d.flags, d.aborts) == (N, DISABLE, False)
    assert [tuple(s) for s in d.trace][2:5] == [
        ("kernel-check", "KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) on /dev/kvm is 0x3: the RFC "
                         "needs both SEOIB bits (0xc)"),
        ("rfc-fallback", "Kernel does not support SEOIB flags; Falling back to QUIRKED lapic "
                         "SEOIB behavior."),
        ("set-state", "kvm_lapic_seoib_set_state state=2 (NOT_ADVERTISED from the snapshot's "
                      "x86-seoib-state: DISABLE_SUPPRESS_EOI_BROADCAST)")]
    vm_lacks = KernelCaps("vm-lacks-enable", False, True, 0xC)
    d = decision(f"-M pc-q35-10.2 {SPLIT} -loadvm s", vm_lacks, RFC, N)
    assert (d.state, d.aborts, d.error) == (None, True,
                                            "QEMU aborts: Failed to set KVM LAPIC SEOIB flags")
    assert [tuple(s) for s in d.trace][3:5] == [
        ("set-state-failed", "kvm_lapic_seoib_set_state_failed state=1 supported=0xc "
                             "required=0x4"),
        ("rfc-abort", "QEMU prints \"Failed to set KVM LAPIC SEOIB flags\" and calls abort() "
                      "when setting ENABLE_SUPPRESS_EOI_BROADCAST: the QEMU process crashes "
                      "(SIGABRT)")]
    d = decision("-M pc-q35-10.2 -accel kvm -loadvm s", NEW, RFC, R)
    assert [tuple(s) for s in d.trace][2:] == [
        ("in-kernel", "kernel-irqchip=on: the RFC code only acts with a split irqchip; no flag "
                      "is set"),
        ("rfc-abort", "QEMU prints \"SEOIB state is only valid for split irqchip mode.\" and "
                      "calls abort() when loading the snapshot's x86-seoib-state (RESPECTED) "
                      "without a split irqchip: the QEMU process crashes (SIGABRT)"),
        ("refused", "QEMU aborts: SEOIB state is only valid for split irqchip mode.")]
    d = decision(f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11 "
                 "-global ioapic.version=0x20", NEW, RFC)
    assert ("rfc-ioapic-mismatch", "the RFC decides from IOAPIC version 0x11, but QEMU builds "
            "version 0x20 (version 0x20 from global: -global ioapic.version=0x20)") in \
        [tuple(s) for s in d.trace]


def test_a_decision_names_its_kernel_and_is_never_deferred() -> None:
    for release, args in [(RFC, f"-M pc-q35-10.2 {SPLIT}"), (OPT, f"-M pc-q35-10.2 {SPLIT}"),
                          ("10.2", "-M pc-q35-10.2 -accel tcg"),
                          (OPT, "-M pc-q35-10.2 -accel kvm,seoib-policy=respected")]:
        for kernel in (NEW, OLD):
            d = decision(args, kernel, release)
            assert d.kernel == kernel.name and d.deferred is False, (release, args)


def test_opt_in_without_kvm_reads_only_the_seoib_policy_global() -> None:
    config = configure(get_build(OPT), parse_args(
        ["-M", "pc-q35-10.2", "-accel", "tcg", "-global", "kvm-accel.kernel-irqchip=split"]))
    inputs = inputs_from(Resolver(config))
    assert (inputs.policy, inputs.policy_source) == (None, None)


def test_restore_on_a_qemu_without_seoib_code_needs_a_quirked_vm() -> None:
    for current in (R, N):
        with pytest.raises(ValueError) as err:
            check_restore(current, Q, NEW, design="none")
        assert str(err.value) == "a VM of a QEMU without SEOIB code is always QUIRKED"


def test_the_rfc_lookup_without_an_ioapic_type_in_the_qom_tree(monkeypatch: Any) -> None:
    """A QEMU whose QOM tree has no ioapic type (every shipped build has one): the RFC's
    lookup still matches -global ioapic.version by the driver's own name."""
    config = configure(get_build(RFC), parse_args(
        f"-M pc-q35-10.2 {SPLIT} -global ioapic-common.version=0x11 "
        "-global ioapic.version=0x20".split()))
    resolver = Resolver(config)
    assert inputs_from(resolver).ioapic_globals == ("0x11", "0x20")  # its ancestry: both
    qom_type = type(config.build.qom)
    contains = qom_type.__contains__
    monkeypatch.setattr(qom_type, "__contains__",
                        lambda self, name: name != "ioapic" and contains(self, name))
    assert inputs_from(resolver).ioapic_globals == ("0x20",)
