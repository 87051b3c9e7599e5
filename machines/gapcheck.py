"""``machines gaps --confirm``: prove each guest-visible gap against the two binaries.

For each guest-visible gap, both builds are started paused (``-S``, TCG) on
the same old machine type (the newest affected one), with the device added
by ``-device TYPE,id=gapcheck`` (or, where QEMU refuses that, as the machine
creates it: the chipset, the LPC bridge), and ``qom-get`` reads the property
back.  The gap is proven when the two readings differ as the data said;
disproved when they agree (QEMU decided the value at realize, say).  Each
QEMU is bounded by a timeout, its process group killed and its socket
directory removed (:class:`machines.qmp.QemuProcess`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from machines.build import Build
from machines.errors import EnvironmentUnavailable, UsageError
from machines.gaps import GUEST, Gap, GapReport
from machines.qmp import BASE_ARGS, QemuCommand, QemuProcess, QemuSession, QmpCommandError

# Registry build -> the Debian suite whose zoo chroot runs it; 10.0.2 is the host's.
ZOO_SUITES = {"5.2": "bullseye", "7.2": "bookworm", "10.0.13": "trixie",
              "11.1.3": "trixie-backports"}
HOST_BUILD = "10.0.2"
PAUSED = ("-accel", "tcg", "-S", *BASE_ARGS)
DEVICE_ID = "gapcheck"
# Concrete devices to stand for an abstract type (the first that is a subtype wins).
PREFERRED = ("virtio-net-pci", "e1000", "virtio-blk-pci", "virtio-balloon-pci", "qemu-xhci",
             "pci-bridge", "VGA", "usb-kbd", "pvpanic")


def command_for(build: Build, override: str | None) -> QemuCommand:
    """The binary that runs ``build``: the override, the host's QEMU or a zoo chroot."""
    if override:
        return QemuCommand.parse(override)
    if build.name == HOST_BUILD:
        return QemuCommand.parse("qemu-system-x86_64")
    suite = ZOO_SUITES.get(build.name)
    if suite is None:
        raise UsageError(f"no binary is known for build '{build.name}': give --old-qemu or "
                         "--new-qemu COMMAND")
    root = os.path.join(os.environ.get("MACHINES_ZOO", "/var/lib/machines-zoo"), suite)
    if not os.path.isdir(root):
        raise EnvironmentUnavailable(f"QEMU {build.name} needs the zoo chroot {root} "
                                     "(run .ci/install-zoo), or give --old-qemu/--new-qemu")
    return QemuCommand.chroot(root)


def stand_ins(build: Build, typename: str, prop: str, limit: int = 3) -> list[str]:
    """Types to create for ``typename``, most likely to start first.

    Itself when concrete; else concrete subtypes that show ``prop``.  A virtio
    backend device (``virtio-gpu-device``) needs a bus: its PCI proxy
    (``virtio-gpu-pci``) is created instead, which shows the backend's
    properties through aliases.  Preferred: common devices, then PCI devices
    that need no host backend (no vhost, vfio or vhost-user).
    """
    qom = build.qom
    if typename not in qom:
        return []
    found = [typename] if typename not in qom.abstract else [
        t for t in qom.subtypes(typename) if t not in qom.abstract and prop in qom.properties(t)]
    proxies: dict[str, list[str]] = {}
    for candidate in qom.subtypes("virtio-pci"):
        backend = qom.proxy_backend(candidate)
        if backend is not None:
            proxies.setdefault(backend, []).append(candidate)
    creatable: list[str] = []
    for t in found:
        if qom.is_a(t, "virtio-device") and t in proxies:
            creatable += proxies[t]
        else:
            creatable.append(t)

    def rank(t: str) -> tuple[int, str]:
        if t in PREFERRED:
            return 0, f"{PREFERRED.index(t):03}"
        hostless = not any(w in t for w in ("vhost", "vfio", "user", "transitional"))
        return (1 if hostless and t.endswith("-pci") else 2 if hostless else 3), t

    return sorted(dict.fromkeys(creatable), key=rank)[:limit]


