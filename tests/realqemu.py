"""Asking a real QEMU what it built: start it paused (-S, TCG), read QOM back.

Used by the tests that prove the model equal to QEMU; a guest never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from machines.build import Build
from machines.config import configure
from machines.options import parse_args
from machines.qmp import BASE_ARGS, QemuCommand, QemuProcess, QemuSession, QmpCommandError
from machines.resolve import Resolver

T = TypeVar("T")
PAUSED = ("-accel", "tcg", "-S", *BASE_ARGS)


async def with_qemu(binary: str | QemuCommand, args: Sequence[str],
                    body: Callable[[QemuSession], Awaitable[T]]) -> T:
    async with QemuProcess(binary, [*args, *PAUSED]) as process:
        return await body(QemuSession(process))


Body = Callable[[QemuSession], Awaitable[T]]


def run_many(binary: str | QemuCommand, jobs: Iterable[tuple[Sequence[str], Body[T]]],
             parallel: int = 4) -> list[T]:
    """Run one QEMU per job, a few at a time; results in job order."""
    async def main() -> list[T]:
        gate = asyncio.Semaphore(parallel)

        async def one(args: Sequence[str], body: Callable[[QemuSession], Awaitable[T]]) -> T:
            async with gate:
                return await with_qemu(binary, args, body)

        return await asyncio.gather(*(one(a, b) for a, b in jobs))

    return asyncio.run(main())


async def walk_devices(session: QemuSession, root: str = "/machine") -> list[tuple[str, str]]:
    """(path, type) of every object under ``root`` (children only, no links)."""
    found: list[tuple[str, str]] = []
    pending = [root]
    while pending:
        path = pending.pop()
        for child in await session.qom_list(path):
            kind = str(child.get("type", ""))
            if not kind.startswith("child<"):
                continue
            typename = kind[len("child<"):-1]
            child_path = f"{path}/{child['name']}"
            found.append((child_path, typename))
            pending.append(child_path)
    return found


async def qom_get_many(session: QemuSession, items: Iterable[tuple[str, str]]
                       ) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for path, prop in items:
        try:
            out[(path, prop)] = await session.qom_get(path, prop)
        except QmpCommandError as err:
            out[(path, prop)] = err
    return out


# Devices added to every machine so that many compat-affected properties exist
# (those a build does not have are left out for it).
SAMPLE_DEVICES = (
    "virtio-net-pci", "e1000", "virtio-balloon-pci", "virtio-rng-pci", "virtio-serial-pci",
    "virtio-scsi-pci", "vmxnet3", "VGA", "pvpanic", "pvscsi", "qemu-xhci", "usb-kbd",
    "usb-mouse", "usb-tablet", "virtio-keyboard-pci", "virtio-mouse-pci", "virtio-tablet-pci",
    "virtio-gpu-pci", "pci-bridge,chassis_nr=1", "e1000e", "secondary-vga", "bochs-display",
    "nvme,serial=abc", "virtio-rng-pci-transitional",
)


def sample_devices(build: Build) -> list[str]:
    """``-device`` arguments for the sample devices this build has."""
    return [a for d in SAMPLE_DEVICES if d.split(",")[0] in build.qom for a in ("-device", d)]


def _affected(build: Build) -> dict[str, set[str]]:
    drivers: dict[str, set[str]] = {}
    for machine in build.machines.values():
        for cp in machine.compat_props():
            drivers.setdefault(cp.property, set()).add(cp.driver)
    return drivers


def sample_body(build: Build) -> Body[list[tuple[str, str, Any]]]:
    """Read every compat-affected property of every device QEMU created."""
    qom = build.qom
    affected = _affected(build)

    def props_of(typename: str) -> list[str]:
        out = []
        for prop in qom.properties(typename):
            owner = qom.property_owner(typename, prop)
            chain = set(qom.ancestry(typename)) | set(qom.ancestry(owner))
            if chain & affected.get(prop, set()):
                out.append(prop)
        return out

    async def body(session: QemuSession) -> list[tuple[str, str, Any]]:
        items = [(path, t, p) for path, t in await walk_devices(session)
                 if t in qom and qom.is_a(t, "device") for p in props_of(t)]
        values = await qom_get_many(session, [(path, p) for path, _, p in items])
        return [(t, p, values[(path, p)]) for path, t, p in items]

    return body


def compare_with_model(build: Build, runs: list[tuple[list[str], list[tuple[str, str, Any]]]]
                       ) -> tuple[set[tuple[str, str]], set[tuple[str, str]], list[Any]]:
    """(compared, decided at realize, wrong) for each run's (args, qom-get rows)."""
    compared: set[tuple[str, str]] = set()
    at_realize: set[tuple[str, str]] = set()
    wrong = []
    for args, rows in runs:
        resolver = Resolver(configure(build, parse_args([*args, "-accel", "tcg"])))
        for typename, prop, value in rows:
            assert not isinstance(value, QmpCommandError), (args, typename, prop, value)
            ours = resolver.resolve(typename, prop)
            if ours.decided_at_realize:
                at_realize.add((typename, prop))
                continue
            compared.add((typename, prop))
            if ours.value != value:
                wrong.append((args, typename, prop, value, ours.value, ours.source.describe()))
    return compared, at_realize, wrong
