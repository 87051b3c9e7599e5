"""kvmglue: /dev/kvm through cffi, a simulated kernel, and kernel profiles.

* :mod:`kvmglue.kvm`: the binding (:func:`open_kvm`, ``Kvm``/``Vm``/``Vcpu``).
* :mod:`kvmglue.sim`: :class:`SimKernel`, the same calls answered by a model.
* :mod:`kvmglue.faults`: :class:`FaultyOps`, chosen calls made to fail.
* :mod:`kvmglue.probe`: :func:`probe`, a kernel's x2APIC/SEOIB behaviour.
* :mod:`kvmglue.profile`: :class:`KernelProfile` and its JSON form.
"""

from kvmglue._cdefs import (
    KVM_CAP_IRQCHIP,
    KVM_CAP_SPLIT_IRQCHIP,
    KVM_CAP_X2APIC_API,
    X2ApicApi,
)
from kvmglue.errors import (
    KvmError,
    KvmExists,
    KvmInvalidArgument,
    KvmUnavailable,
    KvmUnsupported,
)
from kvmglue.kvm import CpuidEntry, Kvm, KvmOps, Vcpu, Vm, open_kvm

__all__ = [
    "KVM_CAP_IRQCHIP",
    "KVM_CAP_SPLIT_IRQCHIP",
    "KVM_CAP_X2APIC_API",
    "CpuidEntry",
    "Kvm",
    "KvmError",
    "KvmExists",
    "KvmInvalidArgument",
    "KvmOps",
    "KvmUnavailable",
    "KvmUnsupported",
    "Vcpu",
    "Vm",
    "X2ApicApi",
    "open_kvm",
]