async def _read(command: QemuCommand, machine: str, device: str, prop: str, timeout: float
                ) -> tuple[str, Any]:
    """(how the object was found, the qom-get reading) from one QEMU."""
    with_device = ("-machine", machine, "-device", f"{device},id={DEVICE_ID}", *PAUSED)
    try:
        async with QemuProcess(command, with_device, timeout=timeout) as process:
            session = QemuSession(process)
            value = await session.qom_get(f"/machine/peripheral/{DEVICE_ID}", prop)
            return f"-device {device}", value
    except QmpCommandError:
        raise
    except EnvironmentUnavailable as err:
        if "exited at once" not in str(err):
            raise
        refused = str(err).split(": ", 1)[-1]
    # Not creatable with -device (part of the machine, or needs a bus): look for it.
    async with QemuProcess(command, ("-machine", machine, *PAUSED), timeout=timeout) as process:
        session = QemuSession(process)
        path = await _find(session, device)
        if path is None:
            raise LookupError(f"-device {device} refused ({refused}) and the machine has none")
        return f"the machine's {path}", await session.qom_get(path, prop)


async def _find(session: QemuSession, typename: str) -> str | None:
    pending = ["/machine"]
    seen = 0
    while pending and seen < 5000:
        path = pending.pop()
        for child in await session.qom_list(path):
            kind = str(child.get("type", ""))
            if kind.startswith("child<"):
                seen += 1
                child_path = f"{path}/{child['name']}"
                if kind[6:-1] == typename:
                    return child_path
                pending.append(child_path)
    return None


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


async def _confirm_one(gap: Gap, old: Build, new: Build, commands: tuple[QemuCommand,
                       QemuCommand], timeout: float, gate: asyncio.Semaphore
                       ) -> tuple[bool | None, str]:
    devices = [d for d in stand_ins(new, gap.typename, gap.prop) if d in old.qom]
    if not devices:
        return None, "could not check: no concrete type of both builds to create"
    # The newest affected type of each family: a chipset device lives on one only.
    families: dict[str, str] = {}
    for name in gap.machines:
        families.setdefault(name.rsplit("-", 1)[0], name)
    failures = []
    for machine, device in ((m, d) for m in families.values() for d in devices):
        readings = []
        for build, command in zip((old, new), commands, strict=True):
            async with gate:
                try:
                    readings.append((build.name, *await _read(command, machine, device,
                                                              gap.prop, timeout)))
                except (LookupError, QmpCommandError) as err:
                    failures.append(f"QEMU {build.name} on {machine}: {err}")
                    break
        if len(readings) == 2:
            return _verdict(gap, machine, readings)
    return None, "could not check: " + "; ".join(failures)


def _verdict(gap: Gap, machine: str, readings: list[tuple[str, str, Any]]
             ) -> tuple[bool | None, str]:
    (o_name, o_how, o_val), (n_name, _, n_val) = readings
    said = (f"{machine}, {o_how}: QEMU {o_name} reads {o_val!r}, QEMU {n_name} reads "
            f"{n_val!r} ({gap.typename}.{gap.prop})")
    if _same(o_val, n_val):
        return False, said + ": the same, so not a gap in practice"
    if _same(o_val, gap.old) and _same(n_val, gap.new):
        return True, said
    return True, said + f" (the data said {gap.old!r} and {gap.new!r})"


def confirm(report: GapReport, old: Build, new: Build, commands: tuple[QemuCommand, QemuCommand],
            timeout: float = 20.0, parallel: int = 2, only: Sequence[str] = ()
            ) -> dict[tuple[str, str], tuple[bool | None, str]]:
    """Read each guest-visible gap (or those named ``TYPE.PROP`` in ``only``) back."""
    wanted = [g for g in report.gaps if g.verdict == GUEST
              and (not only or f"{g.typename}.{g.prop}" in only)]

    async def main() -> list[tuple[bool | None, str]]:
        await _check_versions(old, new, commands, timeout)
        gate = asyncio.Semaphore(parallel)
        return list(await asyncio.gather(*(
            _confirm_one(g, old, new, commands, timeout, gate) for g in wanted)))

    results = asyncio.run(main())
    return {(g.typename, g.prop): r for g, r in zip(wanted, results, strict=True)}


async def _check_versions(old: Build, new: Build, commands: tuple[QemuCommand, QemuCommand],
                          timeout: float) -> None:
    """Each binary must be the build it stands for (same QEMU version)."""
    for build, command in zip((old, new), commands, strict=True):
        async with QemuProcess(command, ("-machine", "none", *PAUSED),
                               timeout=timeout) as process:
            version, _ = await QemuSession(process).version()
        if version != build.version_text and not version.startswith(build.version_text + "."):
            raise UsageError(f"'{command.name}' is QEMU {version}, not the {build.name} build "
                             f"(QEMU {build.version_text})")
