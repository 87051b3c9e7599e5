"""Resolution speed (issue 2): warm resolution of a machine type, CLI cold start.

Run with ``tox -e bench``; numbers go to BENCHMARKS.md.  No assertions on
time here: the targets are checked by reading the report.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from machines.config import configure
from machines.options import parse_args
from machines.registry import get_build
from machines.resolve import Resolver


def test_resolve_all_compat_properties_of_a_machine_type_warm(benchmark: Any) -> None:
    """Target: <= 50 us median once warm (pc-q35-5.0 has 94 compat entries)."""
    config = configure(get_build("10.2"), parse_args(["-M", "pc-q35-5.0", "-accel", "kvm"]))
    Resolver(config).compat_effective()  # warm: data loaded, fold computed once
    result = benchmark(lambda: Resolver(config).compat_effective())
    assert len(result) > 80


def test_resolve_one_device_all_properties(benchmark: Any) -> None:
    """Every property of virtio-net-pci (~100) with full provenance, for reference."""
    config = configure(get_build("10.2"), parse_args(["-M", "pc-q35-5.0"]))
    result = benchmark(lambda: Resolver(config).device("virtio-net-pci"))
    assert "host_uso" in result


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def test_cold_start_python_baseline(benchmark: Any) -> None:
    """Baseline: the interpreter alone."""
    benchmark.pedantic(_run, args=(sys.executable, "-c", "pass"), rounds=30, warmup_rounds=2)


def test_cold_start_machines_list(benchmark: Any) -> None:
    """Target: <= 150 ms wall for 'machines list' from a fresh process."""
    benchmark.pedantic(_run, args=(sys.executable, "-m", "machines", "list"), rounds=30,
                       warmup_rounds=2)


def test_cold_start_machines_resolve(benchmark: Any) -> None:
    """'machines resolve' of a KVM split-irqchip VM, from a fresh process."""
    benchmark.pedantic(_run, args=(sys.executable, "-m", "machines", "resolve", "-M", "q35",
                                   "-accel", "kvm,kernel-irqchip=split"), rounds=30,
                       warmup_rounds=2)
