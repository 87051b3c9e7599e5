"""A libvirt domain XML, read as the QEMU configuration libvirt would start.

Only what the machine type, the accelerator, the irqchip, the CPU and the
passthrough arguments need is read, and mapped the way libvirt's QEMU driver
maps it:

* ``<domain type='kvm'>`` -> ``-accel kvm``; ``type='qemu'`` -> ``-accel tcg``;
* ``<os><type machine='pc-q35-10.0'>`` -> ``-machine pc-q35-10.0``; without
  ``machine=`` libvirt starts x86 with the alias ``pc``;
* ``<features><ioapic driver='qemu'/>`` -> ``kernel_irqchip=split`` on the
  ``-machine`` option (``driver='kvm'`` -> ``kernel_irqchip=on``), where libvirt
  puts it: ``-machine q35,kernel_irqchip=split`` then ``-accel kvm``, so that a
  ``<qemu:commandline>`` ``-machine kernel_irqchip=on`` replaces it as in QEMU;
* ``<os><type arch=...>`` other than x86 is refused (only x86 is modelled);
* ``<cpu mode='host-passthrough'>`` -> ``-cpu host,migratable=on``;
  ``mode='custom'`` with ``<model>`` and ``<feature policy=...>`` -> the
  model with ``feat=on``/``feat=off``;
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
X86_ARCHES = ("x86_64", "i686")
IRQCHIP = {"qemu": "split", "kvm": "on"}  # <ioapic driver=...> -> -machine kernel_irqchip=
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
    os_type = root.find("os/type")
    arch = os_type.get("arch") if os_type is not None else None
    if arch is not None and arch not in X86_ARCHES:
        raise DataError(f"{where}: <type arch='{arch}'>: only x86 is modelled "
                        f"({', '.join(X86_ARCHES)})")
    machine = (os_type.get("machine") if os_type is not None else None) or "pc"
    machine_opt = machine.replace(",", ",,")
    kind = root.get("type", "kvm")
    ioapic = root.find("features/ioapic")
    driver = ioapic.get("driver") if ioapic is not None else None
    if driver is not None and driver not in IRQCHIP:
        raise DataError(f"{where}: <ioapic driver='{driver}'> is not 'qemu' or 'kvm'")
    if kind not in ("kvm", "qemu"):
        raise DataError(f"{where}: <domain type='{kind}'> is not a QEMU/KVM domain")
    if driver is not None:
        machine_opt += f",kernel_irqchip={IRQCHIP[driver]}"
    args = ["-machine", machine_opt, "-accel", "kvm" if kind == "kvm" else "tcg"]
    cpu = _cpu(root.find("cpu"), where)
    if cpu:
        args += ["-cpu", cpu]
    for arg in root.iterfind(f"{{{QEMU_NS}}}commandline/{{{QEMU_NS}}}arg"):
        value = arg.get("value")
        if value is None:
            raise DataError(f"{where}: <qemu:arg> without a value")
        args.append(value)
    emulator = (root.findtext("devices/emulator") or "").strip() or None
    program = (emulator or "").rsplit("/", 1)[-1]
    if program.startswith("qemu-system-") and program[12:] not in ("x86_64", "i386"):
        raise DataError(f"{where}: <emulator>{emulator}</emulator>: only x86 is modelled "
                        "(qemu-system-x86_64, qemu-system-i386)")
    return emulator, args


def _cpu(cpu: Element | None, where: str) -> str | None:
    """``-cpu`` as libvirt writes it: ``model,feat=on,feat=off`` in document order.

    ``host-passthrough`` is ``host,migratable=on`` (or ``=off`` as the domain
    says).  ``optional`` features depend on the host CPU libvirt finds and are
    left out; ``host-model`` is expanded by libvirt from the host at start, so
    it is read as ``host``.
    """
    if cpu is None:
        return None
    mode = cpu.get("mode", "custom")
    if mode == "host-passthrough":
        model = f"host,migratable={'off' if cpu.get('migratable') == 'off' else 'on'}"
    elif mode in ("host-model", "maximum"):
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
        qemu_name = name.replace("_", "-")
        if policy in ("require", "force"):
            features.append(f"{qemu_name}=on")
        elif policy in ("disable", "forbid"):
            features.append(f"{qemu_name}=off")
    return ",".join([model, *features])
