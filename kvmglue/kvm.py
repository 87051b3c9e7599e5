"""A thin Pythonic layer over /dev/kvm: system, VM and vCPU handles.

Every system call goes through an *ops* object (:class:`KvmOps`: ``open``,
``ioctl``, ``close``, ``kernel_release``).  :class:`LibcOps` is the real one;
:class:`kvmglue.sim.SimKernel` answers the same calls from a model of the
kernel, and :class:`kvmglue.faults.FaultyOps` wraps either to make chosen
calls fail.  The handles above them are the same in all three cases, so the
real and simulated kernels are compared through one interface.

Handles own their file descriptor and close it on ``close()`` or on leaving
a ``with`` block; a call that creates a handle closes what it opened if it
fails before handing the handle over.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import attrs

from kvmglue import _cdefs
from kvmglue._cdefs import (
    APIC_LVR,
    APIC_LVR_DIRECTED_EOI,
    CPUID_ECX_X2APIC,
    CPUID_FEATURES_LEAF,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    LAPIC_REGS_SIZE,
    SPLIT_IRQCHIP_ROUTES,
    X2ApicApi,
    ffi,
)
from kvmglue.errors import KvmError, KvmUnavailable, ioctl_error

DEFAULT_PATH = "/dev/kvm"

H = TypeVar("H", bound="_Handle")


class KvmOps(Protocol):
    """The system calls the handles make; raise ``OSError`` on failure.

    ``request`` is the ioctl's header name (``"KVM_CREATE_VM"``); ``arg`` is
    an integer or a pointer from :data:`kvmglue._cdefs.ffi`.
    """

    def open(self, path: str) -> int: ...

    def ioctl(self, fd: int, request: str, arg: Any = 0) -> int: ...

    def close(self, fd: int) -> None: ...

    def kernel_release(self) -> str: ...


class LibcOps:
    """The real system calls, through libc."""

    def open(self, path: str) -> int:
        lib = _cdefs.libc()
        while True:
            fd: int = lib.open(os.fsencode(path), os.O_RDWR | os.O_CLOEXEC)
            if fd >= 0:
                return fd
            if ffi.errno != errno.EINTR:
                raise _os_error(ffi.errno, path)

    def ioctl(self, fd: int, request: str, arg: Any = 0) -> int:
        number = ffi.cast("unsigned long", _cdefs.IOCTLS[request])
        if isinstance(arg, int):
            arg = ffi.cast("unsigned long", arg)
        result: int = _cdefs.libc().ioctl(fd, number, arg)
        if result < 0:
            raise _os_error(ffi.errno, request)
        return result

    def close(self, fd: int) -> None:
        # No retry on EINTR: Linux has released the descriptor either way.
        if _cdefs.libc().close(fd) < 0 and ffi.errno != errno.EINTR:
            raise _os_error(ffi.errno, "close")

    def kernel_release(self) -> str:
        return os.uname().release


def _os_error(code: int, what: str) -> OSError:
    return OSError(code, os.strerror(code), what)


LIBC_OPS = LibcOps()


@attrs.frozen
class CpuidEntry:
    """One ``struct kvm_cpuid_entry2``."""

    function: int
    index: int = 0
    flags: int = 0
    eax: int = 0
    ebx: int = 0
    ecx: int = 0
    edx: int = 0


def x2apic_cpuid(x2apic: bool = True) -> tuple[CpuidEntry, ...]:
    """The smallest CPUID table that decides whether the vCPU has x2APIC."""
    return (CpuidEntry(CPUID_FEATURES_LEAF, ecx=CPUID_ECX_X2APIC if x2apic else 0),)


class _Handle:
    """One file descriptor and the ops that reach it."""

    kind = "fd"

    def __init__(self, ops: KvmOps, fd: int) -> None:
        self._ops = ops
        self._fd: int | None = fd

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise ValueError(f"I/O operation on a closed {self.kind} handle")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            self._ops.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._fd is None else f"fd={self._fd}"
        return f"<{type(self).__name__} {state}>"

    def _ioctl(self, request: str, arg: Any = 0) -> int:
        try:
            return self._ops.ioctl(self.fd, request, arg)
        except OSError as err:
            raise ioctl_error(err.errno or errno.EIO, request) from None

    def _adopt(self, make: type[H], request: str, arg: int) -> H:
        """Create a child handle; never leak its fd if wrapping it fails."""
        fd = self._ioctl(request, arg)
        try:
            return make(self._ops, fd)
        except BaseException:
            self._ops.close(fd)
            raise


class Kvm(_Handle):
    """The KVM subsystem: an open ``/dev/kvm``."""

    kind = "KVM system"

    def __init__(self, path: str = DEFAULT_PATH, *, ops: KvmOps = LIBC_OPS) -> None:
        try:
            fd = ops.open(path)
        except OSError as err:
            raise KvmUnavailable(err.errno or errno.EIO, path) from None
        super().__init__(ops, fd)
        self.path = path
        try:
            # Anything can be opened; only KVM answers this.
            self.api_version()
        except BaseException:
            self.close()
            raise

    def api_version(self) -> int:
        return self._ioctl("KVM_GET_API_VERSION")

    def check_extension(self, cap: int) -> int:
        return self._ioctl("KVM_CHECK_EXTENSION", cap)

    def kernel_release(self) -> str:
        return self._ops.kernel_release()

    def create_vm(self, machine_type: int = 0) -> Vm:
        return self._adopt(Vm, "KVM_CREATE_VM", machine_type)


class Vm(_Handle):
    """A scratch virtual machine (no memory, and nothing ever runs)."""

    kind = "VM"

    def check_extension(self, cap: int) -> int:
        return self._ioctl("KVM_CHECK_EXTENSION", cap)

    def enable_cap(self, cap: int, *args: int) -> None:
        if len(args) > 4:
            raise ValueError(f"KVM_ENABLE_CAP takes at most 4 arguments, not {len(args)}")
        request = ffi.new("struct kvm_enable_cap *")
        request.cap = cap
        for i, value in enumerate(args):
            request.args[i] = value
        self._ioctl("KVM_ENABLE_CAP", request)

    def enable_split_irqchip(self, routes: int = SPLIT_IRQCHIP_ROUTES) -> None:
        """LAPICs in the kernel, IOAPIC and PIC in userspace (before any vCPU)."""
        self.enable_cap(KVM_CAP_SPLIT_IRQCHIP, routes)

    def create_irqchip(self) -> None:
        """LAPICs, IOAPIC and PIC all in the kernel (before any vCPU)."""
        self._ioctl("KVM_CREATE_IRQCHIP")

    def x2apic_api(self) -> X2ApicApi:
        """The x2APIC API flags this VM accepts now."""
        return X2ApicApi(self.check_extension(KVM_CAP_X2APIC_API))

    def enable_x2apic_api(self, flags: int) -> None:
        self.enable_cap(KVM_CAP_X2APIC_API, int(flags))

    def create_vcpu(self, vcpu_id: int = 0) -> Vcpu:
        return self._adopt(Vcpu, "KVM_CREATE_VCPU", vcpu_id)


class Vcpu(_Handle):
    """A virtual CPU that is configured and inspected, never run."""

    kind = "vCPU"

    def set_cpuid2(self, entries: Iterable[CpuidEntry]) -> None:
        table = list(entries)
        request = ffi.new("struct kvm_cpuid2 *", {"nent": len(table), "entries": len(table)})
        for slot, entry in zip(request.entries, table, strict=True):
            for field in attrs.fields(CpuidEntry):
                setattr(slot, field.name, getattr(entry, field.name))
        self._ioctl("KVM_SET_CPUID2", request)

    def get_lapic(self) -> bytes:
        """The 1024 bytes of register page KVM keeps for this vCPU's LAPIC."""
        state = ffi.new("struct kvm_lapic_state *")
        self._ioctl("KVM_GET_LAPIC", state)
        return bytes(ffi.buffer(state.regs))

    def set_lapic(self, regs: bytes) -> None:
        if len(regs) != LAPIC_REGS_SIZE:
            raise ValueError(f"a LAPIC state is {LAPIC_REGS_SIZE} bytes, not {len(regs)}")
        state = ffi.new("struct kvm_lapic_state *")
        ffi.memmove(state.regs, regs, LAPIC_REGS_SIZE)
        self._ioctl("KVM_SET_LAPIC", state)

    def lvr(self) -> int:
        """The LAPIC version register as the guest would read it."""
        return lvr_of(self.get_lapic())

    def directed_eoi(self) -> bool:
        """Whether the guest is offered "suppress EOI broadcast" (LVR bit 24)."""
        return bool(self.lvr() & APIC_LVR_DIRECTED_EOI)


def lvr_of(regs: bytes) -> int:
    return int.from_bytes(regs[APIC_LVR:APIC_LVR + 4], "little")


def open_kvm(path: str = DEFAULT_PATH, *, ops: KvmOps = LIBC_OPS) -> Kvm:
    """Open the KVM subsystem (raises :class:`KvmUnavailable`)."""
    return Kvm(path, ops=ops)


__all__ = [
    "DEFAULT_PATH",
    "LIBC_OPS",
    "CpuidEntry",
    "Kvm",
    "KvmError",
    "KvmOps",
    "LibcOps",
    "Vcpu",
    "Vm",
    "lvr_of",
    "open_kvm",
    "x2apic_cpuid",
]
