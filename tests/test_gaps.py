"""``machines gaps``: compat gaps between real builds, proven against the zoo binaries.

The decision tests read the shipped imports (no QEMU); the ``--confirm``
tests start the real binaries (the host's 10.0.2 and the zoo's 7.2 and
11.1.3) and skip without them, or fail under MACHINES_REQUIRE_ZOO=1.  The
full confirmation of both pairs runs with ``tox -e gaps``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import zoo_command

from machines.cli import main
from machines.gapcheck import confirm
from machines.gaps import GUEST, HOST, effective, find_gaps, with_confirmations
from machines.registry import IMPORTED, get_build


def _gap(report: Any, key: str) -> Any:
    return next((g for g in report.gaps if f"{g.typename}.{g.prop}" == key), None)


def test_gaps_7_2_to_10_0_2() -> None:
    report = find_gaps(get_build("7.2"), get_build("10.0.2"))
    assert {f"{g.typename}.{g.prop}" for g in report.gaps} == {"pvpanic.events",
                                                              "pvpanic-pci.events"}
    pci = _gap(report, "pvpanic-pci.events")
    assert (pci.old, pci.new, pci.verdict) == (3, 7, GUEST)
    assert pci.fix.c == '{ "pvpanic-pci", "events", "3" },' and pci.fix.array == "hw_compat_7_2"
    assert "pc-q35-7.2" in pci.machines and "pc-i440fx-5.2" in pci.machines
    # ISA pvpanic: types up to 5.1 keep hw_compat_5_1's events=1 in both builds
    isa = _gap(report, "pvpanic.events")
    assert "pc-q35-5.2" in isa.machines and not any(m.endswith("-5.1") for m in isa.machines)
    restored = {f"{r.typename}.{r.prop}": r for r in report.restored}
    assert "pc_compat_9_1[3] intel-iommu.aw-bits=39" in restored["intel-iommu.aw-bits"].by
    assert "sd-card.spec_version" in restored
    # false gaps are kept apart with a reason, not reported
    skipped = {f"{s.typename}.{s.prop}": s.reason for s in report.skipped}
    assert "sentinel" in skipped["PIIX3.rombar"]
    assert "instance_init" in skipped["nvme-subsys.nqn"]
    # a class property only one listing gives a default for (7.2 lists none)
    assert "no default" in skipped["kvm-apic.legacy-instance-id"]


def test_description_only_differences_are_not_gaps() -> None:
    old, new = get_build("7.2"), get_build("10.0.2")
    described = set()
    for typename in old.qom.parents:
        if typename not in new.qom:
            continue
        for name, info in new.qom.own_properties(typename).items():
            before = old.qom.own_properties(typename).get(name)
            if (before is not None and before.description != info.description
                    and before.default == info.default and before.has_default):
                described.add((typename, name))
    assert len(described) > 100  # 10.0 describes many properties 7.2 left bare ("on/off")
    report = find_gaps(old, new)
    assert not described & {(g.typename, g.prop) for g in report.gaps}
    assert not described & {(s.typename, s.prop) for s in report.skipped}


def test_gaps_10_0_2_to_11_1_3() -> None:
    report = find_gaps(get_build("10.0.2"), get_build("11.1.3"))
    assert [(g.typename, g.prop, g.old, g.new, g.verdict) for g in report.gaps] == [
        ("vfio-pci", "x-igd-opregion", False, True, HOST)]
    assert report.gaps[0].fix.array == "hw_compat_10_0"
    tseg = next(r for r in report.restored if (r.typename, r.prop) ==
                ("mch", "extended-tseg-mbytes"))
    assert (tseg.old_default, tseg.new_default) == (16, 64)
    assert tseg.by == ("pc_compat_10_1[0] mch.extended-tseg-mbytes=16",)
    assert ("hw_compat_10_0", 2) in {(u.table, u.entry) for u in report.useless}


@pytest.mark.parametrize(("old", "new"), [("7.2", "10.0.2"), ("10.0.2", "11.1.3")])
def test_restored_default_is_never_a_gap(old: str, new: str) -> None:
    """A restored change reads the same on every shared type; none of them is a gap."""
    o, n = get_build(old), get_build(new)
    report = find_gaps(o, n)
    gaps = {(g.typename, g.prop) for g in report.gaps}
    for r in report.restored:
        assert (r.typename, r.prop) not in gaps
        for name in report.machines:
            got_old = effective(o, o.machines[name], r.typename, r.prop)[0]
            got_new = effective(n, n.machines[name], r.typename, r.prop)[0]
            if r.old_default is not None:
                assert got_old == got_new, (r, name)


def _without(tmp_path: Path, table: str, index: int) -> str:
    doc = json.loads(Path(IMPORTED["11.1.3"]).read_text())
    del doc["tables"][table][index]
    path = tmp_path / "qemu-11.1.3-synthetic.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_one_entry_removed_gives_exactly_one_new_gap(tmp_path: Path) -> None:
    base = find_gaps(get_build("10.0.2"), get_build("11.1.3"))
    synthetic = get_build(_without(tmp_path, "pc_compat_10_1", 0))
    report = find_gaps(get_build("10.0.2"), synthetic)
    before = {(g.typename, g.prop) for g in base.gaps}
    added = [g for g in report.gaps if (g.typename, g.prop) not in before]
    assert [(g.typename, g.prop, g.old, g.new, g.verdict) for g in added] == [
        ("mch", "extended-tseg-mbytes", 16, 64, GUEST)]
    assert added[0].fix.c == '{ "mch", "extended-tseg-mbytes", "16" },'
    assert added[0].fix.array == "pc_compat_10_0"


def test_cli_formats_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gaps", "--old", "7.2", "--new", "10.0.2", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "machines/gaps/v1"
    assert {g["class"] for g in doc["gaps"]} == {GUEST}
    assert main(["gaps", "--old", "7.2", "--new", "10.0.2", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert '    { "pvpanic-pci", "events", "3" },' in md and "`hw_compat_7_2`" in md
    out = tmp_path / "gaps.html"
    assert main(["gaps", "--old", "7.2", "--new", "10.0.2", "--format", "html",
                 "-o", str(out)]) == 0
    page = out.read_text()
    assert "pvpanic-pci" in page and "http://" not in page and "https://" not in page
    assert main(["gaps", "--old", "10.0.2", "--new", "11.1.3"]) == 0
    assert "x-igd-opregion" in capsys.readouterr().out
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"schema": "machines/qemu-build/v1", "qemu": 3}')
    for argv in (["gaps", "--old", "7.2"], ["gaps", "--old", "7.2", "--new", "nope"],
                 ["gaps", "--old", "7.2", "--new", "7.2.22"],
                 ["gaps", "--old", "7.2", "--new", "10.0.2", "--old-qemu", "x"],
                 ["gaps", "--old", "7.2", "--new", "10.0.2", "--format", "csv"],
                 ["gaps", "--old", "10.0.2", "--new", "7.2"],
                 ["gaps", "--old", "7.2", "--new", "10.0.2", "--confirm", "--timeout", "0"],
                 ["gaps", "--old", "7.2", "--new", str(garbage)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["gaps", "--old", "7.2", "--new", "10.0.2", "--confirm",
                 "--old-qemu", "/nonexistent/qemu"]) == 3


# -- against the real binaries ------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Host-side QEMU sockets go here, so leftovers can be counted."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


@pytest.mark.qemu
def test_confirm_7_2_to_10_0_2(private_tmp: Path) -> None:
    old, new = get_build("7.2"), get_build("10.0.2")
    commands = (zoo_command("7.2"), zoo_command("10.0.2"))
    report = find_gaps(old, new)
    found = confirm(report, old, new, commands)
    assert set(found) == {("pvpanic", "events"), ("pvpanic-pci", "events")}
    for ok, evidence in found.values():
        assert ok is True, evidence
        assert "QEMU 7.2 reads 3, QEMU 10.0.2 reads 7" in evidence
    proven = with_confirmations(report, found, [("7.2", commands[0].name)])
    assert all(g.confirmed for g in proven.gaps if g.verdict == GUEST)
    assert list(private_tmp.iterdir()) == []  # every socket directory removed


@pytest.mark.qemu
def test_confirm_5_2_to_10_0_13_through_virtio_proxies() -> None:
    """Gaps on virtio backends are read through the PCI proxy QEMU aliases them on."""
    old, new = get_build("5.2"), get_build("10.0.13")
    report = find_gaps(old, new)
    found = confirm(report, old, new, (zoo_command("5.2"), zoo_command("10.0.13")))
    assert {("virtio-gpu-base", "xres"), ("virtio-device", "use-disabled-flag"),
            ("pvpanic", "events")} <= set(found)
    for ok, evidence in found.values():
        assert ok is True, evidence
    assert "-device virtio-gpu-pci" in found[("virtio-gpu-base", "xres")][1]


@pytest.mark.qemu
def test_confirm_disproves_the_synthetic_gap(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The real 11.1.3 binary still has the entry the synthetic import lost: both
    builds read 16 on pc-q35-10.0, so --confirm says the gap is not real."""
    old_cmd, new_cmd = zoo_command("10.0.2"), zoo_command("11.1.3")
    path = _without(tmp_path, "pc_compat_10_1", 0)
    assert main(["gaps", "--old", "10.0.2", "--new", path, "--confirm",
                 "--old-qemu", old_cmd.name, "--new-qemu", new_cmd.name,
                 "--only", "mch.extended-tseg-mbytes", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    mch = next(g for g in doc["gaps"] if g["type"] == "mch")
    assert mch["confirmed"] is False, mch
    assert "pc-q35-10.0" in mch["evidence"] and "reads 16" in mch["evidence"]


@pytest.mark.qemu
@pytest.mark.skipif(os.environ.get("MACHINES_GAPS_FULL") != "1",
                    reason="the full --confirm runs of both pairs: tox -e gaps")
@pytest.mark.parametrize(("old", "new"), [("7.2", "10.0.2"), ("10.0.2", "11.1.3")])
def test_full_confirm_run(old: str, new: str, capsys: pytest.CaptureFixture[str]) -> None:
    commands = (zoo_command(old), zoo_command(new))
    assert main(["gaps", "--old", old, "--new", new, "--confirm", "--old-qemu",
                 commands[0].name, "--new-qemu", commands[1].name, "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for gap in doc["gaps"]:
        if gap["class"] == GUEST:
            assert gap["confirmed"] is True, gap
