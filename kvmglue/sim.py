"""A simulated KVM, answering the same system calls as the real one.

:class:`SimKernel` implements :class:`kvmglue.kvm.KvmOps`, so the ordinary
handles (:class:`~kvmglue.kvm.Kvm`, ``Vm``, ``Vcpu``) run on it unchanged and
raise the same exceptions with the same errnos.  It models only what the
SEOIB policy depends on: the x2APIC API flags, the irqchip choice, and the
LAPIC version register (LVR) as KVM recomputes it.  Other LAPIC registers
stay zero.

Each behaviour is one switch in :class:`SimRules`; the defaults are what
Linux does (checked against a real /dev/kvm by ``tests/test_kvmglue_diff.py``),
and flipping any one of them must make that suite fail.
"""

from __future__ import annotations

import errno
import itertools
import os
from typing import Any, NoReturn

import attrs

from kvmglue._cdefs import (
    APIC_LVR,
    APIC_LVR_DIRECTED_EOI,
    CPUID_ECX_X2APIC,
    CPUID_FEATURES_LEAF,
    KVM_API_VERSION,
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    LAPIC_REGS_SIZE,
    X2APIC_API_LEGACY,
    X2APIC_API_SEOIB,
    X2ApicApi,
    ffi,
)

# What a fresh LAPIC reports: version 0x14, six LVT entries (max index 5).
BASE_LVR = 0x14 | (5 << 16)
MAX_IRQ_ROUTES = 4096  # KVM_MAX_IRQ_ROUTES bounds the split irqchip's routes
MAX_VCPU_ID = 4096


@attrs.frozen
class SimRules:
    """How the simulated kernel behaves; every default is Linux's behaviour."""

    #: A VM's KVM_CHECK_EXTENSION(X2APIC_API) leaves out ENABLE until the VM
    #: has a split irqchip (the system fd always shows it).
    vm_hides_enable_until_split: bool = True
    #: KVM_ENABLE_CAP(X2APIC_API) refuses bits outside the API with EINVAL.
    rejects_unknown_flags: bool = True
    #: ENABLE and DISABLE in one call is EINVAL.
    rejects_enable_with_disable: bool = True
    #: ENABLE on a VM without a split irqchip is EINVAL.
    enable_needs_split_irqchip: bool = True
    #: Once ENABLED or DISABLED, a call without either bit keeps the choice
    #: (off: it returns the VM to the legacy quirk).
    choice_sticks: bool = True
    #: A later ENABLE or DISABLE replaces an earlier one (off: the first
    #: choice stays, later ones are accepted and ignored).
    last_choice_wins: bool = True
    #: LVR bit 24 needs x2APIC in the vCPU's CPUID (off: any vCPU gets it).
    needs_x2apic_cpuid: bool = True
    #: In the legacy quirk, a VM whose IOAPIC is not in the kernel offers
    #: directed EOI (off: never offered in the quirk).
    quirk_offers_without_kernel_ioapic: bool = True
    #: In the legacy quirk, an in-kernel IOAPIC withholds directed EOI (off:
    #: offered anyway).
    quirk_withholds_with_kernel_ioapic: bool = True
    #: ENABLE offers directed EOI (off: it is withheld).
    enable_offers: bool = True
    #: DISABLE withholds directed EOI (off: it behaves as the quirk).
    disable_withholds: bool = True
    #: KVM_SET_CPUID2 recomputes the LVR.
    recompute_on_set_cpuid: bool = True
    #: ... but only when the new table has a leaf 1 (off: any table does).
    #: The vCPU's x2APIC bit follows the table either way.
    cpuid_recompute_needs_leaf1: bool = True
    #: KVM_SET_LAPIC recomputes the LVR over what userspace wrote.
    recompute_on_set_lapic: bool = True
    #: The LVR changes only at those points (off: KVM_ENABLE_CAP(X2APIC_API)
    #: recomputes it on every existing vCPU at once).
    lvr_latched: bool = True
    #: The irqchip is chosen once, before the first vCPU: a second choice
    #: is EEXIST, KVM_CREATE_IRQCHIP after a vCPU EINVAL, a split irqchip
    #: after a vCPU EEXIST.
    irqchip_chosen_once: bool = True
    #: KVM_GET_LAPIC/KVM_SET_LAPIC need an in-kernel LAPIC (EINVAL without).
    lapic_needs_irqchip: bool = True
    #: A vCPU id can be used once per VM (EEXIST).
    unique_vcpu_ids: bool = True


class _System:
    pass


