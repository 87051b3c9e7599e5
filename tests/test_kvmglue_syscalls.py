"""The simulated kernel against the real /dev/kvm one system call at a time.

tests/test_kvmglue_diff.py compares whole scenarios by outcome; here every raw ioctl's
return value (0, a count, a file descriptor) or error is compared, including the calls
the scenarios do not make: unknown capabilities and ioctls, out-of-range vCPU ids and
route counts, a second vCPU with the same id, LAPIC reads without an in-kernel LAPIC, the
registers KVM keeps across a recomputed LVR, stale descriptors and a missing device.  The
calls go straight to the ops (LibcOps or the SimKernel), so an error must be the very
``OSError`` LibcOps raises: errno, strerror and the request (or path) it names.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from kvmglue._cdefs import (
    APIC_LVR,
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    LAPIC_REGS_SIZE,
    X2APIC_API_SEOIB,
    ffi,
)
from kvmglue.kernels import KERNELS
from kvmglue.kvm import DEFAULT_PATH, LIBC_OPS, Kvm, lvr_of, open_kvm, x2apic_cpuid
from kvmglue.sim import SimKernel

APIC_TPR = 0x80  # the task priority register's offset (Intel SDM vol. 3, table 11-1)
MISSING = "/nonexistent/kvm"


def _failure(err: OSError, what: str) -> str:
    """``errno N`` when ``err`` is what LibcOps raises (``OSError(N, strerror(N), what)``),
    else everything about it, so that any other exception shows in the trace."""
    if (err.strerror, err.filename) == (os.strerror(err.errno), what):
        return f"errno {err.errno}"
    return f"{type(err).__name__}{err.args} on {err.filename!r}"


def _call(handle: Any, request: str, arg: Any = 0) -> str:
    """One raw system call through the handle's ops (LibcOps or the SimKernel itself)."""
    try:
        value = handle._ops.ioctl(handle.fd, request, arg)
    except OSError as err:
        return _failure(err, request)
    return "fd" if request in ("KVM_CREATE_VM", "KVM_CREATE_VCPU") else f"= {value}"


def _registers(vcpu: Any) -> str:
    """The LAPIC registers the simulated kernel keeps: the LVR, and the TPR userspace wrote."""
    regs = vcpu.get_lapic()
    return f"lvr {lvr_of(regs):#x}, tpr {int.from_bytes(regs[APIC_TPR:APIC_TPR + 4], 'little'):#x}"


def _marked_lapic() -> Any:
    """A LAPIC state with a TPR (which KVM keeps) and a made-up LVR (which KVM recomputes)."""
    state = _lapic()
    regs = bytearray(LAPIC_REGS_SIZE)
    regs[APIC_TPR:APIC_TPR + 4] = (0x10).to_bytes(4, "little")
    regs[APIC_LVR:APIC_LVR + 4] = (0xFFFFFFFF).to_bytes(4, "little")
    ffi.memmove(state.regs, bytes(regs), LAPIC_REGS_SIZE)
    return state


