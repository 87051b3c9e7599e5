"""Fleet pre-flight at scale (issue 7): 100,000 VMs x 1,000 hosts.

Targets: <= 2 s wall and <= 500 MB peak memory, one process (one core).  The
fleet comes from ``fleetgen`` (seeded); the answer goes to /dev/null so the
number is the tool's and not the disk's.  Peak memory is the child's own
maximum resident set, read with wait4().
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

VMS, HOSTS, SEED = 100_000, 1_000, 7


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return fleetgen.write(str(tmp_path_factory.mktemp("fleet")), VMS, HOSTS, SEED)


def _preflight(vms: str, hosts: str, peaks: list[int]) -> None:
    argv = [sys.executable, "-m", "machines", "preflight", "--fleet", vms, "--hosts", hosts]
    with open(os.devnull, "wb") as sink:
        child = subprocess.Popen(argv, stdout=sink)
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0
    peaks.append(usage.ru_maxrss)  # KiB on Linux


def test_fleet_100k_vms_1k_hosts(benchmark: Any, fleet: tuple[str, str]) -> None:
    vms, hosts = fleet
    assert sum(1 for _ in Path(hosts).iterdir()) == HOSTS
    peaks: list[int] = []
    benchmark.pedantic(_preflight, args=(vms, hosts, peaks), rounds=5, warmup_rounds=1)
    benchmark.extra_info["peak_rss_mb"] = round(max(peaks) / 1024, 1)
    print(f"\nfleet {VMS} VMs x {HOSTS} hosts: peak RSS {max(peaks) / 1024:.1f} MB")
