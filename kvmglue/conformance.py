"""Conformance cases: short ioctl scripts whose answers describe a kernel.

A :class:`Case` is a list of steps run on a fresh scratch VM.  Each step
records one result string: ``"ok"``, a hex mask for KVM_CHECK_EXTENSION,
``"directed-eoi"``/``"no-directed-eoi"`` for a read of LVR bit 24, the errno
name when the kernel refuses the step (EINVAL, EEXIST), or ``"skipped"`` when
it needs a vCPU that could not be created.  Other errors (ENOTTY, ENOMEM...)
are not answers about the kernel's rules but a broken environment, and are
raised.

:data:`CASES` are the ones ``machines probe`` runs and records in a kernel
profile; :data:`EDGE_CASES` add what only the differential tests need.  Case
ids are stable: profiles and the SEOIB policy refer to them.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence

import attrs

from kvmglue._cdefs import (
    APIC_LVR,
    APIC_LVR_DIRECTED_EOI,
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    SPLIT_IRQCHIP_ROUTES,
    X2APIC_API_LEGACY,
    X2APIC_API_SEOIB,
    X2ApicApi,
)
from kvmglue.errors import KvmError
from kvmglue.kvm import CpuidEntry, Kvm, Vcpu, Vm, lvr_of, x2apic_cpuid
from kvmglue.profile import CaseResult, Outcome

#: Errnos that are the kernel's answer to a step, not an accident.
REFUSALS = frozenset({errno.EINVAL, errno.EEXIST})

OK = "ok"
DIRECTED_EOI = "directed-eoi"
NO_DIRECTED_EOI = "no-directed-eoi"
SKIPPED = "skipped"

ENABLE = X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST
DISABLE = X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST

_CAP_NAMES = {
    KVM_CAP_IRQCHIP: "KVM_CAP_IRQCHIP",
    KVM_CAP_SPLIT_IRQCHIP: "KVM_CAP_SPLIT_IRQCHIP",
    KVM_CAP_X2APIC_API: "KVM_CAP_X2APIC_API",
}


class _Run:
    """The handles one case works on; closed together when it ends."""

    def __init__(self, kvm: Kvm, vm: Vm, stack: contextlib.ExitStack) -> None:
        self.kvm = kvm
        self.vm = vm
        self.stack = stack
        self.vcpus: dict[int, Vcpu] = {}
        self.lvr_reads: list[bool] = []


class _NoVcpu(Exception):
    """The step's vCPU was never created (its creation was refused)."""


@attrs.frozen
class Step:
    """One ioctl (or a read of its result) in a case."""

    def describe(self) -> str:
        raise NotImplementedError

    def perform(self, run: _Run) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.describe()


@attrs.frozen
class SplitIrqchip(Step):
    routes: int = SPLIT_IRQCHIP_ROUTES

    def describe(self) -> str:
        return f"KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, {self.routes})"

    def perform(self, run: _Run) -> str:
        run.vm.enable_split_irqchip(self.routes)
        return OK


@attrs.frozen
class CreateIrqchip(Step):
    def describe(self) -> str:
        return "KVM_CREATE_IRQCHIP"

    def perform(self, run: _Run) -> str:
        run.vm.create_irqchip()
        return OK


@attrs.frozen
class X2ApicApiFlags(Step):
    flags: int

    def describe(self) -> str:
        names = "|".join(flag.name or "" for flag in X2ApicApi if flag & self.flags)
        unknown = self.flags & ~int(X2APIC_API_LEGACY | X2APIC_API_SEOIB)
        if unknown:
            names = "|".join(filter(None, [names, f"{unknown:#x}"]))
        return f"KVM_ENABLE_CAP(KVM_CAP_X2APIC_API, {self.flags:#x}{' ' + names if names else ''})"

    def perform(self, run: _Run) -> str:
        run.vm.enable_x2apic_api(self.flags)
        return OK


@attrs.frozen
class CheckExtension(Step):
    cap: int = KVM_CAP_X2APIC_API
    scope: str = "vm"  # or "system"

    def describe(self) -> str:
        where = "/dev/kvm" if self.scope == "system" else "the VM"
        return f"KVM_CHECK_EXTENSION({_CAP_NAMES.get(self.cap, self.cap)}) on {where}"

    def perform(self, run: _Run) -> str:
        handle = run.kvm if self.scope == "system" else run.vm
        return hex(handle.check_extension(self.cap))


