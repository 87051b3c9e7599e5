"""Choosing the kernel(s) a decision is made for: ``--kernel PROFILE``.

``PROFILE`` is a file written by ``machines probe``, the name of a shipped
profile (``linux-6.12``, ``linux-6.18.y-seoib``, ``linux-7.0``), or ``host``
(probe this machine's /dev/kvm).  Without ``--kernel``: the host where
/dev/kvm is usable, else every shipped profile.  This is the I/O shell; the
decisions themselves never touch a kernel.

A host probe creates scratch VMs (tens of milliseconds), and what it finds
cannot change until the kernel does, so its profile is kept for the rest of
the boot: ``$XDG_CACHE_HOME/machines/`` (``~/.cache/machines``), keyed by
kernel release, boot id and device.  ``MACHINES_PROBE_CACHE=0`` turns that
off; ``machines probe`` always probes afresh and refreshes the entry.
"""

from __future__ import annotations

import os

from kvmglue.profile import KernelProfile, load, shipped, shipped_names
from machines.errors import EnvironmentUnavailable, MachinesError, UsageError
from machines.i386.seoib import KernelCaps

KVM_DEVICE = "/dev/kvm"


def caps(profile: KernelProfile) -> KernelCaps:
    return KernelCaps(profile.name, profile.has_enable_flag, profile.has_disable_flag,
                      profile.x2apic_api.system)


def cache_path(device: str = KVM_DEVICE) -> str | None:
    """Where this boot's profile of ``device`` is kept, or None when caching is off."""
    if os.environ.get("MACHINES_PROBE_CACHE", "1") == "0":
        return None
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as fh:
            boot = fh.read().strip()
    except OSError:
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = f"{os.uname().release}-{boot}-{device.strip('/').replace('/', '_')}"
    return os.path.join(base, "machines", f"kernel-profile-{key}.json")


def remember(profile: KernelProfile, device: str = KVM_DEVICE) -> None:
    """Keep a fresh host probe for this boot (best effort: a cache must not fail a run)."""
    path = cache_path(device)
    if path is None:
        return
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        profile.save(path)
    except (OSError, MachinesError):
        pass


def probe_host(device: str = KVM_DEVICE, fresh: bool = False) -> KernelProfile:
    path = None if fresh else cache_path(device)
    if path is not None and os.path.isfile(path):
        try:
            return load(path)
        except MachinesError:
            pass  # unreadable cache: probe again and replace it
    from kvmglue.errors import KvmError
    from kvmglue.probe import probe_device

    try:
        profile = probe_device(device)
    except KvmError as err:
        raise EnvironmentUnavailable(f"cannot probe {device}: {err}") from None
    remember(profile, device)
    return profile


def host_usable(device: str = KVM_DEVICE) -> bool:
    return os.access(device, os.R_OK | os.W_OK)


def kernel_profile(spec: str) -> KernelProfile:
    """One profile by ``host``, shipped name, or file path."""
    if spec == "host":
        return probe_host()
    if spec in shipped_names():
        return shipped(spec)
    if os.path.exists(spec) or spec.endswith(".json"):
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
