"""Paths no other test took (issue 16): preflight's text output, --dest-args and --cmdline
on the command line, version-2 streams and malformed stream descriptions, libvirt's
<ioapic driver='kvm'> and type='qemu' domains (each checked against the real QEMU where it
can be).
"""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import streamenc

from machines.cli import main
from machines.config import configure
from machines.i386.ioapic import ioapic
from machines.libvirt import parse_domain
from machines.options import parse_args
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession, QmpCommandError
from machines.registry import get_build
from machines.resolve import Resolver
from machines.savevm import StreamError, read_saved_state

FIXTURES = Path(__file__).parent / "fixtures" / "libvirt"
SPLIT_ARGS = ["-machine", "pc-q35-10.0", "-accel", "kvm,kernel-irqchip=split"]
SOURCE = ["--source-host", "linux-7.0/10.2+rfc-v2", "--source-state", "RESPECTED"]


def _json(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["preflight", "--json", *argv])
    return code, json.loads(capsys.readouterr().out)


# -- preflight's default text output ---------------------------------------------------------

def test_preflight_text_output_says_what_the_json_says(capsys: Any) -> None:
    dests = ["--dest", "linux-7.0/10.0.2", "--dest", "linux-7.0/10.2+rfc-v2"]
    code = main(["preflight", *dests, *SOURCE, "--", *SPLIT_ARGS])
    text = capsys.readouterr().out
    json_code, doc = _json(capsys, *dests, *SOURCE, "--", *SPLIT_ARGS)
    assert code == json_code == 3
    lines = text.splitlines()
    assert lines[0].startswith("source: pc-q35-10.0 on QEMU 10.2+rfc-v2")
    assert "SEOIB RESPECTED" in text and "kernel-irqchip=split" in text
    for dest in doc["destinations"]:
        verdict = {"blocked": "BLOCKED", "ok": "OK", "warn": "WARN"}[dest["verdict"]]
        assert f"{dest['host']}: {verdict}" in lines
        for reason in dest["reasons"]:
            assert f"  [{reason['severity']}] {reason['code']}: {reason['message']}" in lines
            assert f"      fix: {reason['fix']}" in lines
    assert "linux-7.0/10.0.2: BLOCKED" in lines and "linux-7.0/10.2+rfc-v2: OK" in lines


# -- --dest-args and --cmdline ----------------------------------------------------------------

def test_dest_args_on_the_command_line(capsys: Any) -> None:
    source = ["--source-host", "linux-7.0/10.0.2", "--", *SPLIT_ARGS]
    code, same = _json(capsys, "--dest", "linux-7.0/10.0.2", *source)
    assert code == 0 and same["destinations"][0]["reasons"] == []
    code, other = _json(capsys, "--dest", "linux-7.0/10.0.2", "--dest-args", "-accel kvm",
                        *source)
    assert code == 3
    assert [r["code"] for r in other["destinations"][0]["reasons"]] == \
        ["ioapic-version-mismatch"]
    code, bad = _json(capsys, "--dest", "linux-7.0/10.0.2", "--dest-args",
                      "-accel kvm,kernel-irqchip=maybe", *source)
    assert code == 3
    assert [r["code"] for r in bad["destinations"][0]["reasons"]] == \
        ["destination-config-invalid"]


def test_cmdline_is_the_same_source_as_its_arguments(capsys: Any) -> None:
    dests = ["--dest", "linux-7.0/10.0.2", "--dest", "linux-6.12/10.2+rfc-v2"]
    line = "/usr/bin/qemu-system-x86_64 -name vm1 " + " ".join(SPLIT_ARGS) + \
        " -global ioapic.version=0x11"
    code, pasted = _json(capsys, *dests, *SOURCE, "--cmdline", line)
    code_args, given = _json(capsys, *dests, *SOURCE, "--", *line.split()[1:])
    assert code == code_args == 3
    assert pasted["destinations"] == given["destinations"]
    assert pasted["source"]["ioapic"] == {"type": "ioapic", "version": 0x11}
    assert main(["preflight", *dests, *SOURCE, "--cmdline", "qemu -machine 'unterminated"]) == 2
    assert capsys.readouterr().err.startswith("machines: ")


# -- streams: format version 2, malformed descriptions ----------------------------------------

