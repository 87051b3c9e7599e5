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
    SeoibState,
    check_restore,
    decide,
    inputs_from,
)
from machines.kernels import caps
from machines.options import parse_args
from machines.registry import get_build
from machines.resolve import Resolver

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
