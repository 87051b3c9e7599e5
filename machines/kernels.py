"""Choosing the kernel(s) a decision is made for: ``--kernel PROFILE``.

``PROFILE`` is a file written by ``machines probe``, the name of a shipped
profile (``linux-6.12``, ``linux-6.18.y-seoib``, ``linux-7.0``), or ``host``
(probe this machine's /dev/kvm now).  Without ``--kernel``: the host where
/dev/kvm is usable, else every shipped profile.  This is the I/O shell; the
decisions themselves never touch a kernel.
"""

from __future__ import annotations

import os
from pathlib import Path

from kvmglue.profile import KernelProfile, load, shipped, shipped_names
from machines.errors import EnvironmentUnavailable, UsageError
from machines.i386.seoib import KernelCaps

KVM_DEVICE = "/dev/kvm"


def caps(profile: KernelProfile) -> KernelCaps:
    return KernelCaps(profile.name, profile.has_enable_flag, profile.has_disable_flag)


def probe_host(device: str = KVM_DEVICE) -> KernelProfile:
    from kvmglue.errors import KvmError
    from kvmglue.probe import probe_device

    try:
        return probe_device(device)
    except KvmError as err:
        raise EnvironmentUnavailable(f"cannot probe {device}: {err}") from None


def host_usable(device: str = KVM_DEVICE) -> bool:
    return os.access(device, os.R_OK | os.W_OK)


def kernel_profile(spec: str) -> KernelProfile:
    """One profile by ``host``, shipped name, or file path."""
    if spec == "host":
        return probe_host()
    if spec in shipped_names():
        return shipped(spec)
    if Path(spec).exists() or spec.endswith(".json"):
        return load(spec)
    raise UsageError(f"unknown kernel profile '{spec}': give 'host', a file from "
                     f"'machines probe -o', or one of {', '.join(shipped_names())}")


def kernel_profiles(spec: str | None) -> list[KernelProfile]:
    """The profiles a decision is made for (see the module docstring)."""
    if spec is not None:
        return [kernel_profile(spec)]
    if host_usable():
        return [probe_host()]
    return [shipped(name) for name in shipped_names()]
