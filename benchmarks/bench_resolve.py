"""Resolution speed (issues 2 and 7): warm resolution, against a real QEMU, cold start.

Run with ``tox -e bench``; numbers go to BENCHMARKS.md.  No assertions on
time here: the targets are checked by reading the report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from machines.config import configure
from machines.i386.ioapic import ioapic
from machines.i386.seoib import KernelCaps, decide, inputs_from
from machines.options import parse_args
from machines.registry import get_build
from machines.resolve import Resolver

# One configuration, asked of both: the compat properties of pc-q35-10.0, the
# IOAPIC (type, version) and the SEOIB decision at power-on.
ONE_CONFIG = ["-M", "pc-q35-10.0", "-accel", "tcg"]
QEMU = shutil.which("qemu-system-x86_64")


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


def test_resolve_one_configuration(benchmark: Any) -> None:
    """Issue 7: all compat properties + the IOAPIC + the SEOIB decision, QEMU 10.0.2 data.

    A fresh Resolver each round; the build's data is loaded once (as in any
    process that answers more than one question).
    """
    config = configure(get_build("10.0.2"), parse_args(ONE_CONFIG))
    caps = KernelCaps("(not used)", False, False)

    def answer() -> tuple[Any, ...]:
        resolver = Resolver(config)
        pic = ioapic(resolver)
        return resolver.compat_effective(), pic, decide(inputs_from(resolver), caps)

    compat, pic, decision = benchmark(answer)
    assert pic.version == 0x20 and pic.path == "/machine/q35/ioapic"
    assert decision.state is None and decision.error is None and compat  # TCG: no KVM LAPIC


def test_resolve_one_configuration_kvm_split(benchmark: Any) -> None:
    """The same with -accel kvm,kernel-irqchip=split on a Linux 7.0 kernel profile, so
    the SEOIB decision walks the kernel's flags.  No QEMU baseline: QEMU 10.0.2
    has no SEOIB policy to ask about."""
    from kvmglue.profile import shipped
    from machines.kernels import caps

    config = configure(get_build("10.0.2"), parse_args(
        ["-M", "pc-q35-10.0", "-accel", "kvm,kernel-irqchip=split"]))
    linux70 = caps(shipped("linux-7.0"))

    def answer() -> tuple[Any, ...]:
        resolver = Resolver(config)
        return resolver.compat_effective(), ioapic(resolver), decide(inputs_from(resolver),
                                                                      linux70)

    _, _, decision = benchmark(answer)
    assert decision.error is None


@pytest.mark.qemu
def test_resolve_one_configuration_real_qemu(benchmark: Any) -> None:
    """The baseline: the same question asked of QEMU (start -S, qom-get, quit)."""
    if QEMU is None:
        pytest.skip("needs qemu-system-x86_64 on PATH")
    from machines.qmp import BASE_ARGS, QemuProcess, QemuSession

    async def ask() -> tuple[str, int]:
        async with QemuProcess(QEMU, [*ONE_CONFIG, "-S", *BASE_ARGS]) as process:
            session = QemuSession(process)
            version = await session.qom_get("/machine/q35/ioapic", "version")
            typename = await session.qom_get("/machine/q35/ioapic", "type")
            return str(typename), int(version)

    typename, version = benchmark.pedantic(lambda: asyncio.run(ask()), rounds=10,
                                           warmup_rounds=1)
    assert (typename, version) == ("ioapic", 0x20)


def _machines() -> list[str]:
    """The installed ``machines`` command (what an operator runs), else ``python -m``."""
    script = os.path.join(os.path.dirname(sys.executable), "machines")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "machines"]


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def test_cold_start_python_baseline(benchmark: Any) -> None:
    """Baseline: the interpreter alone."""
    benchmark.pedantic(_run, args=(sys.executable, "-c", "pass"), rounds=30, warmup_rounds=2)


def test_cold_start_machines_list(benchmark: Any) -> None:
    """Target: <= 150 ms wall for 'machines list' from a fresh process."""
    benchmark.pedantic(_run, args=(*_machines(), "list"), rounds=30,
                       warmup_rounds=2)


def test_cold_start_machines_resolve_ioapic(benchmark: Any) -> None:
    """Issue 7 target: <= 5x the baseline.  A q35 VM's IOAPIC, all its properties."""
    benchmark.pedantic(_run, args=(*_machines(), "resolve", "-M", "q35",
                                   "--device", "ioapic"), rounds=30, warmup_rounds=2)


def test_cold_start_machines_resolve(benchmark: Any) -> None:
    """'machines resolve' of a KVM split-irqchip VM, from a fresh process.

    Uses the host's kernel profile, which a per-boot cache keeps after the
    first probe (warmup round).
    """
    benchmark.pedantic(_run, args=(*_machines(), "resolve", "-M", "q35",
                                   "-accel", "kvm,kernel-irqchip=split"), rounds=30,
                       warmup_rounds=2)


def test_cold_start_machines_preflight(benchmark: Any) -> None:
    """Issue 18: a fresh 'machines preflight' of a q35 VM to one destination."""
    benchmark.pedantic(_run, args=(*_machines(), "preflight", "--release", "10.0.2", "--dest",
                                   "linux-7.0/10.0.2", *ONE_CONFIG), rounds=30,
                       warmup_rounds=2)


@pytest.mark.qemu
def test_cold_start_real_qemu_stdio(benchmark: Any) -> None:
    """Issue 18's other side: a fresh QEMU answering over '-qmp stdio', no client library
    (the cheapest way to ask QEMU; benchmarks/coldstart.py runs all of them paired)."""
    if QEMU is None:
        pytest.skip("needs qemu-system-x86_64 on PATH")
    commands = (b'{"execute":"qmp_capabilities"}\n{"execute":"qom-get","arguments":'
                b'{"path":"/machine/q35/ioapic","property":"version"}}\n{"execute":"quit"}\n')

    def ask() -> None:
        subprocess.run([QEMU, *ONE_CONFIG, "-S", "-nodefaults", "-display", "none", "-qmp",
                        "stdio"], input=commands, stdout=subprocess.DEVNULL, check=True)

    benchmark.pedantic(ask, rounds=30, warmup_rounds=2)
