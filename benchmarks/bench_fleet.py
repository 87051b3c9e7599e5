"""Fleet pre-flight at region scale (issue 19): 1,000,000 VMs x 10,000 hosts.

Targets for the 1e6 x 1e4 run: <= 10 s wall and <= 1 GB peak memory in one
process (one core), and <= 300 bytes of output per VM on average.  The cost
curve: 1e4, 1e5 and 1e6 VMs against the same 10,000 hosts (linear in VMs),
and 1e5 VMs against 1,000 and 10,000 hosts (flat in hosts once the classes are
formed).  Fleets come from ``fleetgen`` (seeded); the answer goes to a file
in the temporary directory, whose size gives the bytes per VM.  Peak memory
is the child's own maximum resident set and CPU its user + system time, read
with wait4(); wall is what pytest-benchmark times.  On a shared machine read
the minimum: the others' load only ever adds to it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import fleetgen

SEED = 7
SIZES = [(10_000, 10_000), (100_000, 10_000), (1_000_000, 10_000), (100_000, 1_000)]


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[int, int], tuple[str, str]]:
    base = tmp_path_factory.mktemp("fleets")
    made: dict[int, tuple[str, str]] = {}
    out = {}
    for vms, hosts in SIZES:
        directory = base / f"{vms}x{hosts}"
        out[(vms, hosts)] = fleetgen.write(str(directory), vms, hosts, SEED)
        made[vms] = out[(vms, hosts)]
    return out


def _preflight(vms: str, hosts: str, output: str, stats: list[tuple[int, float]]) -> None:
    argv = [sys.executable, "-m", "machines", "preflight", "--fleet", vms, "--hosts", hosts,
            "-o", output]
    child = subprocess.Popen(argv)
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stats.append((usage.ru_maxrss, usage.ru_utime + usage.ru_stime))  # KiB, s


@pytest.mark.parametrize(("vms", "hosts"), SIZES, ids=[f"{v}vms-{h}hosts" for v, h in SIZES])
def test_fleet(benchmark: Any, fleets: dict[tuple[int, int], tuple[str, str]], vms: int,
               hosts: int, tmp_path: Path) -> None:
    fleet, host_dir = fleets[(vms, hosts)]
    host_classes, vm_classes = fleetgen.classes(fleet, host_dir)
    output = tmp_path / "answer.jsonl"
    stats: list[tuple[int, float]] = []
    rounds = 3 if vms >= 1_000_000 else 5
    benchmark.pedantic(_preflight, args=(fleet, host_dir, str(output), stats), rounds=rounds,
                       warmup_rounds=0)
    per_vm = output.stat().st_size / vms
    peak = max(s[0] for s in stats) / 1024
    cpu = min(s[1] for s in stats)
    benchmark.extra_info.update(peak_rss_mb=round(peak, 1), bytes_per_vm=round(per_vm, 1),
                                min_cpu_s=round(cpu, 2), host_classes=host_classes,
                                vm_classes=vm_classes)
    print(f"\nfleet {vms} VMs x {hosts} hosts ({vm_classes} VM classes, {host_classes} host "
          f"classes): peak RSS {peak:.1f} MB, {per_vm:.1f} bytes/VM, min CPU {cpu:.2f} s")
