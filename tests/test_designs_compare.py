"""``machines seoib-designs``: what each SEOIB design does to VMs, one VM and a fleet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvmglue.profile import shipped
from machines import designs_compare as dc
from machines.cli import main
from machines.i386.designs import Design
from machines.kernels import caps
from machines.registry import get_build

NEW = caps(shipped("linux-7.0"))
OLD = caps(shipped("linux-6.12"))
SPLIT = "-accel kvm,kernel-irqchip=split"


def outcomes(args: str, release: str = "10.2") -> dict[str, dc.Outcome]:
    comparer = dc.Comparer(dc.ALL_DESIGNS, NEW, OLD, (11, 0))
    key = dc.VmKey(release, tuple(args.split()))
    return {d.name: comparer.outcome(key, d) for d in dc.ALL_DESIGNS}


def test_a_split_irqchip_vm_under_each_design() -> None:
    o = outcomes(f"-M pc-q35-10.2 {SPLIT}")
    assert all(x.exposed_today for x in o.values())
    assert (o["none"].changes, o["none"].exposed_next, o["none"].fix) == \
        (False, True, "not-possible")
    rfc = o["rfc-v2"]
    assert (rfc.changes, rfc.state_next, rfc.fix) == (True, "RESPECTED", "restart")
    assert rfc.lost == ("old-qemu", "old-kernel")
    assert (o["gated"].changes, o["gated"].fix) == (False, "config-change")
    assert (o["opt-in"].changes, o["opt-in"].fix, o["opt-in"].lost) == \
        (False, "config-change", ())


def test_vms_that_are_not_exposed() -> None:
    o = outcomes("-M pc-q35-10.2 -accel kvm")  # KVM's IOAPIC: directed EOI never advertised
    assert not any(x.exposed_today or x.changes or x.lost for x in o.values())
    assert {x.fix for x in o.values()} == {"not-needed"}
    o = outcomes("-M pc-q35-10.2 -accel tcg")
    assert {x.state_next for x in o.values()} == {None}


def test_ioapic_0x11_gets_not_advertised_and_microvm_is_never_gated() -> None:
    o = outcomes(f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11")
    assert o["rfc-v2"].state_next == "NOT_ADVERTISED" and o["rfc-v2"].fix == "restart"
    assert o["rfc-v2"].lost == ("old-qemu", "old-kernel")
    o = outcomes("-M microvm -accel kvm")
    assert o["gated"].changes and o["gated"].state_next == "RESPECTED"


def test_an_alias_follows_the_gate() -> None:
    # 'q35' names the newest type, which under gating is the gate's: the VM changes.
    o = outcomes(f"-M q35 {SPLIT}")
    assert o["gated"].changes and o["gated"].fix == "restart"


def test_a_vm_that_will_not_power_on_is_an_error_not_a_crash() -> None:
    comparer = dc.Comparer((Design("opt-in"),), NEW, OLD, (11, 0))
    key = dc.VmKey("10.2", tuple(["-M", "pc-q35-10.2", "-accel", "kvm"]), "respected")
    out = comparer.outcome(key, Design("opt-in"))
    assert out.error is not None and "needs kernel-irqchip=split" in out.error
    totals = comparer.totals([key, key])
    assert totals[0].errors == 2 and totals[0].vms == 2


def test_host_classes_from_profiles(tmp_path: Path, capsys: Any) -> None:
    fleet = _fleet(tmp_path, 300)
    hosts = tmp_path / "hosts"
    out = tmp_path / "r.json"
    assert main(["seoib-designs", "--fleet", str(fleet), "--hosts", str(hosts), "--format",
                 "json", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    classes = doc["host_classes"]
    assert sum(c["hosts"] for c in classes.values()) == 20
    by = {d["design"]: d for d in doc["designs"]}
    assert set(by["rfc-v2"]["can_no_longer_move_to_hosts"]) == set(classes)
    # every generated host runs a real build (no SEOIB code): under rfc-v2 a VM whose type a
    # host knows and whose stream now carries the section can no longer go there; under none
    # and opt-in nothing is lost
    # (a VM counts once under "old-qemu" however many such classes it loses; which ones it
    # loses depends on the machine types each host's build registers)
    lost = by["rfc-v2"]["can_no_longer_move_to"]["old-qemu"]
    assert 0 < max(by["rfc-v2"]["can_no_longer_move_to_hosts"].values()) <= lost <= 300
    for design in ("none", "opt-in"):
        assert set(by[design]["can_no_longer_move_to_hosts"].values()) == {0}
    main(["seoib-designs", "--json-schema"])
    jsonschema.validate(doc, json.loads(capsys.readouterr().out))


def _fleet(tmp_path: Path, count: int) -> Path:
    sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
    try:
        import fleetgen
    finally:
        sys.path.pop(0)
    fleet, _ = fleetgen.write(str(tmp_path), count, 20, 7)
    return Path(fleet)


@pytest.mark.parametrize("fmt", ["text", "md", "json", "html"])
def test_fleet_report_formats(tmp_path: Path, fmt: str, capsys: Any) -> None:
    fleet = _fleet(tmp_path, 500)
    out = tmp_path / f"report.{fmt}"
    assert main(["seoib-designs", "--fleet", str(fleet), "--format", fmt, "-o", str(out)]) == 0
    text = out.read_text()
    if fmt == "json":
        doc = json.loads(text)
        assert main(["seoib-designs", "--json-schema"]) == 0
        schema = json.loads(capsys.readouterr().out)
        jsonschema.validate(doc, schema)
        by = {d["design"]: d for d in doc["designs"]}
        gate = ".".join(map(str, dc.default_gate([get_build(None)])))  # the newest build's next
        assert set(by) == {"none", "rfc-v2", f"gated:{gate}", "opt-in"} and doc["gate"] == gate
        assert all(d["vms"] == 500 for d in by.values())
        assert by["none"]["changes_state_at_next_power_on"] == 0
        assert by["none"]["to_get_the_fix"]["not-possible"] == by["none"]["exposed_today"] > 0
        assert by["rfc-v2"]["stay_quirked_exposed"] == 0
        assert by["rfc-v2"]["can_no_longer_move_to"]["old-qemu"] == \
            by["rfc-v2"]["changes_state_at_next_power_on"] > 0
        assert by["opt-in"]["changes_state_at_next_power_on"] == 0
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**doc, "designs": [{"design": "x"}]}, schema)
    elif fmt == "md":
        assert text.count("\n|") >= 11 and "rfc-v2" in text
    elif fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "http://" not in text
    else:
        assert "can no longer move to a QEMU without the design" in text


def test_a_100000_vm_fleet_in_seconds(tmp_path: Path) -> None:
    # In child processes: the fleet would otherwise swell this process, and a child forked
    # from it inherits that peak (ru_maxrss), which other tests measure.
    root = Path(__file__).parent.parent
    subprocess.run([sys.executable, str(root / "benchmarks" / "fleetgen.py"), "--vms", "100000",
                    "--hosts", "20", "--seed", "7", str(tmp_path)], check=True,
                   capture_output=True)
    out = tmp_path / "r.json"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "machines", "seoib-designs", "--fleet",
                    str(tmp_path / "vms.jsonl"), "--format", "json", "-o", str(out)],
                   check=True, capture_output=True, cwd=root)
    took = time.perf_counter() - start
    assert json.loads(out.read_text())["designs"][0]["vms"] == 100_000
    assert took < 15, f"{took:.1f} s"


@pytest.mark.parametrize(("argv", "needle"), [
    (["seoib-designs"], "give --fleet"),
    (["seoib-designs", "--fleet", "/nonexistent/vms.jsonl"], "fleet /nonexistent"),
    (["seoib-designs", "--gate", "soon", "-M", "q35"], "--gate soon"),
    (["seoib-designs", "--format", "csv", "-M", "q35"], "text, md, json or html"),
    (["seoib-designs", "--new-kernel", "linux-2.6", "-M", "q35"], "unknown kernel profile"),
])
def test_bad_input_is_one_line_exit_2(argv: list[str], needle: str, capsys: Any) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


@given(st.text(max_size=30))
def test_any_design_text_is_a_design_or_one_usage_error(text: str) -> None:
    from machines.errors import UsageError
    from machines.i386.designs import DESIGNS, parse_design

    try:
        design = parse_design(text)
    except UsageError as err:
        assert "\n" not in str(err).replace(text, "")
    else:
        assert design.name in DESIGNS
        assert parse_design(design.label) == design


def test_designs_over_an_imported_build() -> None:
    o = outcomes(f"-M pc-q35-10.0 {SPLIT}", release="10.0.2")
    assert o["rfc-v2"].state_next == "RESPECTED" and o["none"].state_next == "QUIRKED"
    assert get_build("10.0.2+gated").find("q35").name == "pc-q35-10.1"  # type: ignore[union-attr]