@attrs.frozen
class CreateVcpu(Step):
    vcpu: int = 0

    def describe(self) -> str:
        return f"KVM_CREATE_VCPU({self.vcpu})"

    def perform(self, run: _Run) -> str:
        run.vcpus[self.vcpu] = run.stack.enter_context(run.vm.create_vcpu(self.vcpu))
        return OK


@attrs.frozen
class SetCpuid(Step):
    """A CPUID table with leaf 1 (x2APIC or not), or without leaf 1 at all."""

    x2apic: bool | None = True
    vcpu: int = 0

    def describe(self) -> str:
        if self.x2apic is None:
            return f"KVM_SET_CPUID2(vCPU {self.vcpu}: leaf 0 only, no leaf 1)"
        which = "with" if self.x2apic else "without"
        return f"KVM_SET_CPUID2(vCPU {self.vcpu}: leaf 1 {which} x2APIC)"

    def perform(self, run: _Run) -> str:
        table = (CpuidEntry(0, eax=1),) if self.x2apic is None else x2apic_cpuid(self.x2apic)
        _vcpu(run, self.vcpu).set_cpuid2(table)
        return OK


@attrs.frozen
class ReadLvr(Step):
    vcpu: int = 0

    def describe(self) -> str:
        return f"KVM_GET_LAPIC(vCPU {self.vcpu}): LVR bit 24"

    def perform(self, run: _Run) -> str:
        offered = _vcpu(run, self.vcpu).directed_eoi()
        run.lvr_reads.append(offered)
        return DIRECTED_EOI if offered else NO_DIRECTED_EOI


@attrs.frozen
class WriteLapic(Step):
    """KVM_SET_LAPIC with the state just read, LVR bit 24 optionally forced."""

    directed_eoi: bool | None = None
    vcpu: int = 0

    def describe(self) -> str:
        how = {None: "as read", True: "LVR bit 24 forced on",
               False: "LVR bit 24 forced off"}[self.directed_eoi]
        return f"KVM_SET_LAPIC(vCPU {self.vcpu}: {how})"

    def perform(self, run: _Run) -> str:
        vcpu = _vcpu(run, self.vcpu)
        regs = vcpu.get_lapic()
        if self.directed_eoi is not None:
            lvr = lvr_of(regs) & ~APIC_LVR_DIRECTED_EOI
            if self.directed_eoi:
                lvr |= APIC_LVR_DIRECTED_EOI
            regs = regs[:APIC_LVR] + lvr.to_bytes(4, "little") + regs[APIC_LVR + 4:]
        vcpu.set_lapic(regs)
        return OK


def _vcpu(run: _Run, vcpu_id: int) -> Vcpu:
    try:
        return run.vcpus[vcpu_id]
    except KeyError:
        raise _NoVcpu from None


@attrs.frozen
class Case:
    id: str
    description: str
    steps: tuple[Step, ...]


def run_case(kvm: Kvm, case: Case) -> CaseResult:
    """Run ``case`` on a fresh VM of ``kvm``; every handle is closed after."""
    results: list[str] = []
    with contextlib.ExitStack() as stack:
        vm = stack.enter_context(kvm.create_vm())
        run = _Run(kvm, vm, stack)
        for step in case.steps:
            try:
                results.append(step.perform(run))
            except _NoVcpu:
                results.append(SKIPPED)
            except KvmError as err:
                if err.errno not in REFUSALS:
                    raise
                results.append(err.errno_name)
    first_errno = next((r for r in results if r in _REFUSAL_NAMES), None)
    reads = tuple(run.lvr_reads)
    outcome = Outcome(errno=first_errno, lvr_directed_eoi=reads[-1] if reads else None,
                      lvr_reads=reads, results=tuple(results))
    return CaseResult(case.id, case.description, tuple(map(str, case.steps)), outcome)


def run_cases(kvm: Kvm, cases: Sequence[Case]) -> tuple[CaseResult, ...]:
    return tuple(run_case(kvm, case) for case in cases)


_REFUSAL_NAMES = frozenset(errno.errorcode[code] for code in REFUSALS)

