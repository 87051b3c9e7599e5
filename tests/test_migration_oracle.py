"""Pre-flight verdicts against real migrations between real QEMU builds.

A bounded subset of :mod:`machines.migoracle`'s grid (the newest q35 type both
builds know under KVM for every ordered pair of 5.2, 7.2, 10.0.2, 10.0.13,
11.1.3 and the RFC's 10.2.0; the split irqchip for every pair with the RFC
build; a type the destination lacks from the newest builds; devices and
KVM -> TCG on a few pairs; the RFC build to itself, split to on and to TCG,
where it aborts): every move really migrates (source -S, ``migrate
"exec:cat > FILE"``, destination ``-incoming defer`` + ``migrate-incoming``),
then ``machines preflight`` judges it.  Zero false ok; each false block must
be one the report explains.  56 moves, about 85 short-lived QEMUs, two at a time (about 15 s).
``tox -e migration`` runs the whole grid (``MACHINES_MIGRATION_GRID=full``).

``machines inspect`` reads one stream of every build (their layouts differ:
5.2 and 7.2 have no ``x86-seoib-state``, fewer sections) and names its
machine type and SEOIB section.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from conftest import ZOO_BUILDS, zoo_command

from machines import migreport
from machines.migoracle import BUILDS, DEVICES, KVM, RFC_BUILD, TCG, Case, grid, run_grid
from machines.savevm import read_saved_state

pytestmark = [pytest.mark.qemu, pytest.mark.kvm]

FULL = os.environ.get("MACHINES_MIGRATION_GRID") == "full"
EXTRA = [
    Case("7.2", "10.0.2", "devices tcg", f"-M pc-i440fx-7.2 {TCG} {DEVICES}",
         f"-M pc-i440fx-7.2 {TCG} {DEVICES}"),
    Case("10.0.2", "11.1.3", "kvm->tcg", f"-M pc-q35-10.0 {KVM}", f"-M pc-q35-10.0 {TCG}"),
    Case("11.1.3", "5.2", "devices kvm", f"-M pc-q35-5.2 {KVM} {DEVICES}",
         f"-M pc-q35-5.2 {KVM} {DEVICES}"),
]


@pytest.fixture(scope="module")
def judged(rfc_qemu: str, tmp_path_factory: Any) -> list[migreport.Judged]:
    for build in ZOO_BUILDS:
        zoo_command(build)  # skip (or fail under MACHINES_REQUIRE_ZOO=1) without the zoo
    cases = grid(BUILDS, full=FULL) + ([] if FULL else EXTRA)
    outcomes = run_grid(cases, str(tmp_path_factory.mktemp("migoracle")))
    return migreport.judge(outcomes)


def test_enough_real_moves_every_pair_and_kvm(judged: list[migreport.Judged]) -> None:
    assert len(judged) >= 30
    pairs = {(j.outcome.case.source, j.outcome.case.dest) for j in judged}
    assert pairs == {(s, d) for s in BUILDS for d in BUILDS if s != d} | {(RFC_BUILD, RFC_BUILD)}
    assert any("kvm" in j.outcome.case.source_args and j.real == "loaded" for j in judged)
    assert not [j.outcome.source_run.error for j in judged if j.real == "source-failed"]


def test_zero_false_ok(judged: list[migreport.Judged]) -> None:
    false_ok = [(j.outcome.case, j.outcome.dest_run and j.outcome.dest_run.error, j.codes)
                for j in judged if j.agreement == "false-ok"]
    assert not false_ok


def test_every_false_block_is_explained(judged: list[migreport.Judged]) -> None:
    unexplained = [(j.outcome.case, j.codes) for j in judged if j.agreement == "false-block"
                   and migreport.explain(j).startswith("UNEXPLAINED")]
    assert not unexplained


def test_the_reason_quotes_qemus_line(judged: list[migreport.Judged]) -> None:
    """Every refusal QEMU prints is quoted, word for word, by a blocking reason."""
    unquoted = [(j.outcome.case, run.error, j.messages) for j in judged
                if j.real == "failed" and (run := j.outcome.dest_run) is not None
                and not any(f'"{run.error}"' in m for m in j.messages)]
    assert not unquoted


def _sends_configuration(build: str, machine: str) -> bool:
    from machines.registry import get_build

    found = get_build(build).find(machine)
    assert found is not None
    return all((p.driver, p.prop.property, p.prop.value) != ("migration", "send-configuration",
                                                            "off")
               for p in found.compat_props())


def test_inspect_reads_every_build(judged: list[migreport.Judged]) -> None:
    seen: dict[str, bool] = {}
    for j in judged:
        case = j.outcome.case
        if j.outcome.stream is None or j.real == "source-failed":
            continue
        saved = read_saved_state(j.outcome.stream)
        machine = case.source_args.split()[1]
        if machine == "q35":
            assert saved.machine is not None and saved.machine.startswith("pc-q35-")
        elif _sends_configuration(case.source, machine):
            assert saved.machine == machine, (case, saved.machine)
            assert saved.sections[0].kind == "configuration"
        else:  # types up to 2.3 send neither the configuration nor section footers
            assert saved.machine is None and saved.sections[0].kind != "configuration"
        split = "kernel-irqchip=split" in case.source_args
        if case.source == RFC_BUILD and split:
            assert saved.seoib is not None  # the RFC's split VM always sends its state
        elif case.source != RFC_BUILD:
            assert saved.seoib is None
        seen[case.source] = True
    assert set(seen) == set(BUILDS)


def test_inspect_cli_names_type_and_seoib_section_of_every_build(
        judged: list[migreport.Judged], capsys: Any) -> None:
    import json

    from machines.cli import main

    done = set()
    for j in judged:
        case = j.outcome.case
        if case.config != "newest-q35 split" or case.source in done or j.outcome.stream is None:
            continue
        assert main(["inspect", "--json", j.outcome.stream]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["machine"] == case.source_args.split()[1]
        assert doc["seoib_section"] == (case.source == RFC_BUILD)
        done.add(case.source)
    assert done == set(BUILDS)
