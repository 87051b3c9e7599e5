"""End to end on the real /dev/kvm: what the decision predicts is what the guest would see.

For every configuration whose decision reaches the kernel, the flags QEMU
would pass go through kvmglue onto a scratch VM built the same way (split or
in-kernel irqchip, x2APIC in CPUID or not); LVR bit 24 read back must equal
the predicted guest-visible bit.  No guest code runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_seoib import ROWS, SWEEP_IOAPIC, SWEEP_IRQCHIP, SWEEP_MACHINES, SWEEP_POLICY

from kvmglue.kvm import Kvm, x2apic_cpuid
from machines.config import configure
from machines.i386.seoib import (
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
from machines.resolve import Resolver

pytestmark = pytest.mark.kvm


@pytest.fixture(scope="module")
def host(real_kvm: Kvm) -> Any:
    from kvmglue.probe import probe

    return caps(probe(real_kvm))


def _configurations() -> list[tuple[str, str, SeoibState | None]]:
    rows = [(r[0], r[1], r[3]) for r in ROWS]
    # every design laid over the newest release; seoib-policy only where opt-in has it
    for release in ("10.2", "10.2+rfc-v2", "10.2+gated:10.1", "10.2+opt-in"):
        for machine in SWEEP_MACHINES:
            for irq in SWEEP_IRQCHIP:
                for pic in SWEEP_IOAPIC:
                    for policy in SWEEP_POLICY if release.endswith("opt-in") else [""]:
                        rows.append((release, f"-M {machine} -accel kvm{irq}{policy}{pic}", None))
        for cpu in ("", " -cpu qemu64,-x2apic", " -cpu Skylake-Server", " -cpu host"):
            rows.append((release, f"-M q35 -accel kvm,kernel-irqchip=split{cpu}", None))
    return rows


def _apply(kvm: Kvm, inputs: SeoibInputs, d: SeoibDecision) -> bool:
    with kvm.create_vm() as vm:
        if inputs.kernel_irqchip == "split":
            vm.enable_split_irqchip()
        else:
            vm.create_irqchip()
        if d.flags:
            vm.enable_x2apic_api(d.flags)
        with vm.create_vcpu(0) as vcpu:
            vcpu.set_cpuid2(x2apic_cpuid(inputs.x2apic))
            return vcpu.directed_eoi()


def test_every_decision_that_reaches_the_kernel(real_kvm: Kvm, host: Any,
                                                record_property: Any) -> None:
    checked = 0
    for release, args, stream in _configurations():
        resolver = Resolver(configure(get_build(release), parse_args(args.split())))
        inputs = inputs_from(resolver, stream)
        d = decide(inputs, host)
        if d.refused or d.state is None or inputs.kernel_irqchip not in ("on", "split"):
            continue
        assert _apply(real_kvm, inputs, d) == d.lvr_directed_eoi, (release, args, stream)
        checked += 1
    record_property("configurations_checked_on_kvm", checked)
    assert checked >= 40


def test_refused_explicit_policies_are_refused_by_the_kernel_too(real_kvm: Kvm) -> None:
    """ENABLE with an in-kernel irqchip: our refusal is the kernel's EINVAL."""
    from kvmglue.errors import KvmInvalidArgument

    with real_kvm.create_vm() as vm:
        vm.create_irqchip()
        with pytest.raises(KvmInvalidArgument):
            vm.enable_x2apic_api(0x4)


@pytest.mark.parametrize(("current", "snapshot"), [
    (SeoibState.QUIRKED, SeoibState.RESPECTED), (SeoibState.RESPECTED, SeoibState.NOT_ADVERTISED),
    (SeoibState.NOT_ADVERTISED, SeoibState.RESPECTED),
    (SeoibState.NOT_ADVERTISED, SeoibState.QUIRKED),
])
def test_snapshot_restore_on_a_live_vm(real_kvm: Kvm, host: Any, current: SeoibState,
                                       snapshot: SeoibState) -> None:
    """Put a scratch VM in the current mode, restore as QEMU would, read the LVR."""
    result = check_restore(current, snapshot, host, design="opt-in")
    with real_kvm.create_vm() as vm:
        vm.enable_split_irqchip()
        if current.flag:
            vm.enable_x2apic_api(current.flag)
        with vm.create_vcpu(0) as vcpu:
            vcpu.set_cpuid2(x2apic_cpuid(True))
            if result.allowed:
                if result.flags:
                    vm.enable_x2apic_api(result.flags)
                vcpu.set_lapic(vcpu.get_lapic())  # loading the snapshot's LAPIC recomputes
                assert vcpu.directed_eoi() == (snapshot is not SeoibState.NOT_ADVERTISED)
            else:
                # A QUIRKED restore needs a flag-free mode, which the kernel cannot give back:
                # passing no flag leaves DISABLE in force, so the bit QUIRKED would show
                # (set, under a split irqchip) stays clear.
                assert snapshot is SeoibState.QUIRKED
                vm.enable_x2apic_api(0)
                vcpu.set_lapic(vcpu.get_lapic())
                assert vcpu.directed_eoi() is False
