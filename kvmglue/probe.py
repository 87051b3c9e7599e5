"""The probe: what this kernel's KVM offers for x2APIC and SEOIB.

:func:`probe` works on any :class:`~kvmglue.kvm.Kvm` handle, so the same code
reads the real /dev/kvm and the simulated kernels of :mod:`kvmglue.sim`.  It
asks KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) where QEMU does (on /dev/kvm,
on a fresh VM, on a VM with a split irqchip), then runs the conformance
cases of :mod:`kvmglue.conformance`, each on its own scratch VM.  No guest
code ever runs, and every descriptor it opens is closed before it returns,
whether it succeeds or raises.
"""

from __future__ import annotations

from collections.abc import Sequence

from kvmglue._cdefs import KVM_CAP_SPLIT_IRQCHIP, KVM_CAP_X2APIC_API, X2ApicApi
from kvmglue.conformance import CASES, REFUSALS, Case, run_cases
from kvmglue.errors import KvmError
from kvmglue.kvm import DEFAULT_PATH, LIBC_OPS, Kvm, KvmOps, open_kvm
from kvmglue.profile import KernelProfile, Supports, X2ApicApiAnswers


def probe(
    kvm: Kvm,
    *,
    name: str = "host",
    origin: str = "probe",
    cases: Sequence[Case] = CASES,
) -> KernelProfile:
    """Probe the kernel behind ``kvm`` (raises :class:`KvmError` if KVM fails)."""
    system = kvm.check_extension(KVM_CAP_X2APIC_API)
    has_split = kvm.check_extension(KVM_CAP_SPLIT_IRQCHIP) > 0
    with kvm.create_vm() as vm:
        fresh = vm.check_extension(KVM_CAP_X2APIC_API)
        if has_split:
            try:
                vm.enable_split_irqchip()
            except KvmError as err:
                if err.errno not in REFUSALS:
                    raise
                has_split = False
        split = vm.check_extension(KVM_CAP_X2APIC_API)
    return KernelProfile(
        name=name,
        origin=origin,
        kernel_release=kvm.kernel_release(),
        kvm_api_version=kvm.api_version(),
        x2apic_api=X2ApicApiAnswers(system=system, vm=fresh, vm_split_irqchip=split),
        supports=Supports(
            x2apic_api=system != 0,
            split_irqchip=has_split,
            enable_suppress_eoi_broadcast=bool(system & X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST),
            disable_suppress_eoi_broadcast=bool(
                system & X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST),
        ),
        conformance=run_cases(kvm, cases),
    )


def probe_device(
    path: str = DEFAULT_PATH,
    *,
    ops: KvmOps = LIBC_OPS,
    name: str = "host",
    origin: str = "probe",
) -> KernelProfile:
    """Open ``path`` (raises :class:`~kvmglue.errors.KvmUnavailable`) and probe it."""
    with open_kvm(path, ops=ops) as kvm:
        return probe(kvm, name=name, origin=origin)
