"""What a failing KVM call raises, for the real kernel and the simulated one.

Callers branch on the class (``KvmInvalidArgument`` is the kernel's EINVAL,
``KvmUnsupported`` its ENOTTY) or on :attr:`KvmError.errno`; the message is
one line naming the operation, e.g. ``KVM_ENABLE_CAP: Invalid argument
(EINVAL)``.
"""

from __future__ import annotations

import errno as _errno
import os


class KvmError(Exception):
    """A KVM operation failed with ``errno``."""

    def __init__(self, errno: int, operation: str, message: str = "") -> None:
        self.errno = errno
        self.operation = operation
        super().__init__(message or f"{operation}: {os.strerror(errno)} ({errno_name(errno)})")

    @property
    def errno_name(self) -> str:
        return errno_name(self.errno)


class KvmUnavailable(KvmError):
    """/dev/kvm could not be opened: absent, not permitted, or no KVM."""

    def __init__(self, errno: int, path: str) -> None:
        self.path = path
        reason = {
            _errno.ENOENT: "no such file (is the kvm module loaded?)",
            _errno.EACCES: "permission denied (is this user in the kvm group?)",
            _errno.EPERM: "operation not permitted",
        }.get(errno, f"{os.strerror(errno)} ({errno_name(errno)})")
        super().__init__(errno, "open", f"cannot open {path}: {reason}")


class KvmInvalidArgument(KvmError):
    """EINVAL: the kernel refused the arguments (or the state) of a call."""


class KvmUnsupported(KvmError):
    """ENOTTY: the file descriptor does not know this ioctl."""


class KvmExists(KvmError):
    """EEXIST: the thing is already set up (irqchip, vCPU id)."""


_BY_ERRNO: dict[int, type[KvmError]] = {
    _errno.EINVAL: KvmInvalidArgument,
    _errno.ENOTTY: KvmUnsupported,
    _errno.EEXIST: KvmExists,
}


def ioctl_error(errno: int, ioctl: str) -> KvmError:
    """The exception for ioctl ``ioctl`` failing with ``errno``."""
    return _BY_ERRNO.get(errno, KvmError)(errno, ioctl)


def errno_name(errno: int) -> str:
    """``EINVAL`` for 22; ``E<n>`` for a number errno does not name."""
    return _errno.errorcode.get(errno, f"E{errno}")
