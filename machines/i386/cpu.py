"""x86 CPU defaults that depend on the accelerator (target/i386/kvm/kvm-cpu.c).

Under KVM, every built-in CPU model (``qemu64``, ``Skylake-Server``... not
``host``, ``max`` or ``base``) gets ``kvm_default_props`` in instance_init,
before compat properties and globals: x2APIC on when the LAPIC is in the
kernel, off with ``kernel-irqchip=off``; the MSI extended destination ID on
with a split irqchip.  ``host`` and ``max`` take their features from the host
CPU instead, and every x86_64 host KVM runs on has x2APIC.
"""

from __future__ import annotations

KVM_DEFAULT_PROPS: tuple[tuple[str, str], ...] = (
    ("kvmclock", "on"), ("kvm-nopiodelay", "on"), ("kvm-asyncpf", "on"),
    ("kvm-steal-time", "on"), ("kvm-pv-eoi", "on"), ("kvmclock-stable-bit", "on"),
    ("x2apic", "on"), ("kvm-msi-ext-dest-id", "off"), ("acpi", "off"), ("monitor", "off"),
    ("svm", "off"),
)
MODEL_LESS = ("host-x86_64-cpu", "max-x86_64-cpu", "base-x86_64-cpu")


def kvm_instance_defaults(typename: str, kernel_irqchip: str | None) -> dict[str, tuple[str, str]]:
    """Property -> (value, why) that KVM's instance_init sets on this CPU type."""
    if typename in ("host-x86_64-cpu", "max-x86_64-cpu"):
        return {"x2apic": ("on", "KVM passes the host CPU's features through (-cpu host/max)")}
    if typename in MODEL_LESS or not typename.endswith("-x86_64-cpu"):
        return {}
    props = {name: (value, "kvm_default_props for built-in CPU models")
             for name, value in KVM_DEFAULT_PROPS}
    if kernel_irqchip == "off":
        props["x2apic"] = ("off", "kvm_default_props: x2apic off without an in-kernel LAPIC")
    elif kernel_irqchip == "split":
        props["kvm-msi-ext-dest-id"] = ("on", "kvm_default_props: on with a split irqchip")
    return props
