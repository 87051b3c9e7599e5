"""The PC machines' IOAPIC: which device QEMU creates, and its version.

``ioapic_init_gsi()`` (hw/i386/x86-common.c) creates ``kvm-ioapic`` when KVM
runs the IOAPIC in the kernel (``kernel-irqchip=on``) and the userspace
``ioapic`` otherwise (TCG, ``kernel-irqchip=split`` or ``off``).  KVM's
in-kernel IOAPIC is version 0x11 and has no EOI register; the userspace one
takes its ``version`` property (default 0x20, 0x11 on machine types up to
2.7 through ``hw_compat_2_7``) and refuses anything but 0x11 or 0x20 when it
is realized.  It lives at ``/machine/q35/ioapic`` or ``/machine/i440fx/ioapic``.
"""

from typing import NamedTuple

from machines.errors import PropertyError
from machines.resolve import Resolved, Resolver, Source

USERSPACE = "ioapic"
IN_KERNEL = "kvm-ioapic"
VERSIONS = (0x11, 0x20)
KVM_IN_KERNEL_VERSION = 0x11


class Ioapic(NamedTuple):
    type: str
    path: str | None
    version: int
    source: Source

    @property
    def has_eoi_register(self) -> bool:
        """Version 0x20 has the EOI register directed EOI needs; 0x11 does not."""
        return self.version == 0x20


def ioapic_path(machine_family: str | None) -> str | None:
    return {"pc_q35": "/machine/q35/ioapic", "pc_piix": "/machine/i440fx/ioapic"}.get(
        machine_family or "")


def ioapic(resolver: Resolver) -> Ioapic:
    """The IOAPIC this configuration gets; an invalid version fails as in QEMU."""
    irqchip = resolver.kernel_irqchip()
    path = ioapic_path(resolver.config.machine.family)
    if irqchip is not None and irqchip.value == "on":
        return Ioapic(IN_KERNEL, path, KVM_IN_KERNEL_VERSION,
                      Source("kvm", "KVM's in-kernel IOAPIC is version 0x11 (kernel-irqchip=on)"))
    resolved: Resolved = resolver.resolve(USERSPACE, "version")
    version = resolved.value
    if version not in VERSIONS:
        raise PropertyError("IOAPIC only supports version 0x11 or 0x20 (default: 0x20).")
    assert isinstance(version, int)
    return Ioapic(USERSPACE, path, version, resolved.source)
