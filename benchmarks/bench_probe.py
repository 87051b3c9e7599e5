"""How long ``machines probe`` takes: on the real /dev/kvm and on a simulated kernel.

Run with ``pytest benchmarks/bench_probe.py``.  The real-KVM benchmark skips
when /dev/kvm cannot be opened.
"""

from __future__ import annotations

from typing import Any

import pytest

from kvmglue.errors import KvmError
from kvmglue.kvm import open_kvm
from kvmglue.probe import probe_device
from kvmglue.sim import SimKernel


def _kvm_problem() -> str | None:
    try:
        with open_kvm():
            return None
    except KvmError as err:
        return str(err)


@pytest.mark.kvm
def test_probe_real_kvm(benchmark: Any) -> None:
    problem = _kvm_problem()
    if problem:
        pytest.skip(f"needs a usable /dev/kvm ({problem})")
    profile = benchmark(probe_device)
    assert profile.conformance


def test_probe_simulated_kernel(benchmark: Any) -> None:
    kernel = SimKernel("7.0.0")
    profile = benchmark(probe_device, kernel.device, ops=kernel)
    assert profile.conformance
