"""kvmglue: /dev/kvm through cffi, a simulated kernel, and kernel profiles.

* :mod:`kvmglue.kvm`: the binding (:func:`open_kvm`, ``Kvm``/``Vm``/``Vcpu``).
* :mod:`kvmglue.sim`: :class:`SimKernel`, the same calls answered by a model.
* :mod:`kvmglue.faults`: :class:`FaultyOps`, chosen calls made to fail.
* :mod:`kvmglue.probe`: :func:`probe`, a kernel's x2APIC/SEOIB behaviour.
* :mod:`kvmglue.profile`: :class:`KernelProfile` and its JSON form.

The names below are loaded on first use, so that reading a kernel profile
(:mod:`kvmglue.profile`) does not pay for cffi.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "KVM_CAP_IRQCHIP": "kvmglue.constants",
    "KVM_CAP_SPLIT_IRQCHIP": "kvmglue.constants",
    "KVM_CAP_X2APIC_API": "kvmglue.constants",
    "X2ApicApi": "kvmglue.constants",
    "KvmError": "kvmglue.errors",
    "KvmExists": "kvmglue.errors",
    "KvmInvalidArgument": "kvmglue.errors",
    "KvmUnavailable": "kvmglue.errors",
    "KvmUnsupported": "kvmglue.errors",
    "CpuidEntry": "kvmglue.kvm",
    "Kvm": "kvmglue.kvm",
    "KvmOps": "kvmglue.kvm",
    "Vcpu": "kvmglue.kvm",
    "Vm": "kvmglue.kvm",
    "open_kvm": "kvmglue.kvm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kvmglue' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
