"""QEMU's versioned machine type lifecycle (include/hw/boards.h).

A release X.Y marks machine type M.m deprecated when it is 3 years old and
stops registering it when it is 6 years old, counting years as major
versions: old if ``X - M > N``, or ``X - M == N`` and ``Y - m >= 0``.  The
micro version (``pc-q35-4.0.1``) does not count.  QEMU 10.0 computed the
deletion but only applied it with ``QEMU_DELETE_MACHINES`` set; from 10.1 on it
always applies.
"""

from __future__ import annotations

DEPRECATION_MAJOR = 3
DELETION_MAJOR = 6
DELETION_ENFORCED_FROM = (10, 1)


def _expired(release: tuple[int, ...], version: tuple[int, ...], cutoff: int) -> bool:
    age = release[0] - version[0]
    return age > cutoff or (age == cutoff and release[1] - version[1] >= 0)


def is_deprecated(release: tuple[int, ...], version: tuple[int, ...]) -> bool:
    return _expired(release, version, DEPRECATION_MAJOR)


def is_registered(release: tuple[int, ...], version: tuple[int, ...]) -> bool:
    if tuple(release[:2]) < DELETION_ENFORCED_FROM:
        return True
    return not _expired(release, version, DELETION_MAJOR)
