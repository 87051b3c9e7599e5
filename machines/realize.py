"""What QEMU does to property values when it realizes a device.

Compat properties and globals set a property before the device is realized;
a few realize functions then overwrite it regardless.  The one that matters
for machine-type compatibility: virtio devices that only exist as virtio
1.0 ("modern-only") call ``virtio_pci_force_virtio_1()`` in realize, so an
old machine type's ``virtio-pci.disable-modern=on`` compat entry has no
effect on them (hw/virtio/virtio-pci.h and the devices' realize functions).

Other realize-time decisions (``"auto"`` settings, "unspecified" vector
counts, the CPU's physical address bits) depend on the topology and host;
the QOM data marks those properties from what a plain machine showed, and the
resolver reports them as decided at realize rather than guessing.
"""

from __future__ import annotations

from collections.abc import Iterable

from machines.qom import QomTypes

# Device types (and their subtypes) whose realize calls virtio_pci_force_virtio_1().
MODERN_ONLY_VIRTIO = (
    "virtio-input-pci", "virtio-gpu-pci-base", "virtio-vga-base", "virtio-pmem-pci",
    "virtio-crypto-pci", "vhost-user-vsock-pci", "virtio-mem-pci", "virtio-iommu-pci",
    "virtio-nsm-pci", "virtio-snd-pci",
)
FORCED_BY_VIRTIO_1 = {"disable-modern": False, "disable-legacy": "on"}


def forced_at_realize(qom: QomTypes, typename: str, prop: str) -> tuple[object, str] | None:
    """(value, why) when realize overwrites ``typename.prop`` unconditionally."""
    if prop in FORCED_BY_VIRTIO_1 and _is_any(qom, typename, MODERN_ONLY_VIRTIO):
        return FORCED_BY_VIRTIO_1[prop], "virtio_pci_force_virtio_1(): modern-only virtio device"
    return None


def _is_any(qom: QomTypes, typename: str, bases: Iterable[str]) -> bool:
    ancestry = set(qom.ancestry(typename))
    return any(base in ancestry for base in bases)


# DEV_NVECTORS_UNSPECIFIED: a vector count left for realize to work out from
# the device (virtio-serial-pci takes max_nr_ports + 1).  Old machine types'
# compat entries set it (pc_compat_1_4 in QEMU 5.2), so a compat value does
# not say what the guest gets either.
NVECTORS_UNSPECIFIED = 0xFFFFFFFF


def left_to_realize(prop: str, value: object) -> bool:
    """Whether ``value`` only tells realize to decide (an "unspecified" marker)."""
    return prop == "vectors" and value == NVECTORS_UNSPECIFIED
