"""Cold start side by side (issue 18): a fresh ``machines`` process against the QEMU process
answering the same question.

    python benchmarks/coldstart.py [-n ROUNDS] [--machines PATH]

The question: for ``-M pc-q35-10.0`` under TCG, the IOAPIC's version (what ``machines resolve
--device ioapic`` answers, with every other property of the device).  Each round runs, in
turn (paired, so load on this shared machine hits all alike):

* ``machines resolve -M pc-q35-10.0 --device ioapic`` and ``machines preflight --release 10.0.2
  --dest linux-7.0/10.0.2 -M pc-q35-10.0 -accel tcg`` as fresh processes, through the installed
  script (what an operator types; ``--machines`` names it, default this interpreter's);
* QEMU 10.0.2 asked as the issue asked it: started with ``-S``, the QMP handshake and
  ``qom-get`` through the ``qemu.qmp`` client of an already running Python, then ``quit``;
* QEMU asked the cheapest way there is: ``-qmp stdio`` with the three commands piped in, no
  client library at all (a lower bound for any QEMU-based answer);
* ``python -c pass``: the interpreter alone, and ``python -c 'import re, typing,
  collections'``: the floor under any typed Python command-line tool.

Printed: the median and minimum wall time of each, the CPU time (user+system of the child,
from wait4; QEMU's threads included) and the ratios.  No assertions: the numbers go to
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

QEMU = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"
CONFIG = ["-M", "pc-q35-10.0", "-accel", "tcg"]
BASE = ["-S", "-nodefaults", "-display", "none"]
QMP_IN = (b'{"execute":"qmp_capabilities"}\n'
          b'{"execute":"qom-get","arguments":{"path":"/machine/q35/ioapic",'
          b'"property":"version"}}\n{"execute":"quit"}\n')


def _child(argv: list[str], stdin: bytes | None = None) -> tuple[float, float]:
    """(wall ms, CPU ms) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)
    if stdin:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - start) * 1000
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode})")
    return wall, (usage.ru_utime + usage.ru_stime) * 1000


def _qemu_qmp_client() -> tuple[float, float]:
    from machines.qmp import BASE_ARGS, QemuProcess, QemuSession

    async def ask() -> int:
        async with QemuProcess(QEMU, [*CONFIG, "-S", *BASE_ARGS]) as process:
            return int(await QemuSession(process).qom_get("/machine/q35/ioapic", "version"))

    start = time.perf_counter()
    assert asyncio.run(ask()) == 0x20
    return (time.perf_counter() - start) * 1000, float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--rounds", type=int, default=20)
    p.add_argument("--machines", default=os.path.join(os.path.dirname(sys.executable),
                                                      "machines"))
    p.add_argument("--before", metavar="PATH",
                   help="another installed machines script (e.g. before issue 18), run the same "
                        "way in the same rounds")
    args = p.parse_args()
    m = args.machines
    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "python -c pass": lambda: _child([sys.executable, "-c", "pass"]),
        # what any typed Python tool pays before its own code: re (the console script's
        # first line), typing (NamedTuple) and collections
        "python -c 'import re, typing, collections'":
            lambda: _child([sys.executable, "-c", "import re, typing, collections"]),
        "machines resolve -M pc-q35-10.0 --device ioapic":
            lambda: _child([m, "resolve", "-M", "pc-q35-10.0", "--device", "ioapic"]),
        "machines preflight --release 10.0.2 --dest linux-7.0/10.0.2 -M pc-q35-10.0":
            lambda: _child([m, "preflight", "--release", "10.0.2", "--dest",
                            "linux-7.0/10.0.2", *CONFIG]),
        "QEMU 10.0.2, qemu.qmp client (as in the issue)": _qemu_qmp_client,
        **({"before: machines resolve -M pc-q35-10.0 --device ioapic":
            lambda: _child([args.before, "resolve", "-M", "pc-q35-10.0", "--device", "ioapic"]),
            "before: machines preflight --release 10.0.2 --dest linux-7.0/10.0.2":
            lambda: _child([args.before, "preflight", "--release", "10.0.2", "--dest",
                            "linux-7.0/10.0.2", *CONFIG])} if args.before else {}),
        "QEMU 10.0.2, -qmp stdio pipe (no client)":
            lambda: _child([QEMU, *CONFIG, *BASE, "-qmp", "stdio"], QMP_IN),
    }
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for run in runs.values():  # warm the page cache and the probe cache
        run()
    for _ in range(args.rounds):
        for name, run in runs.items():
            results[name].append(run())
    print(f"{args.rounds} rounds, paired; load average {os.getloadavg()[0]:.2f}")
    print(f"{'median':>8} {'min':>7} {'CPU':>7}  what")
    med = {}
    for name, values in results.items():
        walls = [w for w, _ in values]
        cpus = [c for _, c in values if c == c]
        med[name] = statistics.median(walls)
        cpu = f"{statistics.median(cpus):6.1f}" if cpus else "     -"
        print(f"{med[name]:6.1f}ms {min(walls):5.1f}ms {cpu}ms  {name}")
    names = list(runs)
    qemus = [n for n in names if n.startswith("QEMU")]
    cpu_med = {n: statistics.median(c for _, c in v) for n, v in results.items()
               if all(c == c for _, c in v)}
    for ours in [n for n in names if n.startswith(("machines", "before", "python"))]:
        for qemu in qemus:
            line = f"{med[qemu] / med[ours]:5.2f}x wall"
            if qemu in cpu_med and ours in cpu_med:
                line += f", {cpu_med[qemu] / cpu_med[ours]:4.2f}x CPU"
            print(f"{line}  {ours[:44]} vs {qemu}")


if __name__ == "__main__":
    main()
