"""Real migrations between real QEMU builds: the oracle ``machines preflight`` is checked against.

For a grid of source build x destination build x configuration the source
QEMU starts paused (``-S``), migrates to a file (``migrate "exec:cat >
FILE"``, waited for with ``query-migrate``), and the destination starts with
``-incoming "exec:cat FILE"``.  The outcome is *loaded* (the destination
reaches ``paused`` with the same machine type, read back with ``qom-get
/machine type``) or *failed*, with QEMU's own first error line and its exit
status (``-6``: SIGABRT).  Nothing here judges: the verdicts come from
``machines preflight`` (:mod:`machines.migreport` compares).

The builds: Debian's QEMU 5.2, 7.2, 10.0.13 and 11.1.3 in the zoo's chroots
(``/var/lib/machines-zoo``, ``MACHINES_ZOO``), the host's 10.0.2, and the
SEOIB RFC's 10.2.0 (``../shared/tools/qemu-rfc-seoib``, ``MACHINES_RFC_QEMU``).
A chroot'd QEMU sees only its chroot: each stream is written under the
source's root and copied under the destination's.  Every QEMU runs with
``-m 64``, a 20 s monitor timeout and its own process group, killed when its
run ends; at most two moves run at once.

Regenerate the report (about a minute on two cores)::

    python -m machines.migoracle -o docs/migration-oracle.md
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attrs import asdict, frozen

from machines.errors import EnvironmentUnavailable
from machines.qmp import QemuCommand, QemuProcess

ZOO_DIR = os.environ.get("MACHINES_ZOO", "/var/lib/machines-zoo")
ZOO_SUITES = {"5.2": "bullseye", "7.2": "bookworm", "10.0.13": "trixie",
              "11.1.3": "trixie-backports"}
HOST_BUILD = "10.0.2"
RFC_BUILD = "10.2+rfc-v2"
BUILDS = ("5.2", "7.2", HOST_BUILD, "10.0.13", "11.1.3", RFC_BUILD)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RFC_QEMU = os.environ.get("MACHINES_RFC_QEMU") or os.path.join(
    os.path.dirname(REPO), "shared", "tools", "qemu-rfc-seoib")
COMMON = ("-S", "-nodefaults", "-display", "none", "-m", "64")
DISK = "/tmp/machines-migoracle-disk.raw"  # in every build's root: the same path everywhere
TIMEOUT = 20.0
# Where a paused destination is once the stream is in: 5.2-9.x say paused, later builds keep
# a -S VM in prelaunch.
LOADED_STATES = ("paused", "prelaunch")


def command_of(build: str) -> QemuCommand:
    """How to run a build of the grid."""
    if build == HOST_BUILD:
        return QemuCommand.parse(os.environ.get("MACHINES_QEMU", "qemu-system-x86_64"))
    if build == RFC_BUILD:
        return QemuCommand.parse(RFC_QEMU)
    return QemuCommand.chroot(os.path.join(ZOO_DIR, ZOO_SUITES[build]))


def version_of(build: str) -> str:
    """The build's own ``--version`` first line."""
    cmd = command_of(build)
    out = subprocess.run([*cmd.resolved(), "--version"], capture_output=True, text=True,
                         check=False, timeout=30).stdout
    return out.splitlines()[0] if out else "?"


@frozen
class Case:
    """One move: where from, where to, and the two QEMUs' arguments."""

    source: str
    dest: str
    config: str  # the configuration's name in the grid
    source_args: str
    dest_args: str


@frozen
class Run:
    """What one QEMU did."""

    status: int | None  # exit status; None: it was still running when we quit it
    error: str  # QEMU's first error line ("" when none)
    stderr: str
    runstate: str = ""
    machine: str = ""


@frozen
class Outcome:
    case: Case
    outcome: str  # loaded | failed | source-failed
    source_run: Run
    dest_run: Run | None
    stream: str | None  # host path of the saved stream (kept for --state)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Outcome:
        dest = doc.get("dest_run")
        return cls(Case(**doc["case"]), doc["outcome"], Run(**doc["source_run"]),
                   Run(**dest) if dest else None, doc.get("stream"))


_PREFIX = re.compile(r"^(?:\S*qemu-system-x86_64|qemu-system-x86_64): ")


