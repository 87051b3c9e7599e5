"""Fault injection: make chosen KVM calls fail, to test the failure paths.

:class:`FaultyOps` wraps any :class:`~kvmglue.kvm.KvmOps` (the real libc one
or a :class:`~kvmglue.sim.SimKernel`) and fails the calls its faults name
with the errno they carry, before the wrapped ops see them.  It also keeps
the descriptors opened through it, so a test can say which ones leaked::

    ops = FaultyOps(LIBC_OPS, [Fault("KVM_CREATE_VCPU", errno.EINVAL)])
    with pytest.raises(KvmInvalidArgument):
        probe_device(ops=ops)
    assert not ops.open_fds
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import attrs

from kvmglue.kvm import KvmOps

OPEN = "open"


@attrs.frozen
class Fault:
    """Fail ``call`` (an ioctl name, or ``"open"``) with ``errno``.

    ``nth`` picks one call (1 is the first); by default every call fails.
    """

    call: str
    errno: int
    nth: int | None = None

    def hits(self, call: str, count: int) -> bool:
        return call == self.call and (self.nth is None or self.nth == count)


class FaultyOps:
    """``inner`` with ``faults`` injected; counts calls and open descriptors."""

    def __init__(self, inner: KvmOps, faults: Iterable[Fault] = ()) -> None:
        self.inner = inner
        self.faults = tuple(faults)
        self.calls: Counter[str] = Counter()
        self._open: set[int] = set()
        self.injected = 0

    @property
    def open_fds(self) -> frozenset[int]:
        """Descriptors opened through these ops and not closed yet."""
        return frozenset(self._open)

    def _check(self, call: str) -> None:
        self.calls[call] += 1
        for fault in self.faults:
            if fault.hits(call, self.calls[call]):
                self.injected += 1
                raise OSError(fault.errno, os.strerror(fault.errno), f"{call} (injected)")

    def open(self, path: str) -> int:
        self._check(OPEN)
        fd = self.inner.open(path)
        self._open.add(fd)
        return fd

    def ioctl(self, fd: int, request: str, arg: Any = 0) -> int:
        self._check(request)
        result = self.inner.ioctl(fd, request, arg)
        if request in ("KVM_CREATE_VM", "KVM_CREATE_VCPU"):
            self._open.add(result)  # these answer with a new descriptor
        return result

    def close(self, fd: int) -> None:
        self._open.discard(fd)
        self.inner.close(fd)

    def kernel_release(self) -> str:
        return self.inner.kernel_release()


__all__ = ["OPEN", "Fault", "FaultyOps"]