_X2APIC_VCPU = (CreateVcpu(), SetCpuid(), ReadLvr())

CASES: tuple[Case, ...] = (
    Case("split-quirk",
         "split irqchip, no SEOIB flag: the legacy quirk offers directed EOI",
         (SplitIrqchip(), CreateVcpu(), ReadLvr(), SetCpuid(), ReadLvr())),
    Case("split-enable",
         "split irqchip with ENABLE_SUPPRESS_EOI_BROADCAST",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE), *_X2APIC_VCPU)),
    Case("split-disable",
         "split irqchip with DISABLE_SUPPRESS_EOI_BROADCAST",
         (SplitIrqchip(), X2ApicApiFlags(DISABLE), *_X2APIC_VCPU)),
    Case("kernel-irqchip-quirk",
         "in-kernel irqchip, no SEOIB flag: the in-kernel IOAPIC withholds directed EOI",
         (CreateIrqchip(), *_X2APIC_VCPU)),
    Case("kernel-irqchip-disable",
         "in-kernel irqchip with DISABLE_SUPPRESS_EOI_BROADCAST",
         (CreateIrqchip(), X2ApicApiFlags(DISABLE), *_X2APIC_VCPU)),
    Case("split-no-x2apic",
         "split irqchip, no SEOIB flag, CPUID without x2APIC",
         (SplitIrqchip(), CreateVcpu(), SetCpuid(x2apic=False), ReadLvr())),
    Case("disable-after-cpuid",
         "DISABLE after KVM_SET_CPUID2: LVR read before and after a later KVM_SET_LAPIC",
         (SplitIrqchip(), *_X2APIC_VCPU, X2ApicApiFlags(DISABLE), ReadLvr(), WriteLapic(),
          ReadLvr())),
    Case("enable-without-split",
         "ENABLE on a VM without a split irqchip",
         (X2ApicApiFlags(ENABLE),)),
    Case("enable-with-disable",
         "ENABLE and DISABLE in one call (the VM stays in the legacy quirk)",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE | DISABLE), *_X2APIC_VCPU)),
    Case("enable-then-disable",
         "ENABLE, then DISABLE: which one wins",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE), X2ApicApiFlags(DISABLE), *_X2APIC_VCPU)),
    Case("disable-then-zero",
         "DISABLE, then flags 0: whether the choice sticks",
         (SplitIrqchip(), X2ApicApiFlags(DISABLE), X2ApicApiFlags(0), *_X2APIC_VCPU)),
)