def first_error(stderr: str) -> str:
    """QEMU's first error line, without the program name; warnings skipped."""
    lines = [_PREFIX.sub("", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line]
    for line in lines:
        if "warning:" not in line and not line.startswith("kvm_lapic_seoib"):
            return line
    return lines[0] if lines else ""


class _Process(QemuProcess):
    """A QemuProcess that keeps QEMU's stderr after its directory is removed."""

    kept = ""

    async def _stop(self) -> None:
        self.kept = _stderr(self)
        await super()._stop()


def _stderr(process: QemuProcess) -> str:
    if process.tmpdir is None:
        return process.kept if isinstance(process, _Process) else ""
    with contextlib.suppress(OSError):
        return (Path(process.tmpdir) / "stderr").read_text(errors="replace")
    return ""


async def _exited(process: QemuProcess, grace: float) -> int | None:
    assert process.proc is not None
    if process.proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.proc.wait(), grace)
    return process.proc.returncode


async def _start(cmd: QemuCommand, args: Sequence[str]) -> tuple[QemuProcess, Run | None]:
    process = _Process(cmd, [*args, *COMMON], timeout=TIMEOUT)
    try:
        await process.__aenter__()
    except EnvironmentUnavailable as err:
        status = process.proc.returncode if process.proc is not None else None
        text = _stderr(process)
        return process, Run(status, first_error(text) or str(err), text or str(err))
    return process, None


async def save(cmd: QemuCommand, args: Sequence[str], out: str) -> Run:
    """Start paused, migrate to ``out`` (a host path under cmd's root)."""
    process, failed = await _start(cmd, args)
    if failed is not None:
        return failed
    try:
        await process.execute("migrate", {"uri": f"exec:cat > {cmd.guest_path(out)}"})
        state: dict[str, Any] = {}
        for _ in range(int(TIMEOUT / 0.05)):
            state = await process.execute("query-migrate")
            if state.get("status") in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        if state.get("status") != "completed":
            why = state.get("error-desc") or f"migration {state.get('status', 'timed out')}"
            return Run(None, str(why), _stderr(process))
        return Run(None, "", _stderr(process), "postmigrate")
    except EnvironmentUnavailable as err:
        status = await _exited(process, 1.0)
        text = _stderr(process)
        return Run(status, first_error(text) or str(err), text)
    finally:
        await process.__aexit__(None, None, None)


async def load(cmd: QemuCommand, args: Sequence[str], stream: str) -> Run:
    """``-incoming defer``, ``migrate-incoming "exec:cat STREAM"``; wait for the load or exit."""
    process, failed = await _start(cmd, [*args, "-incoming", "defer"])
    if failed is not None:
        return failed
    try:
        await process.execute("migrate-incoming", {"uri": f"exec:cat {cmd.guest_path(stream)}"})
        migration = "active"
        for _ in range(int(TIMEOUT / 0.05)):
            migration = str((await process.execute("query-migrate")).get("status", "none"))
            if migration in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        runstate = str((await process.execute("query-status")).get("status"))
        if migration != "completed" or runstate not in LOADED_STATES:
            await asyncio.sleep(0.3)  # QEMU exits after a failed load: let it print why
            status = await _exited(process, 2.0)
            text = _stderr(process)
            return Run(status, first_error(text) or f"migration {migration}, runstate {runstate}",
                       text, runstate)
        machine = str(await process.execute("qom-get", {"path": "/machine",
                                                        "property": "type"}))
        return Run(None, "", _stderr(process), runstate, machine.removesuffix("-machine"))
    except EnvironmentUnavailable as err:
        status = await _exited(process, 2.0)
        text = _stderr(process)
        return Run(status, first_error(text) or str(err), text)
    finally:
        await process.__aexit__(None, None, None)


def prepare_roots(builds: Sequence[str]) -> None:
    """A 1 MiB raw scratch disk at DISK in every build's root (virtio-blk cases)."""
    for build in builds:
        path = os.path.join(command_of(build).root, DISK.lstrip("/"))
        if not os.path.exists(path):
            with open(path, "wb") as fh:
                fh.truncate(1 << 20)


