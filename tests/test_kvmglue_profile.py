"""Kernel profiles: JSON form, defensive loading, and the shipped files."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from kvmglue import profile as profiles
from kvmglue.kernels import KERNELS, generate
from kvmglue.profile import SCHEMA, KernelProfile, load, shipped, shipped_names
from machines.errors import DataError, UsageError


@pytest.fixture
def doc() -> dict[str, Any]:
    return generate("linux-7.0").to_json()


def where_error(doc: Any) -> str:
    with pytest.raises(DataError) as refused:
        KernelProfile.from_json(doc, "profile.json")
    return str(refused.value)


def test_shape(doc: dict[str, Any]) -> None:
    assert doc["schema"] == SCHEMA == "machines/kernel-profile/v1"
    assert list(doc) == ["schema", "name", "origin", "kernel_release", "kvm_api_version",
                         "x2apic_api", "supports", "conformance"]
    assert doc["x2apic_api"] == {"system": 15, "vm": 11, "vm_split_irqchip": 15}
    assert doc["supports"] == {"x2apic_api": True, "split_irqchip": True,
                               "enable_suppress_eoi_broadcast": True,
                               "disable_suppress_eoi_broadcast": True}
    case = doc["conformance"][1]
    assert case["case"] == "split-enable"
    assert list(case) == ["case", "description", "steps", "outcome"]
    assert case["outcome"] == {"errno": None, "lvr_directed_eoi": True, "lvr_reads": [True],
                               "results": ["ok", "ok", "ok", "ok", "directed-eoi"]}
    assert len(case["steps"]) == len(case["outcome"]["results"])


def test_round_trip(doc: dict[str, Any]) -> None:
    profile = KernelProfile.from_json(doc)
    assert profile.to_json() == doc
    assert KernelProfile.from_json(json.loads(json.dumps(doc))) == profile


def test_save_and_load(tmp_path: Path) -> None:
    profile = generate("linux-6.12")
    path = tmp_path / "k.json"
    profile.save(path)
    assert load(path) == profile
    assert load(str(path)) == profile


def test_save_keeps_the_previous_file_when_it_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "k.json"
    generate("linux-6.12").save(path)
    before = path.read_bytes()

    def interrupted(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate("linux-7.0").save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]


def test_newer_schema_is_refused(doc: dict[str, Any]) -> None:
    doc["schema"] = "machines/kernel-profile/v2"
    message = where_error(doc)
    assert "newer than this tool understands" in message
    assert message.startswith("profile.json: ")


def test_other_kind_is_refused(doc: dict[str, Any]) -> None:
    doc["schema"] = "machines/compat-tables/v1"
    assert "expected machines/kernel-profile/v1" in where_error(doc)


def test_unknown_fields_are_ignored(doc: dict[str, Any]) -> None:
    extended = copy.deepcopy(doc)
    extended["future"] = {"anything": [1, 2]}
    extended["supports"]["something_new"] = True
    extended["conformance"][0]["weight"] = 3
    extended["conformance"][0]["outcome"]["timing_ms"] = 1.5
    assert KernelProfile.from_json(extended) == KernelProfile.from_json(doc)


@pytest.mark.parametrize(("path", "value", "named"), [
    (("x2apic_api", "system"), "15", "x2apic_api.system must be an integer, not a string"),
    (("supports", "split_irqchip"), 1, "supports.split_irqchip must be a boolean"),
    (("kvm_api_version",), True, "kvm_api_version must be an integer, not a boolean"),
    (("conformance",), {}, "conformance must be a list"),
    (("conformance", 2, "outcome", "errno"), 22, "conformance[2].outcome.errno must be a string"),
    (("conformance", 0, "outcome", "lvr_directed_eoi"), 1,
     "conformance[0].outcome.lvr_directed_eoi must be a boolean"),
    (("conformance", 0, "outcome", "lvr_reads", 1), "yes",
     "conformance[0].outcome.lvr_reads[1] must be a boolean"),
    (("conformance", 3, "steps", 0), None, "conformance[3].steps[0] must be a string, not null"),
    (("conformance", 4), [], "conformance[4] must be an object"),
    (("conformance", 1, "case"), 7, "conformance[1].case must be a string"),
])
def test_wrong_types_name_the_field(doc: dict[str, Any], path: tuple[Any, ...], value: Any,
                                    named: str) -> None:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert named in where_error(doc)


@pytest.mark.parametrize("field", ["name", "origin", "kernel_release", "x2apic_api",
                                   "supports"])
def test_missing_fields_are_named(doc: dict[str, Any], field: str) -> None:
    del doc[field]
    assert f"missing field {field}" in where_error(doc)


def test_missing_case_outcome_is_named(doc: dict[str, Any]) -> None:
    del doc["conformance"][5]["outcome"]
    assert "missing field conformance[5].outcome" in where_error(doc)


def test_unknown_origin_and_repeated_case_are_refused(doc: dict[str, Any]) -> None:
    bad_origin = copy.deepcopy(doc)
    bad_origin["origin"] = "guess"
    assert "origin must be one of probe, shipped, simulated" in where_error(bad_origin)
    doc["conformance"].append(doc["conformance"][0])
    assert "repeats 'split-quirk'" in where_error(doc)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match="not JSON"):
        load(bad)
    with pytest.raises(DataError, match="no such file"):
        load(tmp_path / "absent.json")


def test_shipped_names() -> None:
    assert shipped_names() == ("linux-6.12", "linux-6.18.y-seoib", "linux-7.0")
    assert set(shipped_names()) == set(KERNELS)


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_shipped_file_equals_a_fresh_generation(name: str) -> None:
    on_disk = json.loads((Path(profiles.SHIPPED_DIR) / f"{name}.json").read_text(
        encoding="utf-8"))
    assert on_disk == generate(name).to_json(), \
        f"{name}.json is stale: run python -m kvmglue.kernels"
    assert shipped(name).origin == "shipped"


@pytest.mark.parametrize(("name", "flags"), [("linux-6.12", False),
                                             ("linux-6.18.y-seoib", True),
                                             ("linux-7.0", True)])
def test_shipped_profiles_say_what_the_policy_needs(name: str, flags: bool) -> None:
    profile = shipped(name)
    assert profile.has_enable_flag is flags
    assert profile.has_disable_flag is flags
    assert profile.directed_eoi("split-quirk") is True
    assert profile.directed_eoi("kernel-irqchip-quirk") is False
    assert profile.directed_eoi("split-disable") is (not flags)
    assert profile.directed_eoi("no-such-case") is None


def test_unknown_shipped_name_suggests() -> None:
    with pytest.raises(UsageError, match=r"did you mean 'linux-7\.0'"):
        shipped("linux-7")
