"""``machines import --qemu`` (issue 7): dominated by starting QEMU; reported beside
a bare QEMU start-and-quit over QMP.

Skips without qemu-system-x86_64 on PATH.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

QEMU = shutil.which("qemu-system-x86_64")
pytestmark = pytest.mark.skipif(QEMU is None, reason="needs qemu-system-x86_64 on PATH")


def test_import_qemu(benchmark: Any, tmp_path: Any) -> None:
    """The whole import: -machine help, QMP type and property walk, instances."""
    out = str(tmp_path / "build.json")
    argv = [sys.executable, "-m", "machines", "import", "--qemu", str(QEMU), "-o", out]
    benchmark.pedantic(subprocess.run, args=(argv,),
                       kwargs={"check": True, "stdout": subprocess.DEVNULL},
                       rounds=3, warmup_rounds=0)
    assert os.path.getsize(out) > 100_000


def test_qemu_start_and_quit(benchmark: Any) -> None:
    """Baseline: one QEMU started paused, a QMP handshake, quit."""
    from machines.qmp import BASE_ARGS, QemuProcess, QemuSession

    async def once() -> str:
        async with QemuProcess(str(QEMU), ["-M", "none", "-accel", "tcg", "-S",
                                           *BASE_ARGS]) as process:
            return (await QemuSession(process).version())[0]

    version = benchmark.pedantic(lambda: asyncio.run(once()), rounds=10, warmup_rounds=1)
    assert version.startswith("10.")
