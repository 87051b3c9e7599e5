"""The simulated kernel, proven equal to the real one case by case.

One scenario list (:data:`kvmglue.conformance.ALL_CASES`) runs on both; every
step's result must agree: return values, errnos, KVM_CHECK_EXTENSION masks
and LVR bit 24.  The simulated kernel is configured with the one thing a
real kernel may legitimately lack, the SEOIB flags, read from the real
kernel itself; every other behaviour must match.

Then each :class:`SimRules` switch is flipped alone, and the same cases must
tell the flipped kernel from the correct one (and from the real one when
/dev/kvm is here): a rule the suite cannot see is a rule it does not check.
"""

from __future__ import annotations

import attrs
import pytest

from kvmglue._cdefs import KVM_CAP_X2APIC_API, X2APIC_API_SEOIB, X2ApicApi
from kvmglue.conformance import (
    ALL_CASES,
    CASES,
    Case,
    CreateVcpu,
    ReadLvr,
    SetCpuid,
    SplitIrqchip,
    X2ApicApiFlags,
    run_case,
)
from kvmglue.kvm import Kvm, open_kvm
from kvmglue.probe import probe
from kvmglue.profile import CaseResult
from kvmglue.sim import SimKernel, SimRules

RULES = [field.name for field in attrs.fields(SimRules)]


def sim_kvm(*, seoib: bool = True, rules: SimRules = SimRules()) -> Kvm:  # noqa: B008
    kernel = SimKernel(seoib=seoib, rules=rules)
    return open_kvm(kernel.device, ops=kernel)


def run_all(kvm: Kvm, cases: tuple[Case, ...] = ALL_CASES) -> dict[str, CaseResult]:
    return {case.id: run_case(kvm, case) for case in cases}


def differing(left: dict[str, CaseResult], right: dict[str, CaseResult]) -> list[str]:
    return [case_id for case_id in left if left[case_id] != right[case_id]]


def host_has_seoib(kvm: Kvm) -> bool:
    return bool(kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB)


@pytest.fixture(scope="module")
def real_results(real_kvm: Kvm) -> dict[str, CaseResult]:
    return run_all(real_kvm)


@pytest.fixture(scope="module")
def matching_sim_results(real_kvm: Kvm) -> dict[str, CaseResult]:
    with sim_kvm(seoib=host_has_seoib(real_kvm)) as kvm:
        return run_all(kvm)


def test_case_ids_are_unique() -> None:
    ids = [case.id for case in ALL_CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.kvm
@pytest.mark.parametrize("case", ALL_CASES, ids=lambda case: case.id)
def test_sim_agrees_with_real_kernel(case: Case, real_results: dict[str, CaseResult],
                                     matching_sim_results: dict[str, CaseResult]) -> None:
    real = real_results[case.id]
    sim = matching_sim_results[case.id]
    table = "\n".join(f"  {step:<70} real {r:<16} sim {s}"
                      for step, r, s in zip(real.steps, real.outcome.results,
                                            sim.outcome.results, strict=True))
    assert real == sim, f"{case.id}: the simulated kernel disagrees\n{table}"


@pytest.mark.kvm
def test_sim_probe_agrees_with_real_probe(real_kvm: Kvm) -> None:
    real = probe(real_kvm)
    with sim_kvm(seoib=host_has_seoib(real_kvm)) as kvm:
        sim = probe(kvm)
    assert sim.x2apic_api == real.x2apic_api
    assert sim.supports == real.supports
    assert sim.kvm_api_version == real.kvm_api_version
    assert sim.conformance == real.conformance


def test_sim_without_seoib_answers_like_an_old_kernel() -> None:
    with sim_kvm(seoib=False) as kvm:
        assert kvm.check_extension(KVM_CAP_X2APIC_API) == 0x3
        results = run_all(kvm)
    assert results["enable-without-split"].outcome.errno == "EINVAL"
    assert results["split-enable"].outcome.results[1] == "EINVAL"
    assert results["split-disable"].outcome.results[1] == "EINVAL"
    # Without the new flags every VM is in the legacy quirk.
    assert results["split-disable"].outcome.lvr_directed_eoi is True
    assert results["kernel-irqchip-quirk"].outcome.lvr_directed_eoi is False
    assert results["check-masks"].outcome.results[:4] == ("0x3", "0x1", "0x1", "0x3")


@pytest.mark.parametrize("rule", RULES)
def test_flipped_rule_is_caught_against_correct_sim(rule: str) -> None:
    with sim_kvm() as good, sim_kvm(rules=SimRules(**{rule: False})) as flipped:
        assert differing(run_all(good), run_all(flipped)), \
            f"no case tells SimRules({rule}=False) from the correct kernel"


@pytest.mark.kvm
@pytest.mark.parametrize("rule", RULES)
def test_flipped_rule_is_caught_against_real_kernel(
        rule: str, real_kvm: Kvm, real_results: dict[str, CaseResult]) -> None:
    rules = SimRules(**{rule: False})
    with sim_kvm(seoib=host_has_seoib(real_kvm), rules=rules) as flipped:
        if not host_has_seoib(real_kvm) and not differing(real_results, run_all(flipped)):
            pytest.skip(f"{rule} only shows on a kernel with the SEOIB flags")
        assert differing(real_results, run_all(flipped)), \
            f"the real kernel cannot be told from SimRules({rule}=False)"


def test_probe_cases_are_part_of_the_differential_list() -> None:
    assert set(CASES) <= set(ALL_CASES)


# -- what a flipped rule does: only what its SimRules docstring says --------------------

_CHOICES = {"ENABLE": X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST,
            "DISABLE": X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST}


def _choices_case(*names: str) -> Case:
    """A split-irqchip VM that makes the SEOIB choices ``names``, then an x2APIC vCPU."""
    return Case("choices-" + "-".join(names), "SEOIB choices " + ", ".join(names),
                (SplitIrqchip(), *(X2ApicApiFlags(_CHOICES[n]) for n in names), CreateVcpu(),
                 SetCpuid(), ReadLvr()))


FIRST_CHOICE_STAYS = [(first, second) for first in _CHOICES for second in _CHOICES]


def _first_choice_stays(reference: Kvm, first: str, second: str) -> None:
    """SimRules(last_choice_wins=False): "the first choice stays, later ones are accepted
    and ignored": a VM that chose twice reads the LVR that ``reference`` gives for the first
    choice alone, and a single choice is unaffected."""
    with sim_kvm(seoib=True, rules=SimRules(last_choice_wins=False)) as flipped:
        twice = run_case(flipped, _choices_case(first, second))
        once = run_case(flipped, _choices_case(first))
    expected = run_case(reference, _choices_case(first))
    assert twice.outcome.results[2] == "ok"  # the second choice is accepted...
    assert twice.outcome.lvr_reads == expected.outcome.lvr_reads  # ...and ignored
    assert once.outcome == expected.outcome


@pytest.mark.parametrize(("first", "second"), FIRST_CHOICE_STAYS)
def test_flipped_last_choice_wins_keeps_the_first_choice(first: str, second: str) -> None:
    with sim_kvm(seoib=True) as correct:
        _first_choice_stays(correct, first, second)


@pytest.mark.kvm
@pytest.mark.parametrize(("first", "second"), FIRST_CHOICE_STAYS)
def test_flipped_last_choice_wins_keeps_the_real_first_choice(real_kvm: Kvm, first: str,
                                                               second: str) -> None:
    if not host_has_seoib(real_kvm):
        pytest.skip("the real kernel has no SEOIB flags to choose with")
    _first_choice_stays(real_kvm, first, second)
