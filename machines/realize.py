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


# Properties whose type default is a sentinel that realize replaces, whatever
# the machine: (an ancestor type, the property) -> what realize does.  Checked
# against qom-get on QEMU 10.0.2 (tests/test_qemu_oracle.py).
_BLOCK = "blkconf: from the backend at realize"
DECIDED_AT_REALIZE: dict[tuple[str, str], str] = {
    ("pci-device", "addr"): "-1: the first free slot of the bus is taken at realize",
    # read only: addr as SLOT.FN, so it follows addr= and the slot realize takes
    ("pci-device", "legacy-addr"): "addr as SLOT.FN: the slot given or taken at realize",
    # a NIC's MAC, when not given: qemu_macaddr_default_if_unset() at realize hands out
    # 52:54:00:12:34:56 and up in creation order (QEMU 10.0.2: :56 for a lone e1000)
    ("device", "mac"): "unset: realize gives the next default MAC (52:54:00:12:34:56 and up, "
                       "in creation order)",
    # VIRTIO_CONSOLE_BAD_ID: virtser_port_device_realize takes the first free port number
    ("virtio-serial-port", "nr"): "0xFFFFFFFF: realize takes a free port number (0 for the "
                                  "first console)",
    ("virtio-pci", "disable-legacy"): "auto: on behind a PCIe port, else off "
                                      "(virtio_pci_realize)",
    **{(base, prop): f"{_BLOCK} ({what})"
       for base in ("virtio-blk-pci-base", "virtio-blk-device", "ide-device", "scsi-disk-base")
       for prop, what in (("cyls", "geometry guessed from the size"),
                          ("heads", "geometry guessed from the size"),
                          ("secs", "geometry guessed from the size"),
                          ("logical_block_size", "the backend's block size"),
                          ("physical_block_size", "the backend's block size"))},
}


def decided_at_realize(qom: QomTypes, typename: str, prop: str) -> str | None:
    """How realize decides ``typename.prop`` when nothing set it, or None."""
    for base in qom.ancestry(typename):
        rule = DECIDED_AT_REALIZE.get((base, prop))
        if rule is not None:
            return rule
    return None


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
