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
import os
import stat
from typing import Any

from attrs import frozen

from machines.errors import QmpSourceError, UsageError

TIMEOUT = 10.0
GREETING_TIMEOUT = 3.0  # QEMU greets at once; silence means another client holds the monitor


@frozen
class LiveVm:
    version: str
    args: tuple[str, ...]
    notes: tuple[str, ...]


HELD_HINT = ("a libvirt-managed VM's monitor is always held by libvirtd: give its domain "
             "instead (virsh dumpxml DOMAIN > vm.xml, then --libvirt vm.xml), or ask libvirt: "
             "virsh qemu-monitor-command DOMAIN --pretty '{\"execute\":\"query-version\"}'")


def _check_socket(socket_path: str) -> None:
    """A missing path or a non-socket is bad input (exit 2), said before connecting."""
    try:
        mode = os.stat(socket_path).st_mode
    except OSError as err:
        raise UsageError(f"--qmp {socket_path}: {err.strerror or err}") from None
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"--qmp {socket_path}: not a socket (give QEMU's QMP monitor socket, "
                         "-qmp unix:PATH,server=on,wait=off)")


async def _connect(client: Any, socket_path: str) -> None:
    from qemu.qmp import ConnectError

    try:
        await asyncio.wait_for(client.connect(socket_path), GREETING_TIMEOUT)
    except TimeoutError:
        raise QmpSourceError(
            f"--qmp {socket_path}: no QMP greeting within {GREETING_TIMEOUT:g} s: the monitor "
            f"is held by another client (QEMU serves one at a time); {HELD_HINT}") from None
    except ConnectError as err:
        cause = err.exc
        if isinstance(cause, ConnectionRefusedError):
            raise QmpSourceError(f"--qmp {socket_path}: connection refused: no QEMU listens on "
                                 "it (a stale socket of a VM that is gone?)") from None
        if isinstance(cause, OSError):
            raise QmpSourceError(f"--qmp {socket_path}: cannot connect: "
                                 f"{cause.strerror or cause}") from None
        raw = getattr(getattr(cause, "exc", None), "raw", None)
        seen = f": it sent {bytes(raw)[:40]!r}" if isinstance(raw, (bytes, bytearray)) else ""
        raise QmpSourceError(f"--qmp {socket_path}: not a QMP monitor (no QMP greeting{seen})") \
            from None
    except Exception as err:  # anything else while connecting is still one line
        raise QmpSourceError(f"--qmp {socket_path}: cannot talk QMP: "
                             f"{err or type(err).__name__}") from None


async def _read(socket_path: str) -> LiveVm:
    from qemu.qmp import QMPClient

    from machines.qmp import QmpCommandError, checkpoint

    _check_socket(socket_path)
    client = QMPClient("machines-preflight")
    await _connect(client, socket_path)

    async def run(cmd: str, args: dict[str, Any] | None = None) -> Any:
        try:
            reply = await asyncio.wait_for(client.execute(cmd, args), TIMEOUT)
            checkpoint()
            return reply
        except Exception as err:
            from qemu.qmp import ExecuteError

            if isinstance(err, ExecuteError):
                raise QmpCommandError(cmd, str(err), err.error_class) from None
            raise QmpSourceError(f"--qmp {socket_path}: QEMU broke off '{cmd}': "
                                 f"{err or type(err).__name__}") from None

    try:
        return await describe(run)
    finally:
        with contextlib.suppress(Exception):  # already failing or done; the socket is QEMU's
            await asyncio.wait_for(client.disconnect(), TIMEOUT)


async def describe(run: Any) -> LiveVm:
    """The running QEMU's configuration from its answers to ``run(command, arguments)``.

    ``run`` is any QMP transport: our own client on the monitor socket, or
    libvirt's monitor passthrough (:mod:`machines.virsh`).  Both give the same
    judgement.
    """
    from machines.qmp import QmpCommandError

    version = await run("query-version", None)
    numbers = version["qemu"]
    version_text = f"{numbers['major']}.{numbers['minor']}.{numbers['micro']}"
    machine_type = str(await run("qom-get", {"path": "/machine", "property": "type"}))
    machine = machine_type.removesuffix("-machine")
    kvm = bool((await run("query-kvm", None)).get("enabled"))
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
    cpus = await run("query-cpus-fast", None)
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
    return LiveVm(version_text, tuple(args), tuple(notes))


def read_live(socket_path: str) -> LiveVm:
    """Read a running QEMU's configuration over its QMP socket."""
    from machines.qmp import QmpCommandError

    try:
        return asyncio.run(_read(socket_path))
    except QmpCommandError as err:
        raise QmpSourceError(f"--qmp {socket_path}: {err}") from None