async def run_cases(cases: Sequence[Case], workdir: str, parallel: int = 2,
                    progress: Any = None) -> list[Outcome]:
    """Every move; each distinct source is saved once.  Results in case order."""
    gate = asyncio.Semaphore(parallel)
    saved: dict[tuple[str, str], asyncio.Task[tuple[Run, str]]] = {}
    os.makedirs(workdir, exist_ok=True)

    async def source_stream(build: str, args: str, index: int) -> tuple[Run, str]:
        cmd = command_of(build)
        tmp = cmd.mkdtemp("migoracle-")
        try:
            path = os.path.join(tmp, "stream")
            async with gate:
                run = await save(cmd, args.split(), path)
            keep = os.path.join(workdir, f"s{index:03d}-{build}.mig")
            if os.path.exists(path):
                shutil.move(path, keep)
            return run, keep
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def one(case: Case) -> Outcome:
        key = (case.source, case.source_args)
        if key not in saved:
            saved[key] = asyncio.ensure_future(source_stream(*key, len(saved)))
        source_run, stream = await saved[key]
        if source_run.error or not os.path.exists(stream):
            return Outcome(case, "source-failed", source_run, None, None)
        cmd = command_of(case.dest)
        tmp = cmd.mkdtemp("migoracle-")
        try:
            local = os.path.join(tmp, "stream")
            shutil.copyfile(stream, local)
            async with gate:
                run = await load(cmd, case.dest_args.split(), local)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        if progress is not None:
            progress(case, run)
        source_machine = _machine_arg(case.dest_args)
        ok = run.status is None and run.runstate in LOADED_STATES and (
            source_machine is None or run.machine == source_machine)
        return Outcome(case, "loaded" if ok else "failed", source_run, run, stream)

    return list(await asyncio.gather(*(one(c) for c in cases)))


def _machine_arg(args: str) -> str | None:
    words = args.split()
    for i, word in enumerate(words[:-1]):
        if word in ("-M", "-machine"):
            return words[i + 1].split(",")[0]
    return None

# -- the grid --------------------------------------------------------------------------------

TCG, KVM, SPLIT = "-accel tcg", "-accel kvm", "-accel kvm,kernel-irqchip=split"
DEVICES = ("-device virtio-net-pci,romfile= "
           f"-drive file={DISK},format=raw,if=none,id=d0,file.locking=off "
           "-device virtio-blk-pci,drive=d0 "
           "-device qemu-xhci -device usb-tablet")


def _types(build: str, family: str) -> list[tuple[Any, str]]:
    from machines.registry import get_build

    return sorted((m.version, m.name) for m in get_build(build).registered()
                  if m.family == family and m.version is not None)


def _shared(source: str, dest: str, family: str) -> list[str]:
    dest_names = {n for _, n in _types(dest, family)}
    return [n for _, n in _types(source, family) if n in dest_names]


def _resolved_alias(build: str, alias: str) -> str:
    from machines.registry import get_build

    found = [m.name for m in get_build(build).registered() if m.alias == alias]
    return found[0] if found else alias


def cases_for(source: str, dest: str, full: bool = True) -> list[Case]:
    """The configurations of one ordered pair of builds.

    The destination is configured like the source (the machine type pinned to the one the
    source resolved, as libvirt does); only the "-irqchip" cases differ.
    """
    q35 = _shared(source, dest, "pc_q35")
    pc = _shared(source, dest, "pc_piix")
    out: list[Case] = []

    def add(config: str, args: str, dest_args: str | None = None) -> None:
        if any((c.source_args, c.dest_args) == (args, dest_args or args) for c in out):
            return  # e.g. the oldest shared type is the newest
        out.append(Case(source, dest, config, args, dest_args if dest_args is not None else args))

    newest, oldest = f"-M {q35[-1]}", f"-M {q35[0]}"
    add("newest-q35 kvm", f"{newest} {KVM}")
    if full or RFC_BUILD in (source, dest):
        add("newest-q35 split", f"{newest} {SPLIT}")
    if full:
        add("newest-q35 tcg", f"{newest} {TCG}")
        add("oldest-q35 kvm", f"{oldest} {KVM}")
        add("newest-pc kvm", f"-M {pc[-1]} {KVM}")
        add("oldest-pc tcg", f"-M {pc[0]} {TCG}")
        add("ioapic-0x11 split", f"{newest} {SPLIT} -global ioapic.version=0x11")
        add("devices kvm", f"{newest} {KVM} {DEVICES}")
        add("devices tcg", f"-M {pc[-1]} {TCG} {DEVICES}")
        # the VM powered on with the alias: the source resolves it, the destination is pinned
        alias = _resolved_alias(source, "q35")
        add("alias-q35 kvm", f"-M q35 {KVM}", f"-M {alias} {KVM}")
        add("kvm->tcg", f"{newest} {KVM}", f"{newest} {TCG}")
        add("split->on", f"{newest} {SPLIT}", f"{newest} {KVM}")
    lacking = [n for _, n in _types(source, "pc_q35") if n not in set(q35)]
    if lacking and (full or source in ("11.1.3", RFC_BUILD)):
        # a type the destination lacks: the source's newest such
        add("type-lacking kvm", f"-M {lacking[-1]} {KVM}")
    return out


