"""libvirt domains: the argv libvirt generates, checked against libvirt's own test data."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Any

import pytest

from machines.config import configure
from machines.i386.ioapic import ioapic
from machines.libvirt import parse_domain, read_domain
from machines.options import keyval_parse, parse_args, split_command_line
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession
from machines.registry import get_build
from machines.resolve import Resolver

FIXTURES = Path(__file__).parent / "fixtures" / "libvirt"
LIBVIRT_CASES = ["intel-iommu-eim", "cpu-exact1"]
MAPPED_MACHINE_KEYS = ("type", "kernel_irqchip")


def _option(args: list[str], name: str) -> str | None:
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    assert len(found) <= 1, (name, found)
    return found[0] if found else None


@pytest.mark.parametrize("case", LIBVIRT_CASES)
def test_argv_is_what_libvirt_generates(case: str) -> None:
    """-machine (the keys mapped), -accel and -cpu equal libvirt's expected .args."""
    _, ours = read_domain(FIXTURES / f"{case}.xml")
    binary, theirs = split_command_line((FIXTURES / f"{case}.x86_64-latest.args").read_text())
    assert binary == "/usr/bin/qemu-system-x86_64"
    their_machine = _option(theirs, "-machine")
    assert their_machine is not None
    kept = [(k, v) for k, v in keyval_parse(their_machine, "type") if k in MAPPED_MACHINE_KEYS]
    assert keyval_parse(_option(ours, "-machine") or "", "type") == kept
    assert _option(ours, "-accel") == _option(theirs, "-accel")
    assert _option(ours, "-cpu") == _option(theirs, "-cpu")


def test_split_ioapic_is_on_the_machine_not_the_accelerator() -> None:
    _, args = read_domain(FIXTURES / "intel-iommu-eim.xml")
    assert args[:4] == ["-machine", "q35,kernel_irqchip=split", "-accel", "kvm"]
    _, args = parse_domain("<domain type='kvm'><features><ioapic driver='kvm'/></features>"
                           "</domain>")
    assert args[:4] == ["-machine", "pc,kernel_irqchip=on", "-accel", "kvm"]


QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
OVERRIDE = (FIXTURES / "intel-iommu-eim.xml").read_text().replace(
    "<domain type='kvm'>", f"<domain type='kvm' xmlns:qemu='{QEMU_NS}'>").replace(
    "</domain>", "  <qemu:commandline><qemu:arg value='-machine'/>"
    "<qemu:arg value='kernel_irqchip=on'/></qemu:commandline>\n</domain>")


@pytest.mark.qemu
@pytest.mark.kvm
def test_commandline_machine_override_behaves_as_qemu(qemu_binary: str, real_kvm: object) -> None:
    """<qemu:commandline> -machine kernel_irqchip=on replaces libvirt's split, as in QEMU."""
    _, args = parse_domain(OVERRIDE)
    assert args[-2:] == ["-machine", "kernel_irqchip=on"]
    config = configure(get_build("10.0.2"), parse_args(args))
    resolver = Resolver(config)
    irqchip = resolver.kernel_irqchip()
    assert irqchip is not None and irqchip.value == "on"
    pic = ioapic(resolver)
    assert pic is not None and (pic.type, pic.version) == ("kvm-ioapic", 0x11)

    async def real() -> str:
        async with QemuProcess(qemu_binary, [*args, "-S", *BASE_ARGS]) as process:
            return str(await QemuSession(process).qom_get("/machine/q35/ioapic", "type"))

    assert asyncio.run(real()) == "kvm-ioapic"


