"""Every C declaration and KVM number this package uses, in one place.

The binding runs in cffi's ABI mode: libc is opened with ``dlopen(None)``
and called through the declarations below, so installing ``machines``
needs no compiler.  The ioctl request numbers are not copied from a header
but computed from the ``_IOC`` encoding with the struct sizes cffi lays out,
so a wrong struct declaration shows up as a wrong number (the header test in
``tests/test_kvmglue_header.py`` compares both with ``<linux/kvm.h>``).
"""

from __future__ import annotations

import functools
from typing import Any

import cffi  # type: ignore[import-untyped, unused-ignore]

from kvmglue.constants import (  # re-exported: every KVM number in one place
    APIC_LVR,
    APIC_LVR_DIRECTED_EOI,
    CPUID_ECX_X2APIC,
    CPUID_FEATURES_LEAF,
    KVM_API_VERSION,
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    LAPIC_REGS_SIZE,
    MAX_SPLIT_IRQCHIP_ROUTES,
    SPLIT_IRQCHIP_ROUTES,
    X2APIC_API_LEGACY,
    X2APIC_API_SEOIB,
    X2ApicApi,
)

__all__ = [
    "APIC_LVR",
    "APIC_LVR_DIRECTED_EOI",
    "CDEF",
    "CPUID_ECX_X2APIC",
    "CPUID_FEATURES_LEAF",
    "IOCTLS",
    "IOCTL_NAMES",
    "KVMIO",
    "KVM_API_VERSION",
    "KVM_CAP_IRQCHIP",
    "KVM_CAP_SPLIT_IRQCHIP",
    "KVM_CAP_X2APIC_API",
    "LAPIC_REGS_SIZE",
    "MAX_SPLIT_IRQCHIP_ROUTES",
    "SPLIT_IRQCHIP_ROUTES",
    "X2APIC_API_LEGACY",
    "X2APIC_API_SEOIB",
    "X2ApicApi",
    "ffi",
    "libc",
]

CDEF = """
    struct kvm_enable_cap {
        uint32_t cap;
        uint32_t flags;
        uint64_t args[4];
        uint8_t  pad[64];
    };

    struct kvm_cpuid_entry2 {
        uint32_t function;
        uint32_t index;
        uint32_t flags;
        uint32_t eax;
        uint32_t ebx;
        uint32_t ecx;
        uint32_t edx;
        uint32_t padding[3];
    };

    struct kvm_cpuid2 {
        uint32_t nent;
        uint32_t padding;
        struct kvm_cpuid_entry2 entries[];
    };

    struct kvm_lapic_state {
        char regs[1024];
    };

    int open(const char *pathname, int flags, ...);
    int close(int fd);
    int ioctl(int fd, unsigned long request, ...);
"""

ffi: Any = cffi.FFI()
ffi.cdef(CDEF)


@functools.cache
def libc() -> Any:
    """libc, opened on first use so the simulated kernel never needs it."""
    return ffi.dlopen(None)


# -- ioctl encoding (include/uapi/asm-generic/ioctl.h, as x86 uses it) -----

_IOC_NRSHIFT = 0
_IOC_TYPESHIFT = 8
_IOC_SIZESHIFT = 16
_IOC_DIRSHIFT = 30
_IOC_SIZEMASK = (1 << 14) - 1

_IOC_NONE = 0
_IOC_WRITE = 1
_IOC_READ = 2

KVMIO = 0xAE


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    if not 0 <= size <= _IOC_SIZEMASK:
        raise ValueError(f"ioctl argument of {size} bytes does not fit the size field")
    return ((direction << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT)
            | (kind << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT))


def _io(nr: int) -> int:
    return _ioc(_IOC_NONE, KVMIO, nr, 0)


def _iow(nr: int, struct: str) -> int:
    return _ioc(_IOC_WRITE, KVMIO, nr, ffi.sizeof(struct))


def _ior(nr: int, struct: str) -> int:
    return _ioc(_IOC_READ, KVMIO, nr, ffi.sizeof(struct))


# Request numbers by their header names; the names are what errors and the
# fault injector speak.
IOCTLS: dict[str, int] = {
    # /dev/kvm
    "KVM_GET_API_VERSION": _io(0x00),
    "KVM_CREATE_VM": _io(0x01),
    # /dev/kvm and VM fds
    "KVM_CHECK_EXTENSION": _io(0x03),
    # VM fds
    "KVM_CREATE_VCPU": _io(0x41),
    "KVM_CREATE_IRQCHIP": _io(0x60),
    "KVM_ENABLE_CAP": _iow(0xA3, "struct kvm_enable_cap"),
    # vCPU fds
    "KVM_GET_LAPIC": _ior(0x8E, "struct kvm_lapic_state"),
    "KVM_SET_LAPIC": _iow(0x8F, "struct kvm_lapic_state"),
    "KVM_SET_CPUID2": _iow(0x90, "struct kvm_cpuid2"),
}
IOCTL_NAMES: dict[int, str] = {number: name for name, number in IOCTLS.items()}


