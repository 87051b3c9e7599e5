"""``rfc-v2`` against the RFC's own code: QEMU 10.2.0 built with the RFC v2 patch as posted.

For each configuration the oracle powers on (paused, under this host's KVM)
with ``-trace 'kvm_lapic_seoib*'``; what ``machines`` predicts for the
build ``10.2+rfc-v2`` on this host's kernel must equal what the oracle
traces (every ``kvm_lapic_seoib_set_state state=N``, a failure, QEMU's
fallback warning), and the ``x86-seoib-state`` section ``machines inspect``
finds in the stream the oracle writes (``migrate "exec:cat > FILE"``) must be
the one predicted.  Then streams move oracle -> oracle, oracle -> Debian's
QEMU 10.0.2 and 10.0.2 -> oracle: the real outcome (loads, refuses with
QEMU's message, aborts) must be the pre-flight verdict, whose reason quotes
QEMU's own line.

Each configuration is one short-lived QEMU, one after the other (no guest
ever runs); the whole module takes well under a minute here.  ``tox -e
oracle`` (``MACHINES_RFC_GRID=full``) adds every machine type the model's
10.2 registers with three irqchip/IOAPIC settings.
``MACHINES_REQUIRE_RFC_QEMU=1`` turns a missing oracle into a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from machines.config import configure
from machines.errors import EnvironmentUnavailable
from machines.i386.seoib import (
    RFC_FALLBACK,
    RFC_NOT_SPLIT,
    UNKNOWN_SECTION,
    KernelCaps,
    SeoibDecision,
    SeoibState,
    decide,
    inputs_from,
)
from machines.kernels import caps, probe_host
from machines.options import parse_args
from machines.preflight import Target, judge_target, source_from
from machines.qmp import QemuProcess
from machines.registry import get_build
from machines.resolve import Resolver
from machines.savevm import read_saved_state

pytestmark = [pytest.mark.qemu, pytest.mark.kvm]

RFC_BUILD = "10.2+rfc-v2"
DEBIAN = os.environ.get("MACHINES_QEMU", "qemu-system-x86_64")
COMMON = ("-S", "-nodefaults", "-display", "none", "-m", "32", "-trace", "kvm_lapic_seoib*")
SET_STATE = re.compile(r"kvm_lapic_seoib_set_state state=(\d+)")
SPLIT = "-accel kvm,kernel-irqchip=split"

# Power-on configurations: machine types across 10.2.0's range and microvm, the IOAPIC
# version by -global (0x11, 0x20, repeated, other spellings), every irqchip mode, TCG, a
# guest CPU without x2APIC.
POWER_ON = [
    *(f"-M {m} {SPLIT}" for m in (
        "pc-q35-10.2", "pc-q35-10.1", "pc-q35-10.0", "pc-q35-9.0", "pc-q35-7.2", "pc-q35-5.0",
        "pc-i440fx-10.2", "pc-i440fx-8.1", "pc-i440fx-6.0", "pc-i440fx-5.0", "q35", "pc",
        "microvm")),
    "-M microvm -accel kvm",  # microvm's default irqchip is split
    "-M microvm -accel kvm,kernel-irqchip=on",
    f"-M microvm {SPLIT} -global ioapic.version=0x11",
    "-M pc-q35-10.2 -accel kvm",
    "-M pc-i440fx-5.0 -accel kvm",
    "-M pc-q35-10.2 -accel kvm -global ioapic.version=0x11",
    "-M pc-q35-10.2 -enable-kvm -machine kernel-irqchip=split",
    "-M pc-q35-10.2,kernel-irqchip=split -accel kvm",
    "-M pc-q35-10.2 -accel tcg",
    "-M pc-q35-10.2 -accel tcg -global ioapic.version=0x11",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x20",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=17",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=021",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11 -global ioapic.version=0x20",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x20 -global ioapic.version=0x11",
    f"-M pc-q35-10.2 {SPLIT} -global ioapic-common.version=0x11",
    f"-M pc-q35-10.2 {SPLIT} -global driver=ioapic,property=version,value=0x11",
    f"-M pc-q35-10.2 {SPLIT} -global sb16.version=0x11",  # not the IOAPIC's: ignored
    f"-M pc-i440fx-5.0 {SPLIT} -global ioapic.version=0x11",
    f"-M pc-i440fx-9.0 {SPLIT} -global ioapic.version=0x20 -global ioapic.version=0x11",
    f"-M pc-q35-10.2 {SPLIT} -cpu qemu64,-x2apic",
    f"-M pc-q35-10.2 {SPLIT} -cpu qemu64,x2apic=off",
    f"-M pc-q35-10.2 {SPLIT} -cpu host",
    f"-M pc-q35-10.2 {SPLIT} -smp 2",
    f"-M none {SPLIT}",  # no x86_cpus_init, so the RFC code never runs
    f"-M isapc {SPLIT}",
]
if os.environ.get("MACHINES_RFC_GRID") == "full":  # tox -e oracle: every type 10.2.0 registers
    # (the oracle is built without multiprocess: it has no x-remote)
    POWER_ON += [f"-M {m.name} {how}" for m in get_build("10.2").registered()
                 for how in (SPLIT, "-accel kvm", f"{SPLIT} -global ioapic.version=0x11")
                 if f"-M {m.name} {how}" not in POWER_ON and m.name != "x-remote"]


class Run(NamedTuple):
    """What one QEMU did: exit status (None: it ran), stderr, the stream it wrote."""

    status: int | None
    stderr: str
    stream: str | None

    @property
    def traced(self) -> list[int]:
        return [int(n) for n in SET_STATE.findall(self.stderr)]


async def _drain(process: QemuProcess) -> None:
    for _ in range(500):
        status = await process.execute("query-migrate")
        if status.get("status") in ("completed", "failed", "cancelled"):
            assert status["status"] == "completed", status
            return
        await asyncio.sleep(0.02)
    raise AssertionError("migration did not complete")


def _stderr(process: QemuProcess) -> str:
    assert process.tmpdir is not None
    return (Path(process.tmpdir) / "stderr").read_text(errors="replace")


async def _run(binary: str, args: Sequence[str], out: Path | None,
               incoming: Path | None = None) -> Run:
    """Start QEMU paused; optionally load a stream; save to ``out``."""
    argv = [*args, *COMMON] + (["-incoming", "defer"] if incoming else [])
    process = QemuProcess(binary, argv, timeout=15)
    try:
        await process.__aenter__()
    except EnvironmentUnavailable as err:
        assert process.proc is not None
        return Run(process.proc.returncode, str(err), None)
    try:
        if incoming is not None:
            try:
                await process.execute("migrate-incoming", {"uri": f"exec:cat {incoming}"})
                for _ in range(500):
                    status = await process.execute("query-migrate")
                    if status.get("status") in ("completed", "failed"):
                        break
                    await asyncio.sleep(0.02)
                if status.get("status") == "failed":
                    await asyncio.sleep(0.2)
            except EnvironmentUnavailable:
                pass  # QEMU went away under us: its exit status says how
            assert process.proc is not None
            if process.proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.proc.wait(), 0.3)
            if process.proc.returncode is not None:
                return Run(process.proc.returncode, _stderr(process), None)
        if out is None:
            return Run(None, _stderr(process), None)
        await process.execute("migrate", {"uri": f"exec:cat > {out}"})
        await _drain(process)
        return Run(None, _stderr(process), str(out))
    finally:
        await process.__aexit__(None, None, None)


def _predict(args: str, kernel: KernelCaps, stream: SeoibState | None = None,
             build: str = RFC_BUILD) -> SeoibDecision:
    config = configure(get_build(build), parse_args(args.split()))
    return decide(inputs_from(Resolver(config), stream), kernel)


@pytest.fixture(scope="module")
def host_kernel(real_kvm: Any) -> KernelCaps:
    return caps(probe_host(fresh=True))


@pytest.fixture(scope="module")
def power_on_runs(rfc_qemu: str, host_kernel: KernelCaps, tmp_path_factory: Any
                  ) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("rfc-streams")

    async def main() -> dict[str, Run]:
        runs = {}
        for i, args in enumerate(POWER_ON):
            runs[args] = await _run(rfc_qemu, args.split(), tmp / f"s{i}.mig")
        return runs

    return asyncio.run(main())


@pytest.mark.parametrize("args", POWER_ON)
def test_power_on_state_trace_and_section(args: str, power_on_runs: dict[str, Run],
                                          host_kernel: KernelCaps) -> None:
    run = power_on_runs[args]
    assert run.status is None, run.stderr  # every configuration here powers on
    predicted = _predict(args, host_kernel)
    assert not predicted.refused, predicted.error
    # every state the RFC code sets, in order, and its failure line and fallback warning
    assert run.traced == [int(m) for m in SET_STATE.findall(
        " ".join(s.message for s in predicted.trace if s.rule == "set-state"))], run.stderr
    assert ("kvm_lapic_seoib_set_state_failed" in run.stderr) == \
        any(s.rule == "set-state-failed" for s in predicted.trace)
    assert (RFC_FALLBACK in run.stderr) == (RFC_FALLBACK in predicted.warnings)
    expected = predicted.state if predicted.state is not None else SeoibState.QUIRKED
    if run.traced:
        assert SeoibState(run.traced[-1]) is expected
    else:
        assert expected is SeoibState.QUIRKED and predicted.flags == 0
    # the section machines inspect finds in what the oracle wrote
    assert run.stream is not None
    saved = read_saved_state(run.stream)
    assert saved.seoib == (predicted.state if predicted.migration_section else None), args


def test_the_grid_is_big_enough() -> None:
    assert len(POWER_ON) + len(MOVES) >= 40


# -- moves: oracle -> oracle, oracle -> Debian 10.0.2, 10.0.2 -> oracle -----------------

class Move(NamedTuple):
    source: str  # "rfc" or "debian"
    source_args: str
    dest: str  # "rfc" or "debian"
    dest_args: str
    outcome: str  # what QEMU does: loads | refuses | aborts (also checked against QEMU)


Q35 = "-M pc-q35-10.0"
MOVES = [
    Move("rfc", f"{Q35} {SPLIT}", "rfc", f"{Q35} {SPLIT}", "loads"),
    Move("rfc", f"{Q35} {SPLIT}", "rfc", f"{Q35} {SPLIT} -global ioapic.version=0x11", "loads"),
    Move("rfc", f"{Q35} {SPLIT} -global ioapic.version=0x11", "rfc", f"{Q35} {SPLIT} "
         "-global ioapic.version=0x11", "loads"),
    Move("rfc", f"{Q35} {SPLIT}", "rfc", f"{Q35} -accel kvm", "aborts"),
    Move("rfc", f"{Q35} {SPLIT}", "rfc", f"{Q35} -accel tcg", "aborts"),
    Move("rfc", f"{Q35} -accel kvm", "rfc", f"{Q35} -accel kvm", "loads"),
    Move("rfc", f"{Q35} {SPLIT}", "debian", f"{Q35} {SPLIT}", "refuses"),
    # NOT_ADVERTISED (IOAPIC 0x11) sends the section too: 10.0.2 refuses it as well
    Move("rfc", f"{Q35} {SPLIT} -global ioapic.version=0x11", "debian", f"{Q35} {SPLIT}",
         "refuses"),
    Move("rfc", f"{Q35} -accel kvm", "debian", f"{Q35} -accel kvm", "loads"),
    Move("debian", f"{Q35} {SPLIT}", "rfc", f"{Q35} {SPLIT}", "loads"),
    Move("debian", f"{Q35} -accel kvm", "rfc", f"{Q35} -accel kvm", "loads"),
]


def _binary(which: str, rfc: str) -> str:
    return rfc if which == "rfc" else DEBIAN


@pytest.fixture(scope="module")
def move_runs(rfc_qemu: str, qemu_binary: str, tmp_path_factory: Any
              ) -> dict[Move, tuple[Run, Run]]:
    tmp = tmp_path_factory.mktemp("rfc-moves")

    async def main() -> dict[Move, tuple[Run, Run]]:
        out: dict[Move, tuple[Run, Run]] = {}
        saved: dict[tuple[str, str], Run] = {}
        for i, move in enumerate(MOVES):
            key = (move.source, move.source_args)
            if key not in saved:  # one source QEMU per distinct source
                saved[key] = await _run(_binary(move.source, rfc_qemu),
                                        move.source_args.split(), tmp / f"src{i}.mig")
            source = saved[key]
            assert source.stream is not None, source.stderr
            loaded = await _run(_binary(move.dest, rfc_qemu), move.dest_args.split(),
                                tmp / f"dst{i}.mig", incoming=Path(source.stream))
            out[move] = (source, loaded)
        return out

    return asyncio.run(main())


def _outcome(run: Run) -> str:
    if run.status is None:
        return "loads"
    if run.status == -6:  # SIGABRT
        return "aborts"
    return "refuses"


def _preflight(move: Move, kernel: KernelCaps, state: SeoibState) -> tuple[str, list[str]]:
    """The pre-flight verdict for the SEOIB part of a move, and its messages."""
    source_build = RFC_BUILD if move.source == "rfc" else "10.0.2"
    config = configure(get_build(source_build), parse_args(move.source_args.split()))
    source = source_from(config, state, "the oracle's stream")
    dest_build = get_build(RFC_BUILD if move.dest == "rfc" else "10.0.2")
    reasons = judge_target(source, Target(dest_build, kernel),
                           parse_args(move.dest_args.split()))
    codes = {r.code for r in reasons}
    messages = [r.message for r in reasons]
    if "seoib-destination-abort" in codes:
        return "aborts", messages
    if "seoib-section-unsupported" in codes or "destination-config-invalid" in codes:
        return "refuses", messages
    return "loads", messages


@pytest.mark.parametrize("move", MOVES, ids=[f"{m.source}:{m.source_args}->{m.dest}:"
                                             f"{m.dest_args}" for m in MOVES])
def test_move_outcome_equals_the_preflight_verdict(move: Move, move_runs: Any,
                                                   host_kernel: KernelCaps) -> None:
    source, loaded = move_runs[move]
    assert source.stream is not None
    saved = read_saved_state(source.stream)
    state = saved.effective_seoib
    real = _outcome(loaded)
    assert real == move.outcome, loaded.stderr
    verdict, messages = _preflight(move, host_kernel, state)
    assert verdict == real, messages
    # the reason quotes QEMU's own line
    if real == "refuses":
        assert UNKNOWN_SECTION.split(".")[0] in loaded.stderr
        assert any(UNKNOWN_SECTION in m for m in messages)
    if real == "aborts":
        assert RFC_NOT_SPLIT in loaded.stderr
        assert any(RFC_NOT_SPLIT in m for m in messages)
    if real == "loads" and move.dest == "rfc":
        # what the loaded VM then is: the state -incoming predicts, traced and re-saved
        predicted = _predict(f"{move.dest_args} -incoming defer", host_kernel, saved.seoib)
        assert not predicted.refused
        assert loaded.traced == ([saved.seoib.value] if saved.seoib is not None else [])
        assert loaded.stream is not None
        again = read_saved_state(loaded.stream)
        assert again.seoib == (predicted.state if predicted.migration_section else None)