def test_libvirt_verdict_equals_the_verdict_of_libvirts_args(capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    from machines.cli import main

    for case in LIBVIRT_CASES:
        common = ["--release", "10.0.2", "--dest", "linux-7.0/10.0.2", "--dest",
                  "linux-6.12/10.2", "--json"]
        code_xml = main(["preflight", "--libvirt", str(FIXTURES / f"{case}.xml"), *common])
        from_xml = capsys.readouterr().out
        line = (FIXTURES / f"{case}.x86_64-latest.args").read_text()
        code_args = main(["preflight", "--cmdline", line, *common])
        from_args = capsys.readouterr().out
        assert code_xml == code_args
        import json

        assert json.loads(from_xml)["destinations"] == json.loads(from_args)["destinations"]
        assert shlex.split(line)  # the .args file is a pasted command line


def test_domain_without_machine_is_the_pc_alias(capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    """libvirt starts a domain without machine= with the alias: alias-not-pinned, like 'pc'."""
    import json

    from machines.cli import main

    xml = tmp_path / "nomachine.xml"
    xml.write_text("<domain type='kvm'><os><type arch='x86_64'>hvm</type></os></domain>")
    _, args = read_domain(xml)
    assert args[:2] == ["-machine", "pc"]
    assert main(["preflight", "--libvirt", str(xml), "--release", "10.0.2", "--dest",
                 "linux-7.0/10.0.2", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["code"] for r in doc["destinations"][0]["reasons"]] == ["alias-not-pinned"]


@pytest.mark.parametrize(("xml", "argv"), [
    ("<domain type='kvm'><os><type arch='aarch64' machine='virt-9.2'>hvm</type></os></domain>",
     []),
    ("<domain type='kvm'><os><type machine='virt-9.2'>hvm</type></os><devices>"
     "<emulator>/usr/bin/qemu-system-aarch64</emulator></devices></domain>", []),
    (None, ["--", "-M", "virt-9.2", "-accel", "kvm"]),
    (None, ["--cmdline", "qemu-system-aarch64 -M virt -accel kvm"]),
])
def test_other_architectures_are_named_as_such(xml: str | None, argv: list[str],
                                               capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    from machines.cli import main

    if xml is not None:
        path = tmp_path / "arm.xml"
        path.write_text(xml)
        argv = ["--libvirt", str(path)]
    assert main(["preflight", "--dest", "linux-7.0/10.0.2", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "only x86 is modelled" in err
    assert "unknown machine type" not in err


def _preflight(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    import json

    from machines.cli import main

    code = main(["preflight", "--json", *argv])
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.mark.qemu
def test_source_build_is_the_emulators_version(qemu_binary: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """<emulator>/usr/bin/qemu-system-x86_64</emulator> is QEMU 10.0.2 here: q35 is pc-q35-10.0."""
    import shutil
    import subprocess

    path = shutil.which(qemu_binary)
    version = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                             check=True).stdout
    if "version 10.0.2" not in version:
        from conftest import missing

        missing("the fixture's emulator path is QEMU 10.0.2 only on the CI image",
                "MACHINES_REQUIRE_QEMU")
    _, doc = _preflight(capsys, "--libvirt", str(FIXTURES / "intel-iommu-eim.xml"),
                        "--dest", "linux-7.0/10.0.2", "--source-host", "linux-7.0/10.0.2")
    src_named = doc["source"]
    _, doc = _preflight(capsys, "--libvirt", str(FIXTURES / "intel-iommu-eim.xml"),
                        "--dest", "linux-7.0/10.0.2")
    src = doc["source"]
    assert src["qemu"] == "10.0.2"
    assert src["qemu_why"] == "the version of /usr/bin/qemu-system-x86_64 on this host"
    assert (src["machine_as_given"], src["machine"]) == ("q35", "pc-q35-10.0")
    assert src["machine"] == src_named["machine"]


def test_unreachable_emulator_says_the_build_was_assumed(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    xml = tmp_path / "elsewhere.xml"
    xml.write_text("<domain type='kvm'><os><type arch='x86_64' machine='q35'>hvm</type></os>"
                   "<devices><emulator>/nonexistent/qemu-system-x86_64</emulator></devices>"
                   "</domain>")
    _, doc = _preflight(capsys, "--libvirt", str(xml), "--dest", "linux-7.0/10.2",
                        "--source-host", "linux-7.0/10.2")
    assert doc["source"]["qemu_why"].startswith("the QEMU of source host")
    _, doc = _preflight(capsys, "--libvirt", str(xml), "--dest", "linux-7.0/10.2",
                        "--release", "10.1")
    assert (doc["source"]["qemu"], doc["source"]["qemu_why"]) == ("10.1", "--release")
    _, doc = _preflight(capsys, "--libvirt", str(xml), "--dest", "linux-7.0/10.2",
                        "--source-state", "QUIRKED")
    why = doc["source"]["qemu_why"]
    assert why.startswith("assumed, the model's newest") and "--release" in why
    assert "/nonexistent/qemu-system-x86_64 is not an executable on this host" in why


@pytest.mark.parametrize("machine", ["pc-q35-4.2", "pc-q35-2.7", "pc-i440fx-2.5"])
def test_type_the_assumed_build_lacks_gets_the_verdict_not_exit_2(
        machine: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _preflight(capsys, "--dest", "linux-7.0/10.2", "--source-state", "QUIRKED",
                           "--", "-M", machine, "-accel", "kvm,kernel-irqchip=split")
    assert code == 3
    dest = doc["destinations"][0]
    assert [r["code"] for r in dest["reasons"]] == ["machine-type-unknown"]
    src = doc["source"]
    assert src["machine"] == machine and src["qemu"] != "10.2"
    assert any("name it with --release" in n for n in src["notes"])


def test_registry_maps_an_emulator_version_to_a_build() -> None:
    from machines.registry import build_for_version

    assert build_for_version("10.0.2") == "10.0.2"
    assert build_for_version("10.1.0") == "10.1"
    assert build_for_version("10.1.2") == "10.1.2"
    assert build_for_version("9.2.0") is None
    assert build_for_version("10.0.2 (Debian)") is None


def test_only_a_qemu_binary_is_run_for_its_version(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A domain file naming another program as <emulator> does not get it executed."""
    marker = tmp_path / "ran"
    script = tmp_path / "not-qemu"
    script.write_text(f"#!/bin/sh\ntouch {marker}\necho 'QEMU emulator version 10.0.2'\n")
    script.chmod(0o755)
    xml = tmp_path / "odd.xml"
    xml.write_text("<domain type='kvm'><os><type arch='x86_64' machine='q35'>hvm</type></os>"
                   f"<devices><emulator>{script}</emulator></devices></domain>")
    _, doc = _preflight(capsys, "--libvirt", str(xml), "--dest", "linux-7.0/10.2",
                        "--source-state", "QUIRKED")
    assert not marker.exists()
    assert "is not named like a QEMU x86 binary" in doc["source"]["qemu_why"]