def _error(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "s.mig"
    path.write_bytes(data)
    with pytest.raises(StreamError) as info:
        read_saved_state(str(path))
    return str(info.value)


def test_version_2_stream_is_refused_by_name(tmp_path: Path) -> None:
    # QEMU_VM_FILE_VERSION_COMPAT is 2 (migration/savevm.c); QEMU 1.3 on writes 3
    good = streamenc.encode(seoib=1)
    err = _error(tmp_path, good[:4] + streamenc.u32(2) + good[8:])
    assert "offset 4: stream format version 2" in err and "not supported" in err


def _with_description(text: bytes) -> bytes:
    good = streamenc.encode(description=False)
    return good + bytes([0x06]) + struct.pack(">I", len(text)) + text


@pytest.mark.parametrize(("text", "says"), [
    (b"{not json", "the vmstate description is not JSON"),
    (b"\xff\xfe{}", "the vmstate description is not JSON"),
    (b"[1, 2]", "the vmstate description has no device list"),
    (b'{"devices": 5}', "the vmstate description has no device list"),
    (b'{"page_size": 4096}', "the vmstate description has no device list"),
    (b"[" * 100_000 + b"]" * 100_000, "the vmstate description"),
    (b'{"devices": [{"instance_id": 0}]}', "vmstate description: device [0] has no name"),
])
def test_malformed_descriptions_are_one_clear_error(tmp_path: Path, text: bytes,
                                                    says: str) -> None:
    err = _error(tmp_path, _with_description(text))
    assert says in err, err
    assert err.count("\n") == 0


@pytest.mark.parametrize("length", [0x506, 0x606, 0x706])
def test_a_description_whose_length_holds_the_marker_byte(tmp_path: Path, length: int) -> None:
    """The length field before the JSON may hold 0x06 (1 stream in 256): still found.

    (Found by the malformed-description rows: a 6-byte description was not found.)
    """
    bare = streamenc.encode(seoib=2, description=False)
    text = streamenc.encode(seoib=2)[len(bare) + 5:]
    assert len(text) < length
    text = text[:-1] + b" " * (length - len(text)) + text[-1:]  # JSON allows the padding
    path = tmp_path / "s.mig"
    path.write_bytes(bare + bytes([0x06]) + struct.pack(">I", length) + text)
    saved = read_saved_state(str(path))
    assert saved.machine == "pc-q35-10.2" and saved.seoib is not None


def test_a_description_length_that_lies_is_no_description(tmp_path: Path) -> None:
    data = _with_description(b'{"devices": []}')
    at = len(data) - len(b'{"devices": []}') - 4
    lying = data[:at] + struct.pack(">I", 999) + data[at + 4:]
    assert "no vmstate description at the end of the stream" in _error(tmp_path, lying)


# -- libvirt: <ioapic driver='kvm'>, <domain type='qemu'> -------------------------------------

KVM_IOAPIC = (FIXTURES / "win11-split.xml").read_text().replace("driver='qemu'", "driver='kvm'")
TCG_DOMAIN = (FIXTURES / "win11-split.xml").read_text().replace(
    "<domain type='kvm'", "<domain type='qemu'").replace(
    "<cpu mode='host-passthrough' check='none' migratable='on'/>", "")


def test_ioapic_driver_kvm_is_kernel_irqchip_on(capsys: Any, tmp_path: Path) -> None:
    _, args = parse_domain(KVM_IOAPIC)
    assert args[:2] == ["-machine", "pc-q35-10.2,kernel_irqchip=on"] and "kvm" in args
    resolver = Resolver(configure(get_build("10.2"), parse_args(args)))
    pic = ioapic(resolver)
    assert pic is not None and (pic.type, pic.version) == ("kvm-ioapic", 0x11)
    irqchip = resolver.kernel_irqchip()
    assert irqchip is not None and irqchip.value == "on"
    # a VM without a split irqchip sends no SEOIB section, whatever its design
    path = tmp_path / "kvm-ioapic.xml"
    path.write_text(KVM_IOAPIC)
    code, doc = _json(capsys, "--dest", "linux-7.0/10.0.2", "--source-host",
                      "linux-7.0/10.2+rfc-v2", "--libvirt", str(path))
    assert code == 3  # 10.0.2 lacks pc-q35-10.2: only that
    assert [r["code"] for r in doc["destinations"][0]["reasons"]] == ["machine-type-unknown"]
    assert doc["source"]["kernel_irqchip"] == "on"
    assert doc["source"]["seoib"]["migration_section"] is False
    assert "seoib-section-unsupported" not in [r["code"] for d in doc["destinations"]
                                               for r in d["reasons"]]


def test_domain_type_qemu_is_tcg() -> None:
    _, args = parse_domain(TCG_DOMAIN)
    assert args[args.index("-accel") + 1] == "tcg"
    resolver = Resolver(configure(get_build("10.2"), parse_args(args)))
    assert resolver.kernel_irqchip() is None
    pic = ioapic(resolver)
    assert pic is not None and pic.type == "ioapic"


async def _pic_type(binary: str, args: list[str]) -> str:
    async with QemuProcess(binary, [*args, "-S", *BASE_ARGS]) as process:
        session = QemuSession(process)
        try:
            children = await session.qom_list("/machine/q35")
        except QmpCommandError:
            children = await session.qom_list("/machine/i440fx")
        return next(str(c["type"]) for c in children if c["name"] == "ioapic")[6:-1]


@pytest.mark.qemu
@pytest.mark.kvm
@pytest.mark.parametrize("domain", [KVM_IOAPIC, TCG_DOMAIN,
                                    (FIXTURES / "win11-split.xml").read_text()],
                         ids=["ioapic-kvm", "type-qemu", "ioapic-qemu"])
def test_libvirt_arguments_build_the_ioapic_the_model_says(qemu_binary: str, real_kvm: Any,
                                                           installed_build: str,
                                                           domain: str) -> None:
    """The arguments read from the domain, run by the real QEMU: the same IOAPIC type."""
    _, args = parse_domain(domain.replace("pc-q35-10.2", "pc-q35-10.0"))
    if "-cpu" in args:  # -cpu host is not what decides the IOAPIC (and trips nested KVM)
        at = args.index("-cpu")
        args = args[:at] + args[at + 2:]
    real = asyncio.run(_pic_type(qemu_binary, args))
    pic = ioapic(Resolver(configure(get_build(installed_build), parse_args(args))))
    assert pic is not None and pic.type == real