EDGE_CASES: tuple[Case, ...] = (
    Case("check-masks",
         "KVM_CHECK_EXTENSION on /dev/kvm and on a VM before and after a split irqchip",
         (CheckExtension(KVM_CAP_X2APIC_API, "system"), CheckExtension(KVM_CAP_SPLIT_IRQCHIP),
          CheckExtension(KVM_CAP_IRQCHIP), CheckExtension(), SplitIrqchip(), CheckExtension(),
          CreateVcpu(), CheckExtension())),
    Case("check-mask-kernel-irqchip",
         "KVM_CHECK_EXTENSION(X2APIC_API) on a VM with an in-kernel irqchip",
         (CreateIrqchip(), CheckExtension(), X2ApicApiFlags(ENABLE), CheckExtension())),
    Case("unknown-flags",
         "bits beyond the API are refused and change nothing",
         (SplitIrqchip(), X2ApicApiFlags(0x10), X2ApicApiFlags(1 << 63),
          X2ApicApiFlags(DISABLE | 0x20), *_X2APIC_VCPU)),
    Case("legacy-flags", "the two original flags, alone and with DISABLE",
         (SplitIrqchip(), X2ApicApiFlags(0x3), X2ApicApiFlags(DISABLE | 0x3),
          X2ApicApiFlags(0x1), *_X2APIC_VCPU)),
    Case("enable-kernel-irqchip", "ENABLE on a VM with an in-kernel irqchip",
         (CreateIrqchip(), X2ApicApiFlags(ENABLE), *_X2APIC_VCPU)),
    Case("enable-then-zero", "ENABLE, then flags 0",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE), X2ApicApiFlags(0), *_X2APIC_VCPU)),
    Case("disable-then-enable", "DISABLE, then ENABLE",
         (SplitIrqchip(), X2ApicApiFlags(DISABLE), X2ApicApiFlags(ENABLE), *_X2APIC_VCPU)),
    Case("disable-before-split", "DISABLE on a VM without irqchip, then split irqchip, ENABLE",
         (X2ApicApiFlags(DISABLE), CheckExtension(), SplitIrqchip(), X2ApicApiFlags(ENABLE),
          *_X2APIC_VCPU)),
    Case("enable-no-x2apic", "ENABLE, CPUID without x2APIC",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE), CreateVcpu(), SetCpuid(x2apic=False),
          ReadLvr())),
    Case("kernel-irqchip-no-x2apic", "in-kernel irqchip, CPUID without x2APIC",
         (CreateIrqchip(), CreateVcpu(), SetCpuid(x2apic=False), ReadLvr())),
    Case("cpuid-x2apic-removed", "x2APIC in CPUID, then a CPUID without it",
         (SplitIrqchip(), *_X2APIC_VCPU, SetCpuid(x2apic=False), ReadLvr())),
    Case("cpuid-without-leaf1",
         "a CPUID table without leaf 1 drops x2APIC but leaves the LVR until KVM_SET_LAPIC",
         (SplitIrqchip(), *_X2APIC_VCPU, SetCpuid(x2apic=None), ReadLvr(), WriteLapic(),
          ReadLvr())),
    Case("disable-then-cpuid-without-leaf1",
         "DISABLE, then a CPUID table without leaf 1: the LVR is not recomputed",
         (SplitIrqchip(), *_X2APIC_VCPU, X2ApicApiFlags(DISABLE), SetCpuid(x2apic=None),
          ReadLvr(), SetCpuid(), ReadLvr())),
    Case("enable-after-cpuid", "DISABLE, CPUID, then ENABLE and a second KVM_SET_CPUID2",
         (SplitIrqchip(), X2ApicApiFlags(DISABLE), *_X2APIC_VCPU, X2ApicApiFlags(ENABLE),
          ReadLvr(), SetCpuid(), ReadLvr())),
    Case("forged-lvr-on", "KVM_SET_LAPIC cannot turn LVR bit 24 on under DISABLE",
         (SplitIrqchip(), X2ApicApiFlags(DISABLE), *_X2APIC_VCPU, WriteLapic(True), ReadLvr())),
    Case("forged-lvr-off", "KVM_SET_LAPIC cannot turn LVR bit 24 off under ENABLE",
         (SplitIrqchip(), X2ApicApiFlags(ENABLE), *_X2APIC_VCPU, WriteLapic(False), ReadLvr())),
    Case("two-vcpus", "each vCPU's LVR follows its own KVM_SET_LAPIC",
         (SplitIrqchip(), CreateVcpu(0), SetCpuid(vcpu=0), CreateVcpu(1), SetCpuid(vcpu=1),
          X2ApicApiFlags(DISABLE), WriteLapic(vcpu=1), ReadLvr(0), ReadLvr(1))),
    Case("no-irqchip-lapic", "a VM without irqchip has no in-kernel LAPIC",
         (CreateVcpu(), SetCpuid(), ReadLvr(), WriteLapic())),
    Case("split-twice", "a second split irqchip, then an in-kernel one",
         (SplitIrqchip(), SplitIrqchip(), CreateIrqchip())),
    Case("irqchip-twice", "an in-kernel irqchip, then a split one, then another in-kernel",
         (CreateIrqchip(), SplitIrqchip(), CreateIrqchip())),
    Case("irqchip-after-vcpu", "irqchips chosen after the first vCPU",
         (CreateVcpu(), SplitIrqchip(), CreateIrqchip(), SetCpuid(), ReadLvr())),
    Case("split-routes", "the number of routes a split irqchip may reserve",
         (SplitIrqchip(4097), SplitIrqchip(4096), CheckExtension())),
    Case("duplicate-vcpu", "a vCPU id used twice, and the vCPU that never was",
         (SplitIrqchip(), CreateVcpu(0), CreateVcpu(0), CreateVcpu(5000), SetCpuid(vcpu=5000),
          ReadLvr(5000))),
)

#: Everything the differential tests compare between kernels.
ALL_CASES: tuple[Case, ...] = CASES + EDGE_CASES
