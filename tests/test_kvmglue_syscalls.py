"""The simulated kernel against the real /dev/kvm one system call at a time.

tests/test_kvmglue_diff.py compares whole scenarios by outcome; here every raw ioctl's
return value (0, a count, a file descriptor) or errno is compared, including the calls
the scenarios do not make: unknown capabilities and ioctls, out-of-range vCPU ids and
route counts, a second vCPU with the same id, LAPIC reads without an in-kernel LAPIC.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kvmglue._cdefs import (
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    X2APIC_API_SEOIB,
    ffi,
)
from kvmglue.errors import KvmError
from kvmglue.kvm import Kvm, open_kvm, x2apic_cpuid
from kvmglue.sim import SimKernel


def _call(handle: Any, request: str, arg: Any = 0) -> str:
    try:
        value = handle._ioctl(request, arg)
    except KvmError as err:
        return f"errno {err.errno}"
    return "fd" if request in ("KVM_CREATE_VM", "KVM_CREATE_VCPU") else f"= {value}"


def _cap(cap: int, *args: int) -> Any:
    request = ffi.new("struct kvm_enable_cap *")
    request.cap = cap
    for i, value in enumerate(args):
        request.args[i] = value
    return request


def _lapic() -> Any:
    return ffi.new("struct kvm_lapic_state *")


def _cpuid(x2apic: bool) -> Any:
    table = list(x2apic_cpuid(x2apic))
    request = ffi.new("struct kvm_cpuid2 *", {"nent": len(table), "entries": len(table)})
    for slot, entry in zip(request.entries, table, strict=True):
        slot.function, slot.index, slot.ecx = entry.function, entry.index, entry.ecx
    return request


def _trace(kvm: Kvm) -> list[str]:
    out: list[str] = []

    def step(name: str, fn: Callable[[], str]) -> None:
        out.append(f"{name}: {fn()}")

    step("api version", lambda: _call(kvm, "KVM_GET_API_VERSION"))
    for cap in (KVM_CAP_IRQCHIP, KVM_CAP_SPLIT_IRQCHIP, 100_000):
        step(f"system check {cap}", lambda cap=cap: _call(kvm, "KVM_CHECK_EXTENSION", cap))
    step("create vm type 1", lambda: _call(kvm, "KVM_CREATE_VM", 1))
    with kvm.create_vm() as vm:  # an in-kernel irqchip
        step("vm check unknown", lambda: _call(vm, "KVM_CHECK_EXTENSION", 100_000))
        step("enable unknown cap", lambda: _call(vm, "KVM_ENABLE_CAP", _cap(100_000)))
        step("create irqchip", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
        step("create irqchip again", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
        step("split after irqchip", lambda: _call(vm, "KVM_ENABLE_CAP",
                                                  _cap(KVM_CAP_SPLIT_IRQCHIP, 24)))
        step("vcpu id 4096", lambda: _call(vm, "KVM_CREATE_VCPU", 4096))
        with vm.create_vcpu(7) as vcpu:
            step("vcpu id 7 again", lambda: _call(vm, "KVM_CREATE_VCPU", 7))
            step("set cpuid", lambda: _call(vcpu, "KVM_SET_CPUID2", _cpuid(True)))
            step("get lapic", lambda: _call(vcpu, "KVM_GET_LAPIC", _lapic()))
            step("set lapic", lambda: _call(vcpu, "KVM_SET_LAPIC", _lapic()))
            step("create irqchip after vcpu", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
    with kvm.create_vm() as vm:  # split irqchip: route counts
        step("split 4097 routes", lambda: _call(vm, "KVM_ENABLE_CAP",
                                                _cap(KVM_CAP_SPLIT_IRQCHIP, 4097)))
        step("split 4096 routes", lambda: _call(vm, "KVM_ENABLE_CAP",
                                                _cap(KVM_CAP_SPLIT_IRQCHIP, 4096)))
        step("split again", lambda: _call(vm, "KVM_ENABLE_CAP",
                                          _cap(KVM_CAP_SPLIT_IRQCHIP, 24)))
        step("vm check x2apic", lambda: _call(vm, "KVM_CHECK_EXTENSION", KVM_CAP_X2APIC_API))
        step("x2apic legacy 1", lambda: _call(vm, "KVM_ENABLE_CAP", _cap(KVM_CAP_X2APIC_API, 1)))
        step("x2apic legacy 2", lambda: _call(vm, "KVM_ENABLE_CAP", _cap(KVM_CAP_X2APIC_API, 2)))
        with vm.create_vcpu(4095) as vcpu:
            step("vcpu 4095 cpuid", lambda: _call(vcpu, "KVM_SET_CPUID2", _cpuid(False)))
    with kvm.create_vm() as vm, vm.create_vcpu(0) as vcpu:  # no irqchip at all
        step("lapic without irqchip", lambda: _call(vcpu, "KVM_GET_LAPIC", _lapic()))
        step("set lapic without irqchip", lambda: _call(vcpu, "KVM_SET_LAPIC", _lapic()))
        step("split after vcpu", lambda: _call(vm, "KVM_ENABLE_CAP",
                                               _cap(KVM_CAP_SPLIT_IRQCHIP, 24)))
    return out


# What Linux 6.12 (x86) answers, as the kvm test below reads it from the real kernel
# (a kernel with the SEOIB flags answers 15 for the split VM's X2APIC_API check).
LINUX = [
    "api version: = 12", f"system check {KVM_CAP_IRQCHIP}: = 1",
    f"system check {KVM_CAP_SPLIT_IRQCHIP}: = 1", "system check 100000: = 0",
    "create vm type 1: errno 22", "vm check unknown: = 0", "enable unknown cap: errno 22",
    "create irqchip: = 0", "create irqchip again: errno 17", "split after irqchip: errno 17",
    "vcpu id 4096: errno 22", "vcpu id 7 again: errno 17", "set cpuid: = 0",
    "get lapic: = 0", "set lapic: = 0", "create irqchip after vcpu: errno 17",
    "split 4097 routes: errno 22", "split 4096 routes: = 0", "split again: errno 17",
    "vm check x2apic: = 15", "x2apic legacy 1: = 0", "x2apic legacy 2: = 0",
    "vcpu 4095 cpuid: = 0", "lapic without irqchip: errno 22",
    "set lapic without irqchip: errno 22", "split after vcpu: errno 17",
]


def test_sim_system_calls() -> None:
    kernel = SimKernel(seoib=True)
    with open_kvm(kernel.device, ops=kernel) as kvm:
        assert _trace(kvm) == LINUX
    assert kernel.open_fds == frozenset()  # every handle closed


@pytest.mark.kvm
def test_sim_system_calls_equal_the_real_kernel(real_kvm: Kvm) -> None:
    seoib = bool(real_kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB)
    kernel = SimKernel(seoib=seoib)
    with open_kvm(kernel.device, ops=kernel) as sim:
        assert _trace(sim) == _trace(real_kvm)
