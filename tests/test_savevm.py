"""Reading saved state / migration streams: real QEMU 10.0.2 streams and encoded ones."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import streamenc

from machines.cli import main
from machines.errors import DataError
from machines.i386.seoib import SeoibState
from machines.qmp import BASE_ARGS, QemuProcess
from machines.savevm import StreamError, read_saved_state

ROOT = os.path.dirname(os.path.dirname(__file__))


async def _save(binary: str, args: list[str], out: Path,
                accel: tuple[str, ...] = ("-accel", "tcg")) -> None:
    """A paused VM (TCG unless told) with little RAM migrated to a file, as an operator would."""
    async with QemuProcess(binary, [*args, "-m", "32", *accel, "-S", *BASE_ARGS]) as process:
        await process.execute("migrate", {"uri": f"exec:cat > {out}"})
        for _ in range(600):
            status = (await process.execute("query-migrate")).get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.05)
        assert status == "completed", status


@pytest.fixture(scope="module")
def real_streams(qemu_binary: str, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, tuple[str, Path]]:
    """name -> (the machine type QEMU was started with, its stream)."""
    where = tmp_path_factory.mktemp("streams")
    cases = {
        "q35": ("pc-q35-10.0", ["-machine", "pc-q35-10.0"]),
        "i440fx": ("pc-i440fx-9.2", ["-machine", "pc-i440fx-9.2"]),
        "alias": ("pc-q35-10.0", ["-machine", "q35"]),  # QEMU saves the resolved name
        "no-footers": ("pc-i440fx-2.4", ["-machine", "pc-i440fx-2.4", "-global",
                                         "migration.send-section-footer=off"]),
        "kvm-split-config": ("pc-q35-8.2", ["-machine", "pc-q35-8.2,kernel-irqchip=split"]),
    }
    out = {}
    for name, (machine, args) in cases.items():
        path = where / f"{name}.mig"
        asyncio.run(_save(qemu_binary, args, path))
        out[name] = (machine, path)
    return out


@pytest.mark.qemu
@pytest.mark.parametrize("case", ["q35", "i440fx", "alias", "no-footers", "kvm-split-config"])
def test_real_stream_gives_the_machine_type(case: str,
                                            real_streams: dict[str, tuple[str, Path]]) -> None:
    machine, path = real_streams[case]
    saved = read_saved_state(str(path))
    assert saved.machine == machine
    assert saved.seoib is None and saved.effective_seoib is SeoibState.QUIRKED
    names = [s.name for s in saved.sections]
    assert names[:2] == ["configuration", "ram"]
    assert {"timer", "cpu", "cpu_common", "globalstate"} <= set(names)
    assert any(n.endswith("/ioapic") or n == "ioapic" for n in names)
    # Sections tile the stream from the first device to the end marker.
    devices = [s for s in saved.sections if s.kind == "device"]
    for before, after in itertools.pairwise(devices):
        assert before.offset + (before.size or 0) == after.offset


@pytest.mark.qemu
def test_inspect_command_on_a_real_stream(real_streams: dict[str, tuple[str, Path]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    machine, path = real_streams["q35"]
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"machine type: {machine}\n" in text
    assert "SEOIB: no x86-seoib-state section: QUIRKED\n" in text
    assert main(["inspect", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "machines/inspect/v1"
    assert (doc["machine"], doc["seoib_section"], doc["seoib_state"]) == (machine, False,
                                                                          "QUIRKED")
    assert doc["size"] == path.stat().st_size


@pytest.mark.qemu
def test_every_truncation_of_a_real_stream_is_one_clear_error(
        real_streams: dict[str, tuple[str, Path]], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, path = real_streams["q35"]
    data = path.read_bytes()
    cut = tmp_path / "cut.mig"
    points = sorted({0, 3, 4, 8, 12, 20, len(data) - 1, len(data) - 6,
                     *range(0, len(data), max(1, len(data) // 150))})
    for point in points:
        cut.write_bytes(data[:point])
        assert main(["inspect", str(cut)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and " offset " in err, (point, err)


# -- streams that carry x86-seoib-state (the test encoder) --------------------

@pytest.mark.parametrize("state", list(SeoibState))
def test_seoib_section_is_read(state: SeoibState, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.mig"
    path.write_bytes(streamenc.encode("pc-q35-10.2", seoib=state.value))
    saved = read_saved_state(str(path))
    assert (saved.machine, saved.seoib) == ("pc-q35-10.2", state)
    assert [s.name for s in saved.sections] == [
        "configuration", "ram", "timer", "cpu_common", "x86-seoib-state",
        "0000:00:1f.0/ioapic"]
    assert main(["inspect", str(path)]) == 0
    assert f"SEOIB: x86-seoib-state: {state.name}\n" in capsys.readouterr().out


def test_sections_saved_at_setup_and_no_footers(tmp_path: Path) -> None:
    early = (streamenc.Device("early-dev", 0, 1, (streamenc.Field("x", "uint32",
                                                                  streamenc.u32(5)),)),)
    for footers in (True, False):
        path = tmp_path / "s.mig"
        path.write_bytes(streamenc.encode(seoib=1, early=early, footers=footers))
        saved = read_saved_state(str(path))
        assert saved.seoib is SeoibState.RESPECTED
        assert [s.name for s in saved.sections][:3] == ["configuration", "early-dev", "ram"]


def _error(tmp_path: Path, data: bytes) -> str:
    path = tmp_path / "bad.mig"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_saved_state(str(path))
    return str(info.value)


def test_unknown_state_and_version_are_refused_with_the_offset(tmp_path: Path) -> None:
    data = streamenc.encode(seoib=7)
    at = data.index(b"x86-seoib-state") + len("x86-seoib-state") + 8
    assert _error(tmp_path, data).endswith(
        f"offset {at}: x86-seoib-state holds unknown state 7 (0 QUIRKED, 1 RESPECTED, "
        "2 NOT_ADVERTISED)")
    assert "x86-seoib-state version 2" in _error(tmp_path, streamenc.encode(seoib=1,
                                                                            seoib_version=2))


def test_corrupt_and_foreign_streams(tmp_path: Path) -> None:
    good = streamenc.encode(seoib=1)
    assert "offset 0: not a QEMU saved state" in _error(tmp_path, b"QEMX" + good[4:])
    assert "offset 4: unknown stream format version 4" in _error(
        tmp_path, good[:4] + streamenc.u32(4) + good[8:])
    assert "no vmstate description" in _error(tmp_path, streamenc.encode(description=False))
    # A section name changed on the wire no longer matches its description.
    at = good.index(b"x86-seoib-state")
    broken = good[:at] + b"X" + good[at + 1:]
    assert f"offset {at}: device section 'x86-seoib-state'" in _error(tmp_path, broken)
    assert "does not match the vmstate description: its name reads" in _error(tmp_path, broken)
    # A description that lies about a size.
    text_at = good.rindex(b'"size": 4}')
    assert "does not match" in _error(tmp_path, good[:text_at] + b'"size": 5}'
                                      + good[text_at + 10:])
    assert "empty.mig" in _error_named(tmp_path, "empty.mig", b"")


def _error_named(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(StreamError) as info:
        read_saved_state(str(path))
    return str(info.value)


def test_missing_file_and_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nope.mig")]) == 2
    assert capsys.readouterr().err.endswith("nope.mig: No such file or directory\n")
    assert main(["inspect", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_huge_file_is_not_read_whole(tmp_path: Path) -> None:
    """An 8 GiB (sparse) stream without a description: refused, within bounded memory."""
    path = tmp_path / "huge.mig"
    with open(path, "wb") as fh:
        fh.write(streamenc.encode(description=False))
        fh.truncate(8 << 30)
    # VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across
    # fork/vfork and exec, so a big test process (pytest after hundreds of tests) would be
    # measured instead of the reader.
    code = ("import sys\n"
            "from machines.savevm import read_saved_state\n"
            "from machines.errors import DataError\n"
            "try:\n    read_saved_state(sys.argv[1])\n"
            "except DataError as err:\n    print(err)\n"
            "print(next(int(line.split()[1]) for line in open('/proc/self/status')\n"
            "           if line.startswith('VmHWM:')))\n")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": ROOT})
    message, peak_kib = run.stdout.splitlines()
    assert "no vmstate description" in message
    assert int(peak_kib) < 300 * 1024  # the description window (64 MiB) plus Python


# -- --state as the source of preflight and loadvm-check ----------------------

def _stream(tmp_path: Path, **kw: Any) -> str:
    path = tmp_path / "vm.mig"
    path.write_bytes(streamenc.encode(**kw))
    return str(path)


def test_preflight_takes_machine_and_state_from_the_stream(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _stream(tmp_path, machine="pc-q35-10.2", seoib=SeoibState.RESPECTED.value)
    code = main(["preflight", "--json", "--state", state, "--dest", "linux-6.12/10.2+opt-in",
                 "--dest", "linux-7.0/10.2+opt-in", "--seoib", "opt-in", "-accel",
                 "kvm,kernel-irqchip=split"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 3
    assert doc["source"]["machine"] == "pc-q35-10.2"
    assert doc["source"]["seoib"]["state"] == "RESPECTED"
    verdicts = {d["host"]: d for d in doc["destinations"]}
    assert verdicts["linux-7.0/10.2+opt-in"]["verdict"] == "ok"
    assert [r["code"] for r in verdicts["linux-6.12/10.2+opt-in"]["reasons"]] == [
        "seoib-kernel-api-missing"]


def test_preflight_state_without_section_is_quirked(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    state = _stream(tmp_path, machine="pc-q35-10.2")
    assert main(["preflight", "--json", "--state", state, "--dest", "linux-6.12/10.2",
                 "-accel", "kvm,kernel-irqchip=split"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["source"]["seoib"]["state"] == "QUIRKED"


def test_preflight_state_must_match_the_configured_machine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _stream(tmp_path, machine="pc-q35-10.2", seoib=1)
    assert main(["preflight", "--state", state, "--dest", "linux-7.0/10.2", "-M",
                 "pc-q35-10.1", "-accel", "kvm,kernel-irqchip=split"]) == 2
    err = capsys.readouterr().err
    assert "was saved from machine type pc-q35-10.2, but the VM is configured as " \
           "pc-q35-10.1" in err
    assert main(["preflight", "--state", state, "--source-state", "QUIRKED", "--dest",
                 "linux-7.0/10.2"]) == 2
    assert "drop --source-state" in capsys.readouterr().err


def test_loadvm_check_reads_the_snapshot_state(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    quirked = _stream(tmp_path, machine="pc-q35-10.2")
    assert main(["loadvm-check", "--current", "RESPECTED", "--state", quirked,
                 "--kernel", "linux-7.0", "--seoib", "opt-in", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["snapshot"], doc["snapshot_machine"]) == ("QUIRKED", "pc-q35-10.2")
    respected = _stream(tmp_path, machine="pc-q35-10.2", seoib=1)
    assert main(["loadvm-check", "--current", "NOT_ADVERTISED", "--state", respected,
                 "--kernel", "linux-7.0", "--seoib", "opt-in"]) == 0
    assert "NOT_ADVERTISED -> RESPECTED on kernel linux-7.0: allowed" in \
        capsys.readouterr().out


# -- what a stream shows about the accelerator (real KVM streams) ---------------

async def _save_kvm(binary: str, args: list[str], out: Path) -> None:
    await _save(binary, args, out, accel=())  # the accelerator is in args


@pytest.mark.qemu
@pytest.mark.kvm
def test_a_kvm_split_stream_is_not_judged_as_tcg(qemu_binary: str, real_kvm: object,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    split, tcg = tmp_path / "split.mig", tmp_path / "tcg.mig"
    asyncio.run(_save_kvm(qemu_binary, ["-machine", "pc-q35-10.0", "-accel",
                                        "kvm,kernel-irqchip=split"], split))
    asyncio.run(_save(qemu_binary, ["-machine", "pc-q35-10.0"], tcg))
    assert read_saved_state(str(split)).kvm_evidence == "its kvmclock section"
    assert read_saved_state(str(tcg)).kvm_evidence is None
    common = ["preflight", "--release", "10.0.2", "--dest", "linux-7.0/10.0.2"]
    # KVM shows, the irqchip mode does not: asked for, and only that.
    assert main([*common, "--state", str(split)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "saved by a KVM VM (its kvmclock section)" in err and "irqchip mode" in err
    assert "no KVM LAPIC" not in err
    assert main([*common, "--json", "--state", str(split), "--", "-accel",
                 "kvm,kernel-irqchip=split"]) == 0
    doc = json.loads(capsys.readouterr().out)["source"]
    assert (doc["accel"], doc["kernel_irqchip"], doc["seoib"]["state"]) == \
        ("kvm", "split", "QUIRKED")
    # A KVM stream into TCG: QEMU refuses it ("Unknown savevm section ... 'kvmclock'").
    assert main([*common, "--state", str(split), "--", "-accel", "tcg"]) == 2
    assert "QEMU would refuse to load it" in capsys.readouterr().err
    # A TCG stream is judged TCG, and the output says why.
    assert main([*common, "--json", "--state", str(tcg)]) == 0
    doc = json.loads(capsys.readouterr().out)["source"]
    assert doc["accel"] == "tcg" and doc["seoib"]["state"] is None
    assert "no kvmclock section" in doc["described_by"]


def test_a_non_quirked_section_implies_a_split_irqchip(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    kvmclock = streamenc.Device("kvmclock", 0, 1, (streamenc.Field("clock", "uint64",
                                                                   bytes(8)),))
    path = _stream(tmp_path, seoib=SeoibState.RESPECTED.value,
                   devices=(*streamenc.COMMON, kvmclock))
    # Only a QEMU with a SEOIB design writes the section: the RFC's posted code here.
    assert main(["preflight", "--json", "--source-host", "linux-7.0/10.2+rfc-v2",
                 "--dest", "linux-7.0/10.2+rfc-v2", "--state", path]) == 0
    doc = json.loads(capsys.readouterr().out)["source"]
    assert (doc["accel"], doc["kernel_irqchip"], doc["seoib"]["state"]) == \
        ("kvm", "split", "RESPECTED")
    assert "kernel-irqchip=split from its x86-seoib-state" in doc["described_by"]


@pytest.mark.qemu
def test_a_corrupt_byte_is_reported_at_its_offset(real_streams: dict[str, tuple[str, Path]],
                                                  tmp_path: Path) -> None:
    """Each damaged header or footer byte of a real stream is named at its own offset."""
    _, path = real_streams["q35"]
    data = path.read_bytes()
    saved = read_saved_state(str(path))
    damaged = tmp_path / "damaged.mig"
    checked = 0
    for section in saved.sections:
        if section.kind != "device" or section.size is None:
            continue
        name_len = len(section.name)
        header = 6 + name_len + 8
        for where in (0, 5, 6, 6 + name_len - 1, 6 + name_len, header - 1, section.size - 5):
            offset = section.offset + where
            copy = bytearray(data)
            copy[offset] ^= 0xFF
            damaged.write_bytes(copy)
            with pytest.raises(StreamError) as err:
                read_saved_state(str(damaged))
            assert err.value.offset == offset, (section.name, where, str(err.value))
            assert f"'{section.name}'" in str(err.value)
            checked += 1
    assert checked > 100
