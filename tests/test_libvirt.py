"""libvirt domains: the argv libvirt generates, checked against libvirt's own test data."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

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
