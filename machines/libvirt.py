"""A libvirt domain XML, read as the QEMU configuration libvirt would start.

Only what the machine type, the accelerator, the irqchip, the CPU and the
passthrough arguments need is read, and mapped the way libvirt's QEMU driver
maps it:

* ``<domain type='kvm'>`` -> ``-accel kvm``; ``type='qemu'`` -> TCG;
* ``<os><type machine='pc-q35-10.0'>`` -> ``-machine pc-q35-10.0``;
* ``<features><ioapic driver='qemu'/>`` -> ``kernel-irqchip=split``
  (``driver='kvm'`` -> ``on``);
* ``<cpu mode='host-passthrough'|'host-model'>`` -> ``-cpu host``;
  ``mode='custom'`` with ``<model>`` and ``<feature policy=...>`` -> the
  model with ``+feat``/``-feat``;
* ``<qemu:commandline><qemu:arg value=...>`` -> appended verbatim.

The XML is parsed with defusedxml: entity definitions, external entities
and DTD retrieval are refused, so a hostile document cannot expand or reach
out.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

from machines.errors import DataError

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
MAX_BYTES = 4 << 20


def read_domain(path: str | Path) -> tuple[str | None, list[str]]:
    """(emulator, QEMU arguments) for the domain in ``path``."""
    try:
        data = Path(path).read_bytes()[: MAX_BYTES + 1]
    except OSError as err:
        raise DataError(f"libvirt XML {path}: {err.strerror or err}") from None
    if len(data) > MAX_BYTES:
        raise DataError(f"libvirt XML {path}: larger than {MAX_BYTES >> 20} MiB")
    return parse_domain(data, str(path))


def parse_domain(data: bytes | str, where: str = "libvirt XML") -> tuple[str | None, list[str]]:
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        root = ET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as err:
        raise DataError(f"{where}: refused: {type(err).__name__} (DTDs and entities are "
                        "not allowed)") from None
    except ET.ParseError as err:
        raise DataError(f"{where}: not well-formed XML ({err})") from None
    if root.tag != "domain":
        raise DataError(f"{where}: the top element is <{root.tag}>, not <domain>")
    args: list[str] = []
    os_type = root.find("os/type")
    machine = os_type.get("machine") if os_type is not None else None
    if machine:
        args += ["-machine", machine.replace(",", ",,")]
    kind = root.get("type", "kvm")
    ioapic = root.find("features/ioapic")
    driver = ioapic.get("driver") if ioapic is not None else None
    if kind == "kvm":
        accel = "kvm"
        if driver == "qemu":
            accel += ",kernel-irqchip=split"
        elif driver == "kvm":
            accel += ",kernel-irqchip=on"
        elif driver is not None:
            raise DataError(f"{where}: <ioapic driver='{driver}'> is not 'qemu' or 'kvm'")
        args += ["-accel", accel]
    elif kind == "qemu":
        args += ["-accel", "tcg"]
    else:
        raise DataError(f"{where}: <domain type='{kind}'> is not a QEMU/KVM domain")
    cpu = _cpu(root.find("cpu"), where)
    if cpu:
        args += ["-cpu", cpu]
    for arg in root.iterfind(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg"):
        value = arg.get("value")
        if value is None:
            raise DataError(f"{where}: <qemu:arg> without a value")
        args.append(value)
    emulator = root.findtext("devices/emulator")
    return (emulator.strip() if emulator else None), args


def _cpu(cpu: Element | None, where: str) -> str | None:
    if cpu is None:
        return None
    mode = cpu.get("mode", "custom")
    if mode in ("host-passthrough", "host-model", "maximum"):
        model = "max" if mode == "maximum" else "host"
    elif mode == "custom":
        model = (cpu.findtext("model") or "").strip()
        if not model:
            return None
    else:
        raise DataError(f"{where}: <cpu mode='{mode}'> is not a mode libvirt knows")
    features = []
    for feature in cpu.iterfind("feature"):
        name, policy = feature.get("name"), feature.get("policy", "require")
        if not name:
            raise DataError(f"{where}: <feature> without a name")
        if policy in ("require", "force"):
            features.append(f"+{name}")
        elif policy in ("disable", "forbid"):
            features.append(f"-{name}")
    return ",".join([model, *features])
