"""The full compatibility matrix (issue 7): every machine type, 4 kernels, 8 hosts.

Target: <= 100 ms for the whole matrix, computed and rendered as text, in a
process that has already loaded the build data.  The pre-flight caches are
emptied before every round so each round judges every cell again.  The same
matrix from a fresh ``machines matrix`` process is measured beside it.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from kvmglue.profile import KernelProfile, shipped, shipped_names
from machines import matrix, preflight
from machines.hostprofile import HostProfile, from_spec
from machines.kernels import host_usable, kernel_profile
from machines.registry import get_build
from machines.render import to_text

QEMU_BUILDS = ("10.0.2", "10.2")


def _fourth_kernel() -> str:
    """The host's own probe where /dev/kvm works, else a simulated 6.19.y kernel's."""
    return "host" if host_usable() else "sim-6.19"


def _kernels() -> list[KernelProfile]:
    kernels = [shipped(n) for n in shipped_names()]
    if host_usable():
        kernels.append(kernel_profile("host"))
    else:
        from kvmglue.probe import probe_device
        from kvmglue.sim import SimKernel

        sim = SimKernel("6.19.0")
        kernels.append(probe_device(sim.device, ops=sim))
    return kernels


def _hosts(kernels: list[KernelProfile]) -> list[HostProfile]:
    names = [*shipped_names(), "host"] if host_usable() else list(shipped_names())
    hosts = [from_spec(f"{k}/{q}") for k in names for q in QEMU_BUILDS]
    while len(hosts) < 8:  # no /dev/kvm: pair the simulated kernel by hand
        q = QEMU_BUILDS[len(hosts) % 2]
        hosts.append(HostProfile(f"sim/{q}", kernels[-1], get_build(q), {"release": q}))
    return hosts


def _clear_caches() -> None:
    for cached in (preflight._destination_side, preflight._drift, preflight._nearest):
        cached.cache_clear()


def test_full_matrix(benchmark: Any) -> None:
    build = get_build(None)
    kernels = _kernels()
    hosts = _hosts(kernels)
    machines = matrix.select(build, None, None, False)

    def whole() -> str:
        result = matrix.build_matrix(build, kernels, hosts, kernels[-1], machines)
        return to_text(matrix.to_table(result))

    text = benchmark.pedantic(whole, setup=_clear_caches, rounds=30, warmup_rounds=1)
    assert len(kernels) == 4 and len(hosts) == 8
    assert all(m.name in text for m in machines)


def test_full_matrix_cold_start(benchmark: Any) -> None:
    """The same matrix from a fresh process (imports, data loading, caches empty)."""
    dests = [a for k in [*shipped_names(), _fourth_kernel()] if k != "sim-6.19"
             for q in QEMU_BUILDS for a in ("--dest", f"{k}/{q}")]
    argv = [sys.executable, "-m", "machines", "matrix", *dests]
    benchmark.pedantic(subprocess.run, args=(argv,),
                       kwargs={"check": True, "stdout": subprocess.DEVNULL},
                       rounds=10, warmup_rounds=1)