def rfc_to_itself() -> list[Case]:
    """The RFC build to itself: its x86-seoib-state section into a QEMU that has the code."""
    m = "-M pc-q35-10.2"
    return [Case(RFC_BUILD, RFC_BUILD, "newest-q35 split", f"{m} {SPLIT}", f"{m} {SPLIT}"),
            Case(RFC_BUILD, RFC_BUILD, "split->on", f"{m} {SPLIT}", f"{m} {KVM}"),
            Case(RFC_BUILD, RFC_BUILD, "split->tcg", f"{m} {SPLIT}", f"{m} {TCG}")]


def grid(builds: Sequence[str] = BUILDS, full: bool = True) -> list[Case]:
    """Every ordered pair of distinct builds, and the RFC build to itself."""
    return ([c for s in builds for d in builds if s != d for c in cases_for(s, d, full)]
            + (rfc_to_itself() if RFC_BUILD in builds else []))


def run_grid(cases: Sequence[Case], workdir: str, parallel: int = 2,
             verbose: bool = False) -> list[Outcome]:
    """Prepare the roots and run every case (streams kept in ``workdir``)."""
    import sys

    prepare_roots(sorted({c.source for c in cases} | {c.dest for c in cases}))
    done = [0]

    def progress(case: Case, run: Run) -> None:
        done[0] += 1
        if verbose:
            print(f"[{done[0]}/{len(cases)}] {case.source} -> {case.dest} {case.config}: "
                  f"{run.error or 'loaded'}", file=sys.stderr, flush=True)

    return asyncio.run(run_cases(cases, workdir, parallel, progress))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import datetime
    import json
    import sys

    from machines.fileio import atomic_write

    p = argparse.ArgumentParser(prog="python -m machines.migoracle",
                                description="real migrations between real QEMU builds, "
                                            "judged by machines preflight")
    p.add_argument("-o", "--output", default="docs/migration-oracle.md", help="the report")
    p.add_argument("--json", metavar="FILE", help="also every move, outcome and verdict as JSON")
    p.add_argument("--workdir", default="/tmp/machines-migoracle",
                   help="where the streams are kept (preflight --state reads them)")
    p.add_argument("--builds", default=",".join(BUILDS), help="comma-separated builds")
    p.add_argument("--subset", action="store_true", help="two configurations per pair only")
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--rejudge", metavar="FILE",
                   help="no migrations: judge the moves of an earlier --json again")
    args = p.parse_args(argv)
    from machines import migreport

    builds = args.builds.split(",")
    if args.rejudge:
        with open(args.rejudge) as fh:
            outcomes = [Outcome.from_json(d) for d in json.load(fh)]
    else:
        cases = grid(builds, full=not args.subset)
        outcomes = run_grid(cases, args.workdir, args.parallel, verbose=True)
        with open(os.path.join(args.workdir, "outcomes.json"), "w") as fh:
            json.dump([o.to_json() for o in outcomes], fh, indent=1)
    judged = migreport.judge(outcomes)
    versions = {b: version_of(b) for b in builds}
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = migreport.render(judged, versions, date, "python -m machines.migoracle -o "
                            + args.output)
    atomic_write(args.output, text)
    if args.json:
        atomic_write(args.json, json.dumps(migreport.to_json(judged), indent=1) + "\n")
    n = migreport.counts(judged)
    print(", ".join(f"{k} {v}" for k, v in n.items()), file=sys.stderr)
    return 1 if n["false_ok"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