def _cap(cap: int, *args: int, flags: int = 0) -> Any:
    request = ffi.new("struct kvm_enable_cap *")
    request.cap, request.flags = cap, flags
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
    ops = kvm._ops

    def step(name: str, fn: Callable[[], str]) -> None:
        out.append(f"{name}: {fn()}")

    step("api version", lambda: _call(kvm, "KVM_GET_API_VERSION"))
    for cap in (KVM_CAP_IRQCHIP, KVM_CAP_SPLIT_IRQCHIP, 100_000):
        step(f"system check {cap}", lambda cap=cap: _call(kvm, "KVM_CHECK_EXTENSION", cap))
    step("create vm type 1", lambda: _call(kvm, "KVM_CREATE_VM", 1))
    step("create vm, arg left out", lambda: _default_arg_vm(kvm))
    step("system create irqchip", lambda: _call(kvm, "KVM_CREATE_IRQCHIP"))
    with kvm.create_vm() as vm:  # an in-kernel irqchip
        step("vm check unknown", lambda: _call(vm, "KVM_CHECK_EXTENSION", 100_000))
        step("vm get lapic", lambda: _call(vm, "KVM_GET_LAPIC", _lapic()))
        step("enable unknown cap", lambda: _call(vm, "KVM_ENABLE_CAP", _cap(100_000)))
        step("enable cap with flags", lambda: _call(vm, "KVM_ENABLE_CAP",
                                                    _cap(KVM_CAP_SPLIT_IRQCHIP, 24, flags=1)))
        step("create irqchip", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
        step("create irqchip again", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
        step("split after irqchip", lambda: _call(vm, "KVM_ENABLE_CAP",
                                                  _cap(KVM_CAP_SPLIT_IRQCHIP, 24)))
        for flags in (0x10, 0xC, 0x4):  # an unknown bit; ENABLE with DISABLE; ENABLE unsplit
            step(f"x2apic {flags:#x} on irqchip",
                 lambda flags=flags: _call(vm, "KVM_ENABLE_CAP", _cap(KVM_CAP_X2APIC_API, flags)))
        step("vcpu id 4096", lambda: _call(vm, "KVM_CREATE_VCPU", 4096))
        with vm.create_vcpu(7) as vcpu:
            step("vcpu id 7 again", lambda: _call(vm, "KVM_CREATE_VCPU", 7))
            step("vcpu create irqchip", lambda: _call(vcpu, "KVM_CREATE_IRQCHIP"))
            step("set cpuid", lambda: _call(vcpu, "KVM_SET_CPUID2", _cpuid(True)))
            step("get lapic", lambda: _call(vcpu, "KVM_GET_LAPIC", _lapic()))
            step("set lapic", lambda: _call(vcpu, "KVM_SET_LAPIC", _lapic()))
            step("set marked lapic", lambda: _call(vcpu, "KVM_SET_LAPIC", _marked_lapic()))
            step("registers after set lapic", lambda: _registers(vcpu))
            step("set cpuid again", lambda: _call(vcpu, "KVM_SET_CPUID2", _cpuid(True)))
            step("registers after set cpuid", lambda: _registers(vcpu))
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
        step("create irqchip after vcpu only", lambda: _call(vm, "KVM_CREATE_IRQCHIP"))
        closed = vcpu.fd
    # The descriptors are closed now: what the ops say about a stale one, and a missing device.
    step("ioctl on a closed fd", lambda: _stale(lambda: ops.ioctl(closed, "KVM_CREATE_IRQCHIP"),
                                                "KVM_CREATE_IRQCHIP"))
    step("close a closed fd", lambda: _stale(lambda: ops.close(closed), "close"))
    step("open a missing device", lambda: _stale(lambda: ops.open(MISSING), MISSING))
    return out


def _default_arg_vm(kvm: Kvm) -> str:
    """KvmOps.ioctl's arg defaults to 0: KVM_CREATE_VM without one makes a default VM."""
    fd = kvm._ops.ioctl(kvm.fd, "KVM_CREATE_VM")
    kvm._ops.close(fd)
    return "fd"


def _stale(call: Callable[[], object], what: str) -> str:
    try:
        call()
    except OSError as err:
        return _failure(err, what)
    return "no error"


# What Linux answers (x86), as the kvm test below reads it from the real kernel (read on
# 6.18.44 with the SEOIB backport: a kernel without the SEOIB flags answers 3 for the split
# VM's X2APIC_API check).  "errno N" means OSError(N, strerror(N), request), as LibcOps raises.
LINUX = [
    "api version: = 12", f"system check {KVM_CAP_IRQCHIP}: = 1",
    f"system check {KVM_CAP_SPLIT_IRQCHIP}: = 1", "system check 100000: = 0",
    "create vm type 1: errno 22", "create vm, arg left out: fd",
    "system create irqchip: errno 22", "vm check unknown: = 0",
    "vm get lapic: errno 25", "enable unknown cap: errno 22", "enable cap with flags: errno 22",
    "create irqchip: = 0", "create irqchip again: errno 17", "split after irqchip: errno 17",
    "x2apic 0x10 on irqchip: errno 22", "x2apic 0xc on irqchip: errno 22",
    "x2apic 0x4 on irqchip: errno 22", "vcpu id 4096: errno 22", "vcpu id 7 again: errno 17",
    "vcpu create irqchip: errno 22", "set cpuid: = 0", "get lapic: = 0", "set lapic: = 0",
    "set marked lapic: = 0", "registers after set lapic: lvr 0x50014, tpr 0x10",
    "set cpuid again: = 0", "registers after set cpuid: lvr 0x50014, tpr 0x10",
    "create irqchip after vcpu: errno 17", "split 4097 routes: errno 22", "split 4096 routes: = 0",
    "split again: errno 17", "vm check x2apic: = 15", "x2apic legacy 1: = 0",
    "x2apic legacy 2: = 0", "vcpu 4095 cpuid: = 0", "lapic without irqchip: errno 22",
    "set lapic without irqchip: errno 22", "split after vcpu: errno 17",
    "create irqchip after vcpu only: errno 22", "ioctl on a closed fd: errno 9",
    "close a closed fd: errno 9", "open a missing device: errno 2",
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


def test_sim_defaults_are_linux_7_0_at_the_default_path() -> None:
    """SimKernel() is the kernel its docstring names and the linux-7.0 profile describes
    (the first release with the SEOIB flags), answering where the handles open by default."""
    spec = KERNELS["linux-7.0"]
    kernel = SimKernel()
    assert (kernel.kernel_release(), kernel.seoib) == (spec.release, spec.seoib)
    with open_kvm(ops=kernel) as kvm:  # kvmglue.kvm.DEFAULT_PATH, /dev/kvm
        assert kvm.path == DEFAULT_PATH == kernel.device
        assert kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB == X2APIC_API_SEOIB
    assert SimKernel(LIBC_OPS.kernel_release()).kernel_release() == os.uname().release
