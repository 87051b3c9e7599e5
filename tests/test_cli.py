"""The machines command: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from machines.cli import main


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_is_machine_help(capsys: Any) -> None:
    code, out, err = run(capsys, "list", "--release", "10.1")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == "Supported machines are:"
    assert "pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.1)" \
        in lines
    assert "pc-q35-4.2           Standard PC (Q35 + ICH9, 2009) (deprecated)" in lines
    assert not any(line.startswith("pc-q35-4.1 ") for line in lines)


def test_list_json(capsys: Any) -> None:
    _code, out, _ = run(capsys, "list", "--json")
    doc = json.loads(out)
    assert doc["schema"] == "machines/list/v1"
    assert doc["qemu"]["name"] == "11.1"
    q35 = next(m for m in doc["machines"] if m["name"] == "pc-q35-11.1")
    assert q35["alias"] == "q35" and q35["family"] == "pc_q35" and not q35["deprecated"]
    assert "pc-q35-5.1" in doc["not_registered"]


def test_show_json_shape(capsys: Any) -> None:
    code, out, _ = run(capsys, "show", "pc-q35-9.2", "--json", "--release", "10.0")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "machines/machine/v1" and doc["name"] == "pc-q35-9.2"
    first = doc["compat_props"][0]
    assert first == {"driver": "virtio-iommu-pci", "property": "aw-bits", "value": "39",
                     "table": "pc_q35_compat_defaults", "entry": 0}
    assert doc["compat_props"][1]["table"] == "hw_compat_9_2"
    assert doc["derives_from"][0] == "pc-q35-10.0"


def test_show_text_groups_by_table(capsys: Any) -> None:
    code, out, _ = run(capsys, "show", "pc-q35-4.0", "--release", "10.0")
    assert code == 0
    assert "kernel-irqchip:  split by default under KVM" in out
    assert "  hw_compat_4_0:\n" in out


def test_resolve_json_shape_and_types(capsys: Any) -> None:
    code, out, _ = run(capsys, "resolve", "--release", "10.0", "-M", "pc-q35-2.7", "-accel",
                       "kvm", "--device", "ioapic", "--device", "isa-pcspk", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "machines/resolve/v1"
    assert doc["machine"] == "pc-q35-2.7"
    assert doc["devices"]["ioapic"]["version"] == {
        "value": 17, "source": "compat", "detail": "hw_compat_2_7[2] ioapic.version=0x11",
        "table": "hw_compat_2_7", "entry": 2, "driver": "ioapic", "text": "0x11"}
    assert doc["devices"]["isa-pcspk"]["migrate"]["value"] is False
    assert doc["accel"]["kernel_irqchip"]["value"] == "on"
    assert doc["ioapic"]["type"] == "kvm-ioapic"


def test_resolve_cmdline(capsys: Any) -> None:
    line = "LC_ALL=C /usr/bin/qemu-system-x86_64 -machine pc-q35-10.0,usb=off " \
           "-accel kvm,kernel-irqchip=split -global ioapic.version=0x11"
    code, out, _ = run(capsys, "resolve", "--cmdline", line, "--json", "--release", "10.0")
    doc = json.loads(out)
    assert code == 0 and doc["ioapic"]["version"] == 0x11 and doc["ioapic"]["type"] == "ioapic"
    assert doc["accel"]["kernel_irqchip"]["source"] == "accel"


def test_resolve_after_double_dash(capsys: Any) -> None:
    code, out, _ = run(capsys, "resolve", "--json", "--", "-M", "pc", "--device", "e1000")
    # After --, "--device" is QEMU's (QEMU reads --foo as -foo), not ours.
    assert code == 0 and json.loads(out)["devices"] == {}


@pytest.mark.parametrize(("argv", "needle"), [
    (["resolve", "-M", "pc-q35-99.0"], 'unsupported machine type: "pc-q35-99.0" (unknown '
                                       "machine type 'pc-q35-99.0'"),
    (["resolve", "-M", "q35,foo"], "-M q35,foo: Expected '=' after parameter 'foo'"),
    (["resolve", "-global", "ioapic.version=0x12"], "IOAPIC only supports"),
    (["resolve", "-M", "q35", "-device", "nosuch"], "'nosuch' is not a valid device model"),
])
def test_what_qemu_refuses_is_exit_1_in_its_words(capsys: Any, argv: list[str],
                                                    needle: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("machines: ") and needle in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["show", "nope"], "unknown machine type 'nope'"),
    (["resolve", "--cmdline", ""], "the command line is empty"),
    (["resolve", "--cmdline", "  \n "], "the command line is empty"),
    (["resolve", "--cmdline", "LC_ALL=C"], "only environment assignments"),
    (["resolve", "-M", "q35", "--device", "nosuch"], "unknown QOM type 'nosuch'"),
    (["list", "--release", "7.0"], "unknown QEMU build '7.0'"),
    (["list", "--bogus"], "unrecognized arguments: --bogus"),
    (["compare", "q35"], "compare needs at least two"),
    (["resolve", "--cmdline", "qemu-system-x86_64 -M q35", "-M", "pc"], "not both"),
])
def test_bad_input_is_one_line_and_exit_2(capsys: Any, argv: list[str], needle: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("machines: ") and needle in err


def test_compare_formats(capsys: Any) -> None:
    code, out, _ = run(capsys, "compare", "pc-q35-9.0", "pc-q35-9.2", "--release", "10.0")
    assert code == 0 and out.splitlines()[2].split() == ["Driver", "Property", "pc-q35-9.0",
                                                         "pc-q35-9.2"]
    code, out, _ = run(capsys, "compare", "pc-q35-9.0", "pc-q35-9.2", "--csv", "--release",
                       "10.0")
    import csv
    import io

    rows = {(r["Driver"], r["Property"]): r for r in csv.DictReader(io.StringIO(out))}
    row = rows[("ICH9-LPC", "x-smi-swsmi-timer")]
    assert (row["pc-q35-9.0"], row["pc-q35-9.2"]) == ("off", "on")
    assert row["pc-q35-9.0 (why)"] == "compat pc_compat_9_1[0]"
    assert row["pc-q35-9.2 (why)"] == "default"
    code, out, _ = run(capsys, "compare", "pc-q35-9.0", "pc-q35-9.2", "--json", "--release",
                       "10.0")
    doc = json.loads(out)
    row = next(r for r in doc["rows"] if r["property"] == "x-smi-swsmi-timer")
    assert row["values"] == {"pc-q35-9.0": False, "pc-q35-9.2": True}
    assert row["sources"]["pc-q35-9.2"] == "default"


def test_module_entry_point_and_no_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "machines", "resolve", "-M", "q35,,"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1  # QEMU refuses it too
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_resolve_seoib_json_shape(capsys: Any) -> None:
    # A real build: no SEOIB state change (QUIRKED, no flag, no section).
    code, out, _ = run(capsys, "resolve", "-M", "pc-q35-10.2", "-accel",
                       "kvm,kernel-irqchip=split", "--release", "10.2", "--kernel", "linux-7.0",
                       "--json")
    doc = json.loads(out)
    seoib = doc["seoib"]
    assert code == 0 and doc["error"] is None
    assert seoib["state"] == "QUIRKED" and seoib["x2apic_api_flags"] == 0
    assert seoib["migration_section"] is False and seoib["policy"] is None
    assert doc["qemu"]["seoib_aware"] is False and doc["qemu"]["seoib_design"] == "none"
    # The same with the RFC's posted code laid over it: RESPECTED, with the RFC's trace.
    code, out, _ = run(capsys, "resolve", "-M", "pc-q35-10.2", "-accel",
                       "kvm,kernel-irqchip=split", "--release", "10.2", "--seoib", "rfc-v2",
                       "--kernel", "linux-7.0", "--json")
    doc = json.loads(out)
    seoib = doc["seoib"]
    assert code == 0 and doc["error"] is None
    assert seoib["state"] == "RESPECTED" and seoib["x2apic_api_flags"] == 4
    assert seoib["guest"] == {"lvr_directed_eoi": True, "eoi_broadcast_suppressed": True}
    assert seoib["migration_section"] is True
    rules = [s["rule"] for s in seoib["trace"]]
    assert rules[:4] == ["design", "kvm-lapic", "ioapic", "set-state"]
    assert "kvm_lapic_seoib_set_state state=1" in seoib["trace"][3]["message"]
    assert list(doc["seoib_by_kernel"]) == ["linux-7.0"]


def test_resolve_refused_exits_1_with_json_and_one_line(capsys: Any) -> None:
    code, out, err = run(capsys, "resolve", "-M", "pc-q35-10.2", "-accel",
                         "kvm,kernel-irqchip=split,seoib-policy=respected", "--kernel",
                         "linux-6.12", "--seoib", "opt-in", "--json")
    doc = json.loads(out)
    assert code == 1
    assert "lacks KVM_X2APIC_API ENABLE_SUPPRESS_EOI_BROADCAST" in doc["error"]
    assert doc["seoib"]["state"] is None
    assert err.count("\n") == 1 and "QEMU would refuse to power on" in err


def test_resolve_stream_state_needs_incoming(capsys: Any) -> None:
    code, _, err = run(capsys, "resolve", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                       "--stream-state", "RESPECTED", "--kernel", "linux-7.0")
    assert code == 2 and "-incoming" in err
    code, out, _ = run(capsys, "resolve", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                       "-incoming", "defer", "--stream-state", "RESPECTED", "--kernel",
                       "linux-6.12", "--json")
    assert code == 1 and "Unknown savevm section" in json.loads(out)["error"]
    code, out, err = run(capsys, "resolve", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                       "-incoming", "defer", "--stream-state", "RESPECTED", "--kernel",
                       "linux-6.12", "--seoib", "rfc-v2", "--json")
    doc = json.loads(out)
    assert code == 1 and "QEMU aborts: Failed to set KVM LAPIC SEOIB flags" in doc["error"]
    assert doc["seoib"]["aborts"] is True
    assert "QEMU would crash (abort)" in err


def test_resolve_without_kvm_lapic_needs_no_kernel(capsys: Any) -> None:
    code, out, _ = run(capsys, "resolve", "-M", "q35", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["seoib"]["state"] is None
    assert doc["seoib"]["guest"]["lvr_directed_eoi"] is False


def test_resolve_judges_every_shipped_kernel_without_one(capsys: Any,
                                                          monkeypatch: Any) -> None:
    monkeypatch.setattr("machines.kernels.host_usable", lambda device="/dev/kvm": False)
    _code, out, _ = run(capsys, "resolve", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                        "--seoib", "rfc-v2", "--json")
    states = {k: v["state"] for k, v in json.loads(out)["seoib_by_kernel"].items()}
    assert states == {"linux-6.12": "QUIRKED", "linux-6.18.y-seoib": "RESPECTED",
                      "linux-7.0": "RESPECTED"}


def test_unknown_kernel_profile(capsys: Any) -> None:
    code, _, err = run(capsys, "resolve", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                       "--kernel", "linux-2.6")
    assert code == 2 and "unknown kernel profile 'linux-2.6'" in err


def test_loadvm_check(capsys: Any) -> None:
    code, out, err = run(capsys, "loadvm-check", "--current", "RESPECTED", "--snapshot",
                         "QUIRKED", "--kernel", "linux-7.0", "--seoib", "opt-in")
    assert code == 1 and "fix: restart QEMU with -loadvm" in out
    assert out.count("refused") == 1 and err == ""  # the refusal once, on stdout
    # the RFC's code loads it and leaves the VM RESPECTED, silently: a warning, not a refusal
    code, out, err = run(capsys, "loadvm-check", "--current", "RESPECTED", "--snapshot",
                         "QUIRKED", "--kernel", "linux-7.0", "--seoib", "rfc-v2")
    assert code == 0 and "warning: the snapshot was QUIRKED but the VM goes on RESPECTED" in out
    # a real build: a VM is always QUIRKED, and a snapshot with the section is refused
    code, _, err = run(capsys, "loadvm-check", "--current", "RESPECTED", "--snapshot", "QUIRKED")
    assert code == 2 and "always QUIRKED" in err
    code, out, err = run(capsys, "loadvm-check", "--current", "QUIRKED", "--snapshot",
                         "RESPECTED", "--kernel", "linux-7.0")
    assert code == 1 and "Unknown savevm section" in out and out.count("refused") == 1
    assert err == ""
    code, out, _ = run(capsys, "loadvm-check", "--current", "RESPECTED", "--snapshot",
                       "not-advertised", "--kernel", "linux-7.0", "--seoib", "opt-in", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["kernels"]["linux-7.0"]["x2apic_api_flags"] == 8
    code, _, err = run(capsys, "loadvm-check", "--current", "HAPPY", "--snapshot", "QUIRKED")
    assert code == 2 and "unknown SEOIB state" in err


def test_matrix_since_takes_a_version_or_fails(capsys: Any) -> None:
    code, out, _ = run(capsys, "matrix", "--since", "10", "--format", "json")
    assert code == 0
    names = [r["machine"] for r in json.loads(out)["rows"]]
    versions = {tuple(int(x) for x in n.split("-")[-1].split(".")) for n in names}
    assert versions and min(versions) == (10, 0) and all(v >= (10, 0) for v in versions)
    _, out_dotted, _ = run(capsys, "matrix", "--since", "10.0", "--format", "json")
    assert json.loads(out_dotted)["rows"] == json.loads(out)["rows"]
    for since, needle in [("abc", "--since abc: expected a QEMU version"),
                          ("99", "no machine type since 99.0 matches")]:
        code, out, err = run(capsys, "matrix", "--since", since)
        assert code == 2 and out == ""
        assert err.count("\n") == 1 and needle in err


def test_matrix_kernel_replaces_the_shipped_columns_once_each(capsys: Any) -> None:
    code, out, _ = run(capsys, "matrix", "--since", "10.1", "--kernel", "linux-6.12",
                       "--kernel", "linux-7.0", "--kernel", "linux-6.12", "--format", "json")
    assert code == 0
    assert json.loads(out)["kernels"] == ["linux-6.12", "linux-7.0"]
