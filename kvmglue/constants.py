"""KVM's numbers that need no C: capabilities, x2APIC API flags, LAPIC and CPUID bits.

Kept apart from :mod:`kvmglue._cdefs` so that reading a kernel profile does
not load cffi; ``_cdefs`` re-exports all of them.
"""

from __future__ import annotations

import enum

KVM_API_VERSION = 12  # the only version there has ever been

# -- capabilities -----------------------------------------------------------

KVM_CAP_IRQCHIP = 0
KVM_CAP_SPLIT_IRQCHIP = 121
KVM_CAP_X2APIC_API = 129

# KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) takes the number of IOAPIC routes
# reserved for userspace; QEMU asks for 24, the IOAPIC's pin count.
SPLIT_IRQCHIP_ROUTES = 24
MAX_SPLIT_IRQCHIP_ROUTES = 24  # MAX_NR_RESERVED_IOAPIC_PINS


class X2ApicApi(enum.IntFlag):
    """``args[0]`` of KVM_ENABLE_CAP(KVM_CAP_X2APIC_API), and its answer."""

    USE_32BIT_IDS = 1 << 0
    DISABLE_BROADCAST_QUIRK = 1 << 1
    # From Linux 7.0 (backported to 6.18.y and 6.19.y): userspace chooses
    # whether the guest may suppress EOI broadcasts instead of inheriting
    # KVM's historical quirk.
    ENABLE_SUPPRESS_EOI_BROADCAST = 1 << 2
    DISABLE_SUPPRESS_EOI_BROADCAST = 1 << 3


X2APIC_API_LEGACY = X2ApicApi.USE_32BIT_IDS | X2ApicApi.DISABLE_BROADCAST_QUIRK
X2APIC_API_SEOIB = (X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST
                    | X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST)

# -- local APIC -------------------------------------------------------------

LAPIC_REGS_SIZE = 1024
APIC_LVR = 0x30  # version register offset in kvm_lapic_state.regs
APIC_LVR_DIRECTED_EOI = 1 << 24  # "suppress EOI broadcast" supported

# CPUID leaf 1, ECX bit 21: the vCPU has an x2APIC.
CPUID_FEATURES_LEAF = 1
CPUID_ECX_X2APIC = 1 << 21