@attrs.define(eq=False)
class _Vcpu:
    vm: _Vm = attrs.field(repr=False)
    vcpu_id: int
    x2apic: bool = False
    regs: bytearray = attrs.Factory(lambda: bytearray(LAPIC_REGS_SIZE))


@attrs.define(eq=False)
class _Vm:
    irqchip: str = "none"  # "none", "split" or "kernel"
    seoib: str = "quirk"  # "quirk", "enabled" or "disabled"
    legacy_flags: int = 0
    vcpus: dict[int, _Vcpu] = attrs.Factory(dict)


class SimKernel:
    """KVM as a Linux kernel of the given release would answer it.

    ``seoib`` says whether the kernel has the suppress-EOI-broadcast flags
    (Linux 7.0, 6.18.y and 6.19.y backports); without them KVM answers 0x3
    to KVM_CHECK_EXTENSION(X2APIC_API) and refuses bits 2-3.
    """

    def __init__(
        self,
        release: str = "7.0.0",
        *,
        seoib: bool = True,
        rules: SimRules = SimRules(),
        api_version: int = KVM_API_VERSION,
        device: str = "/dev/kvm",
    ) -> None:
        self.release = release
        self.seoib = seoib
        self.rules = rules
        self.api_version = api_version
        self.device = device
        self._files: dict[int, _System | _Vm | _Vcpu] = {}
        self._next_fd = itertools.count(1000)

    def __repr__(self) -> str:
        return f"<SimKernel {self.release} seoib={self.seoib}>"

    @property
    def supported_flags(self) -> X2ApicApi:
        return X2APIC_API_LEGACY | (X2APIC_API_SEOIB if self.seoib else X2ApicApi(0))

    @property
    def open_fds(self) -> frozenset[int]:
        """Descriptors handed out and not closed yet (for leak checks)."""
        return frozenset(self._files)

    # -- KvmOps -------------------------------------------------------------

    def open(self, path: str) -> int:
        if path != self.device:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return self._install(_System())

    def close(self, fd: int) -> None:
        if self._files.pop(fd, None) is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), "close")

    def kernel_release(self) -> str:
        return self.release

    def ioctl(self, fd: int, request: str, arg: Any = 0) -> int:
        file = self._files.get(fd)
        if file is None:
            return _fail(errno.EBADF, request)
        if isinstance(file, _System):
            return self._system_ioctl(request, arg)
        if isinstance(file, _Vm):
            return self._vm_ioctl(file, request, arg)
        return self._vcpu_ioctl(file, request, arg)

    # -- the three kinds of file --------------------------------------------

    def _system_ioctl(self, request: str, arg: Any) -> int:
        if request == "KVM_GET_API_VERSION":
            return self.api_version
        if request == "KVM_CREATE_VM":
            if arg != 0:
                return _fail(errno.EINVAL, request)
            return self._install(_Vm())
        if request == "KVM_CHECK_EXTENSION":
            return self._check_extension(None, arg)
        # x86 answers unknown /dev/kvm ioctls with EINVAL, not ENOTTY.
        return _fail(errno.EINVAL, request)

    def _vm_ioctl(self, vm: _Vm, request: str, arg: Any) -> int:
        if request == "KVM_CHECK_EXTENSION":
            return self._check_extension(vm, arg)
        if request == "KVM_ENABLE_CAP":
            self._enable_cap(vm, arg)
            return 0
        if request == "KVM_CREATE_IRQCHIP":
            if self.rules.irqchip_chosen_once and vm.irqchip != "none":
                return _fail(errno.EEXIST, request)
            if self.rules.irqchip_chosen_once and vm.vcpus:
                return _fail(errno.EINVAL, request)
            vm.irqchip = "kernel"
            return 0
        if request == "KVM_CREATE_VCPU":
            return self._create_vcpu(vm, arg)
        return _fail(errno.ENOTTY, request)

    def _vcpu_ioctl(self, vcpu: _Vcpu, request: str, arg: Any) -> int:
        if request == "KVM_SET_CPUID2":
            leaf1 = [entry for entry in arg.entries[0:arg.nent]
                     if entry.function == CPUID_FEATURES_LEAF]
            vcpu.x2apic = any(entry.ecx & CPUID_ECX_X2APIC for entry in leaf1)
            if self.rules.recompute_on_set_cpuid and (
                    leaf1 or not self.rules.cpuid_recompute_needs_leaf1):
                self._set_version(vcpu)
            return 0
        if request in ("KVM_GET_LAPIC", "KVM_SET_LAPIC"):
            if self.rules.lapic_needs_irqchip and vcpu.vm.irqchip == "none":
                return _fail(errno.EINVAL, request)
            if request == "KVM_GET_LAPIC":
                ffi.memmove(arg.regs, bytes(vcpu.regs), LAPIC_REGS_SIZE)
            else:
                vcpu.regs[:] = ffi.buffer(arg.regs)[:]
                if self.rules.recompute_on_set_lapic:
                    self._set_version(vcpu)
            return 0
        # Unknown vCPU ioctls fall through to KVM's arch code: EINVAL.
        return _fail(errno.EINVAL, request)

    # -- behaviour ------------------------------------------------------------

    def _check_extension(self, vm: _Vm | None, cap: int) -> int:
        if cap in (KVM_CAP_IRQCHIP, KVM_CAP_SPLIT_IRQCHIP):
            return 1
        if cap != KVM_CAP_X2APIC_API:
            return 0
        flags = self.supported_flags
        if (vm is not None and self.seoib and self.rules.vm_hides_enable_until_split
                and vm.irqchip != "split"):
            flags &= ~X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST
        return int(flags)

    def _enable_cap(self, vm: _Vm, arg: Any) -> None:
        request = "KVM_ENABLE_CAP"
        if arg.flags:
            _fail(errno.EINVAL, request)
        if arg.cap == KVM_CAP_SPLIT_IRQCHIP:
            routes = arg.args[0]
            if routes > MAX_IRQ_ROUTES:
                _fail(errno.EINVAL, request)
            if self.rules.irqchip_chosen_once and (vm.irqchip != "none" or vm.vcpus):
                _fail(errno.EEXIST, request)
            vm.irqchip = "split"
            return
        if arg.cap != KVM_CAP_X2APIC_API:
            _fail(errno.EINVAL, request)
        self._enable_x2apic_api(vm, arg.args[0])

    def _enable_x2apic_api(self, vm: _Vm, flags: int) -> None:
        request = "KVM_ENABLE_CAP"
        rules = self.rules
        if rules.rejects_unknown_flags and flags & ~int(self.supported_flags):
            _fail(errno.EINVAL, request)
        enable = bool(flags & X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST)
        disable = bool(flags & X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST)
        if rules.rejects_enable_with_disable and enable and disable:
            _fail(errno.EINVAL, request)
        if rules.enable_needs_split_irqchip and enable and vm.irqchip != "split":
            _fail(errno.EINVAL, request)
        vm.legacy_flags |= flags & int(X2APIC_API_LEGACY)
        choice = "enabled" if enable else "disabled" if disable else "quirk"
        if choice == "quirk" and rules.choice_sticks:
            choice = vm.seoib
        if vm.seoib != "quirk" and not rules.last_choice_wins:
            choice = vm.seoib
        vm.seoib = choice
        if not rules.lvr_latched:
            for vcpu in vm.vcpus.values():
                self._set_version(vcpu)

    def _create_vcpu(self, vm: _Vm, vcpu_id: int) -> int:
        if vcpu_id >= MAX_VCPU_ID:
            return _fail(errno.EINVAL, "KVM_CREATE_VCPU")
        if self.rules.unique_vcpu_ids and vcpu_id in vm.vcpus:
            return _fail(errno.EEXIST, "KVM_CREATE_VCPU")
        vcpu = _Vcpu(vm, vcpu_id)
        vm.vcpus[vcpu_id] = vcpu
        self._set_version(vcpu)
        return self._install(vcpu)

    def _set_version(self, vcpu: _Vcpu) -> None:
        lvr = BASE_LVR
        if self._offers_directed_eoi(vcpu):
            lvr |= APIC_LVR_DIRECTED_EOI
        vcpu.regs[APIC_LVR:APIC_LVR + 4] = lvr.to_bytes(4, "little")

    def _offers_directed_eoi(self, vcpu: _Vcpu) -> bool:
        rules = self.rules
        vm = vcpu.vm
        if rules.needs_x2apic_cpuid and not vcpu.x2apic:
            return False
        if vm.seoib == "enabled":
            return rules.enable_offers
        if vm.seoib == "disabled" and rules.disable_withholds:
            return False
        if vm.irqchip == "kernel":
            return not rules.quirk_withholds_with_kernel_ioapic
        return rules.quirk_offers_without_kernel_ioapic

    def _install(self, file: _System | _Vm | _Vcpu) -> int:
        fd = next(self._next_fd)
        self._files[fd] = file
        return fd


def _fail(code: int, request: str) -> NoReturn:
    raise OSError(code, os.strerror(code), request)


__all__ = ["SimKernel", "SimRules"]
