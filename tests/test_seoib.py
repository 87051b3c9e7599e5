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

# (release, QEMU args, kernel, stream, state, flags, lvr bit 24, suppressed, section,
#  rules that must fire in this order, text the error contains)
ROWS: list[tuple[Any, ...]] = [
    # the model's 10.2, split irqchip, default policy auto
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["policy", "kvm-lapic", "auto", "kernel", "guest", "migration"], None),
    ("10.2", f"-M pc-i440fx-10.2 {SPLIT}", NEW, None, R, ENABLE, True, True, True,
     ["auto", "kernel"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", OLD, None, Q, 0, True, False, False,
     ["auto", "auto-fallback", "guest"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11", NEW, None, N, DISABLE,
     False, False, True, ["auto", "kernel"], None),
    ("10.2", "-M q35,kernel-irqchip=split -accel kvm", NEW, None, R, ENABLE, True, True, True,
     ["auto"], None),
    # machine types up to 10.1 carry seoib-policy=quirked in pc_compat_10_1
    ("10.2", f"-M pc-q35-10.1 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["policy", "kvm-lapic", "quirked", "guest"], None),
    ("10.2", f"-M pc-q35-5.0 {SPLIT}", NEW, None, Q, 0, True, False, False, ["quirked"], None),
    ("10.2", f"-M pc-q35-10.1 {SPLIT},seoib-policy=respected", NEW, None, R, ENABLE, True, True,
     True, ["policy", "kvm-lapic", "respected"], None),
    ("10.2", f"-M pc-q35-10.1 {SPLIT} -global kvm-accel.seoib-policy=auto", NEW, None, R,
     ENABLE, True, True, True, ["auto"], None),
    ("10.2", "-M pc-q35-10.1 -accel kvm,kernel-irqchip=split,seoib-policy=quirked "
             "-global kvm-accel.seoib-policy=auto", NEW, None, Q, 0, True, False, False,
     ["quirked"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT},seoib-policy=not-advertised", NEW, None, N, DISABLE,
     False, False, True, ["not-advertised"], None),
    # explicit policies the kernel or the IOAPIC cannot honour
    ("10.2", f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected", OLD, None, None, 0, False, False,
     False, ["refused"], "lacks KVM_X2APIC_API ENABLE_SUPPRESS_EOI_BROADCAST"),
    ("10.2", f"-M pc-q35-10.2 {SPLIT},seoib-policy=not-advertised", OLD, None, None, 0, False,
     False, False, ["refused"], "DISABLE_SUPPRESS_EOI_BROADCAST"),
    ("10.2", f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected -global ioapic.version=0x11", NEW,
     None, None, 0, False, False, False, ["refused"], "has no EOI register"),
    # in-kernel irqchip (the KVM default): IOAPIC 0x11, never advertised
    ("10.2", "-M pc-q35-10.2 -accel kvm", NEW, None, Q, 0, False, False, False,
     ["kvm-lapic", "auto-in-kernel", "guest"], None),
    ("10.2", "-M pc-q35-10.2 -accel kvm,seoib-policy=not-advertised", NEW, None, N, DISABLE,
     False, False, True, ["not-advertised"], None),
    ("10.2", "-M pc-q35-10.2 -accel kvm,seoib-policy=respected", NEW, None, None, 0, False,
     False, False, ["refused"], "needs kernel-irqchip=split"),
    ("10.2", "-M pc-q35-10.2 -accel kvm,seoib-policy=not-advertised", OLD, None, None, 0,
     False, False, False, ["refused"], "lacks"),
    # no KVM LAPIC
    ("10.2", "-M pc-q35-10.2 -accel kvm,kernel-irqchip=off", NEW, None, None, 0, False, False,
     False, ["no-kvm-lapic", "guest"], None),
    ("10.2", "-M pc-q35-10.2 -accel kvm,kernel-irqchip=off,seoib-policy=respected", NEW, None,
     None, 0, False, False, False, ["no-kvm-lapic", "refused"], "needs KVM's in-kernel LAPIC"),
    ("10.2", "-M pc-q35-10.2", NEW, None, None, 0, False, False, False, ["no-kvm-lapic"], None),
    ("10.2", "-M pc-q35-10.2 -global kvm-accel.seoib-policy=not-advertised", NEW, None, None, 0,
     False, False, False, ["refused"], "but this VM runs without KVM"),
    # x2APIC off in the guest CPU: the flag is still set, the guest sees nothing
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -cpu qemu64,-x2apic", NEW, None, R, ENABLE, False, False,
     True, ["auto", "guest"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -cpu qemu64,x2apic=off", NEW, None, R, ENABLE, False,
     False, True, ["guest"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -cpu host", NEW, None, R, ENABLE, True, True, True,
     ["guest"], None),
    # SEOIB-unaware builds never set a flag
    ("10.0", f"-M pc-q35-2.7 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["seoib-unaware", "kvm-lapic", "guest"], None),
    ("10.0.2", f"-M pc-q35-10.0 {SPLIT}", NEW, None, Q, 0, True, False, False,
     ["seoib-unaware"], None),
    ("10.1", "-M pc-q35-10.1 -accel kvm", NEW, None, Q, 0, False, False, False,
     ["seoib-unaware"], None),
    # -incoming / -loadvm: the stream decides
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -incoming defer", NEW, None, Q, 0, True, False, False,
     ["deferred", "stream", "guest"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -incoming defer", NEW, R, R, ENABLE, True, True, True,
     ["deferred", "stream"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected -incoming defer", NEW, Q, Q, 0,
     True, False, False, ["deferred"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -loadvm snap1", NEW, N, N, DISABLE, False, False, True,
     ["deferred"], None),
    ("10.2", f"-M pc-q35-10.2 {SPLIT} -incoming defer", OLD, R, None, 0, False, False, False,
     ["deferred", "refused"], "cannot load the stream"),
    ("10.2", "-M pc-q35-10.2 -accel kvm -incoming defer", NEW, R, None, 0, False, False, False,
     ["refused"], "only QUIRKED is possible without a split irqchip"),
    ("10.0.2", f"-M pc-q35-10.0 {SPLIT} -incoming defer", NEW, R, None, 0, False, False, False,
     ["seoib-unaware", "refused"], "cannot load the stream's x86-seoib-state"),
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
    d = decision(f"-M pc-q35-10.1 {SPLIT}")
    assert d.policy_source is not None and d.policy_source.table == "pc_compat_10_1"
    d = decision(f"-M pc-q35-10.2 {SPLIT}")
    assert d.policy_source is not None and d.policy_source.kind == "default"
    d = decision(f"-M pc-q35-10.2 {SPLIT},seoib-policy=quirked")
    assert d.policy_source is not None and d.policy_source.kind == "accel"
    d = decision(f"-M pc-q35-10.2 {SPLIT} -global kvm-accel.seoib-policy=quirked")
    assert d.policy_source is not None and d.policy_source.kind == "global"


def test_unaware_build_ignores_global_for_the_accelerator_like_qemu() -> None:
    config = configure(get_build("10.0.2"), parse_args(
        ["-M", "pc-q35-10.0", "-accel", "kvm", "-global", "kvm-accel.kernel-irqchip=split"]))
    assert "global kvm-accel.kernel-irqchip has invalid class name" in config.warnings
    assert Resolver(config).kernel_irqchip().value == "on"  # type: ignore[union-attr]


SWEEP_MACHINES = ["pc-q35-10.2", "pc-q35-10.1", "pc-i440fx-6.0"]
SWEEP_IRQCHIP = ["", ",kernel-irqchip=on", ",kernel-irqchip=split", ",kernel-irqchip=off"]
SWEEP_IOAPIC = ["", " -global ioapic.version=0x11", " -global ioapic.version=0x20"]
SWEEP_POLICY = ["", ",seoib-policy=auto", ",seoib-policy=quirked", ",seoib-policy=respected",
                ",seoib-policy=not-advertised", " -global kvm-accel.seoib-policy=respected"]
SWEEP_STREAM: list[tuple[str, SeoibState | None]] = [
    ("", None), (" -incoming defer", None), (" -incoming defer", R), (" -loadvm s", N)]


@pytest.mark.parametrize("kernel", [NEW, OLD], ids=["linux-7.0", "linux-6.12"])
def test_invariants_over_the_sweep(kernel: KernelCaps) -> None:
    seen: set[Any] = set()
    for machine, irq, pic, policy, (inc, stream) in itertools.product(
            SWEEP_MACHINES, SWEEP_IRQCHIP, SWEEP_IOAPIC, SWEEP_POLICY, SWEEP_STREAM):
        accel_policy = policy if policy.startswith(",") else ""
        glob = policy if policy.startswith(" ") else ""
        args = f"-M {machine} -accel kvm{irq}{accel_policy}{pic}{glob}{inc}"
        d = decision(args, kernel, stream=stream)
        seen.add(d.state)
        assert d.flags == (d.state.flag if d.state and not d.error else 0), args
        assert not (d.refused and (d.flags or d.migration_section)), args
        assert d.migration_section == (d.state in (R, N) and not d.refused), args
        if d.eoi_broadcast_suppressed:
            assert d.state is R and "kernel-irqchip=split" in args, args
        if d.flags & ENABLE:
            assert kernel.enable and "kernel-irqchip=split" in args
        if "kernel-irqchip=split" not in args and d.state in (R,):
            raise AssertionError(args)
        if not d.refused and d.state is not None and d.state is not Q:
            assert kernel.has(d.state.flag)
        if not inc and not glob and not accel_policy and machine != "pc-q35-10.2" \
                and machine != "pc-i440fx-10.2":
            assert d.flags == 0, f"{args}: an old machine type with no user policy set a flag"
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


def test_restore_respected_needs_split() -> None:
    assert not check_restore(Q, R, NEW, kernel_irqchip="on").allowed
    assert check_restore(Q, N, NEW, kernel_irqchip="on").allowed


def test_state_names() -> None:
    assert SeoibState.parse("not-advertised") is N
    assert SeoibState.parse("enabled") is R
    assert [s.value for s in SeoibState] == [0, 1, 2]
