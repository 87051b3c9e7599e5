"""Asking a real QEMU what it built: start it paused (-S, TCG), read QOM back.

Used by the tests that prove the model equal to QEMU; a guest never runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from machines.qmp import BASE_ARGS, QemuProcess, QemuSession, QmpCommandError

T = TypeVar("T")
PAUSED = ("-accel", "tcg", "-S", *BASE_ARGS)


async def with_qemu(binary: str, args: Sequence[str],
                    body: Callable[[QemuSession], Awaitable[T]]) -> T:
    async with QemuProcess(binary, [*args, *PAUSED]) as process:
        return await body(QemuSession(process))


Body = Callable[[QemuSession], Awaitable[T]]


def run_many(binary: str, jobs: Iterable[tuple[Sequence[str], Body[T]]], parallel: int = 4
             ) -> list[T]:
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
