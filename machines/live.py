"""A running QEMU as a pre-flight source: read its configuration back over QMP.

The monitor socket is QEMU's (``-qmp unix:PATH,server=on,wait=off``, or
libvirt's ``monitor.sock``); we connect as a client.  What is read back:
the QEMU version (which picks the build data), the machine type, whether
KVM is on, the irqchip mode (from the types of the IOAPIC and the CPU's
LAPIC that QEMU created), the IOAPIC version and the CPU model with its
x2APIC bit.  The result is the QEMU command line that configuration
amounts to, so the rest of pre-flight treats every source the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from attrs import frozen

from machines.errors import EnvironmentUnavailable

TIMEOUT = 10.0


@frozen
class LiveVm:
    version: str
    args: tuple[str, ...]
    notes: tuple[str, ...]


async def _read(socket_path: str) -> LiveVm:
    from qemu.qmp import QMPClient

    from machines.qmp import QmpCommandError

    client = QMPClient("machines-preflight")
    try:
        await asyncio.wait_for(client.connect(socket_path), TIMEOUT)
    except Exception as err:  # any failure to connect is one line for the operator
        raise EnvironmentUnavailable(f"cannot talk QMP on {socket_path}: {err}") from None

    async def run(cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            return await asyncio.wait_for(client.execute(cmd, args), TIMEOUT)
        except Exception as err:
            from qemu.qmp import ExecuteError

            if isinstance(err, ExecuteError):
                raise QmpCommandError(cmd, str(err), err.error_class) from None
            raise EnvironmentUnavailable(f"QEMU at {socket_path} broke off '{cmd}': {err}") \
                from None

    try:
        version = await run("query-version")
        numbers = version["qemu"]
        version_text = f"{numbers['major']}.{numbers['minor']}.{numbers['micro']}"
        machine_type = str(await run("qom-get", {"path": "/machine", "property": "type"}))
        machine = machine_type.removesuffix("-machine")
        kvm = bool((await run("query-kvm")).get("enabled"))
        notes: list[str] = []
        children: dict[str, str] = {}
        for parent in ("/machine/q35", "/machine/i440fx"):
            try:
                for child in await run("qom-list", {"path": parent}):
                    children[f"{parent}/{child['name']}"] = str(child.get("type", ""))
            except QmpCommandError:
                continue
        ioapic_path = next((p for p in children if p.endswith("/ioapic")), None)
        ioapic_type = children.get(ioapic_path or "", "")
        cpus = await run("query-cpus-fast")
        cpu_path = cpus[0]["qom-path"] if cpus else None
        cpu_type = str(await run("qom-get", {"path": cpu_path, "property": "type"})) \
            if cpu_path else None
        args = ["-machine", machine]
        if kvm:
            if ioapic_type == "child<kvm-ioapic>":
                irqchip = "on"
            else:
                lapic = str(await run("qom-get", {"path": f"{cpu_path}/lapic",
                                                  "property": "type"}))
                irqchip = "split" if lapic == "kvm-apic" else "off"
            args += ["-accel", f"kvm,kernel-irqchip={irqchip}"]
            notes.append(f"KVM with kernel-irqchip={irqchip} (read from the devices QEMU made)")
        else:
            args += ["-accel", "tcg"]
        if ioapic_path and ioapic_type == "child<ioapic>":
            version_value = await run("qom-get", {"path": ioapic_path, "property": "version"})
            args += ["-global", f"ioapic.version={int(version_value):#x}"]
        if cpu_type and cpu_type.endswith("-x86_64-cpu"):
            model = cpu_type.removesuffix("-x86_64-cpu")
            x2apic = await run("qom-get", {"path": cpu_path, "property": "x2apic"})
            args += ["-cpu", model if x2apic else f"{model},-x2apic"]
    finally:
        with contextlib.suppress(Exception):  # already failing or done; the socket is QEMU's
            await asyncio.wait_for(client.disconnect(), TIMEOUT)
    return LiveVm(version_text, tuple(args), tuple(notes))


def read_live(socket_path: str) -> LiveVm:
    """Read a running QEMU's configuration over its QMP socket."""
    return asyncio.run(_read(socket_path))
