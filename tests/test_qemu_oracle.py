"""The model against a real QEMU: compat lists, listings, resolved values, errors.

Every test here starts the installed qemu-system-x86_64 (TCG, paused with
-S; no guest code runs) and compares what it reports with what the model
says for the imported build of the same version (and the model release of
that version).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Sequence
from typing import Any

import pytest
from realqemu import SAMPLE_DEVICES, compare_with_model, run_many, sample_body, walk_devices

from machines.build import Build
from machines.cli import main
from machines.config import configure
from machines.errors import PropertyError
from machines.options import parse_args
from machines.qmp import BASE_ARGS, QemuProcess, QemuSession, QmpCommandError
from machines.registry import get_build
from machines.resolve import Resolver

pytestmark = pytest.mark.qemu

@pytest.fixture(scope="module")
def live(qemu_binary: str) -> dict[str, Any]:
    async def query() -> dict[str, Any]:
        args = ("-machine", "none", "-accel", "tcg", *BASE_ARGS)
        async with QemuProcess(qemu_binary, args) as process:
            session = QemuSession(process)
            version, _ = await session.version()
            return {"version": version, "machines": await session.machines()}

    return asyncio.run(query())


@pytest.fixture(scope="module")
def build(installed_build: str) -> Build:
    """The shipped build of the installed QEMU's version (fails under REQUIRE when none)."""
    return get_build(installed_build)


def _model_of(build: Build) -> list[Build]:
    """The model release of the same minor version, where the model has one (10.0 for 10.0.x)."""
    from machines.registry import MODEL_RELEASES

    minor = ".".join(build.name.split(".")[:2])
    return [get_build(minor)] if minor in MODEL_RELEASES and minor != build.name else []


def _pc(machines: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, str]]]:
    return {str(m["name"]): [(p["qom-type"], p["property"], p["value"])
                             for p in m.get("compat-props", [])]
            for m in machines if str(m["name"]).startswith(("pc-i440fx-", "pc-q35-"))}


def test_compat_props_equal_query_machines_for_every_pc_type(live: dict[str, Any],
                                                             build: Build) -> None:
    theirs = _pc(live["machines"])
    if build.name == "10.0.2":
        assert len(theirs) == 61 and "pc-q35-4.0.1" in theirs
    for release in (build, *_model_of(build)):
        ours = {n: [(cp.driver, cp.property, cp.value) for cp in m.compat_props()]
                for n, m in release.machines.items() if m.family}
        assert set(ours) == set(theirs), release
        for name, entries in theirs.items():
            assert ours[name] == entries, f"{release.name} {name}: compat_props differ"


def test_listing_equals_machine_help(qemu_binary: str, build: Build) -> None:
    real = subprocess.run([qemu_binary, "-machine", "help"], capture_output=True, text=True,
                          check=True).stdout
    assert build.help_text() == real
    for model in _model_of(build):
        assert model.help_text() == real


def _ioapic_job(name: str, extra: Sequence[str]) -> tuple[list[str], Any]:
    path = "/machine/q35/ioapic" if name.startswith("pc-q35") else "/machine/i440fx/ioapic"

    async def body(session: QemuSession) -> Any:
        return await session.qom_get(path, "version")

    return ["-machine", name, *extra], body


@pytest.mark.parametrize("extra", [(), ("-global", "ioapic.version=0x11"),
                                   ("-global", "ioapic.version=0x20")],
                         ids=["compat", "0x11", "0x20"])
def test_ioapic_version_for_every_pc_type(qemu_binary: str, build: Build,
                                          extra: tuple[str, ...]) -> None:
    from machines.i386.ioapic import ioapic

    names = sorted(n for n, m in build.machines.items() if m.family)
    got = run_many(qemu_binary, [_ioapic_job(n, extra) for n in names])
    wrong = []
    for name, value in zip(names, got, strict=True):
        config = configure(build, parse_args(["-machine", name, "-accel", "tcg", *extra]))
        ours = ioapic(Resolver(config))
        if ours.version != value:
            wrong.append((name, ours.version, value))
    assert not wrong
    if not extra:  # the compat entry really flips it: 0x11 up to 2.7, 0x20 after
        assert {v for n, v in zip(names, got, strict=True) if n.endswith("-2.7")} == {0x11}
        assert {v for n, v in zip(names, got, strict=True) if n.endswith("-2.8")} == {0x20}


def test_compat_affected_properties_equal_qom_get(qemu_binary: str, build: Build,
                                                  record_property: Any) -> None:
    names = sorted(n for n, m in build.machines.items() if m.family)
    devices = [a for d in SAMPLE_DEVICES for a in ("-device", d)]
    jobs = [(["-machine", n, *devices], sample_body(build)) for n in names]
    results = run_many(qemu_binary, jobs)
    runs = [(j[0][:2], r) for j, r in zip(jobs, results, strict=True)]
    compared, at_realize, wrong = compare_with_model(build, runs)
    record_property("compared_properties", len(compared))
    record_property("decided_at_realize", sorted(at_realize))
    assert not wrong
    assert len(compared) >= 200
    kinds = {t for t, _ in compared}
    for typename in ("qemu64-x86_64-cpu", "ICH9-LPC", "PIIX4_PM", "virtio-net-pci", "e1000"):
        assert typename in kinds


def test_cpu_model_compat_properties_equal_qom_get(qemu_binary: str, build: Build) -> None:
    qom = build.qom
    models = sorted({cp.driver for m in build.machines.values() for cp in m.compat_props()
                     if cp.driver.endswith("-x86_64-cpu") and cp.driver in qom
                     and cp.driver not in qom.abstract and cp.driver != "host-x86_64-cpu"})
    assert len(models) >= 15
    machines = ["pc-i440fx-2.4", "pc-q35-2.11", "pc-q35-3.1", "pc-i440fx-4.2", "pc-q35-10.0"]
    jobs = [(["-machine", m, "-cpu", model.removesuffix("-x86_64-cpu")], sample_body(build))
            for model in models for m in machines]
    results = run_many(qemu_binary, jobs)
    runs = [(j[0][:4], r) for j, r in zip(jobs, results, strict=True)]
    compared, _, wrong = compare_with_model(build, runs)
    assert not wrong
    assert {t for t, _ in compared} >= set(models)


BAD_OPTIONS = [
    ["-machine", "q35,foo"],
    ["-machine", "q35,foo=bar"],
    ["-machine", "q35,,x"],
    ["-machine", "=q35"],
    ["-accel", "tcg,seoib-policy=auto"],
    ["-accel", "kvm,kernel-irqchip=maybe"],
    ["-machine", "q35,kernel-irqchip=bogus", "-accel", "kvm"],
    ["-machine", "q35", "-global", "ioapic.version=0x30"],
    ["-machine", "q35", "-global", "ioapic.version=300"],
    ["-machine", "q35", "-global", "ioapic.version=08"],
    ["-machine", "q35", "-global", "ioapic.bogus=1"],
    ["-global", "driver=ioapic,property=version"],
    ["-machine", "q35", "-cpu", "qemu64,+bogus"],
    ["-machine", "q35", "-cpu", "nosuch"],
    ["-machine", "q35", "-cpu", "qemu64,foo=bar"],
    ["-machine", "q35", "-global", "isa-pcspk.migrate=maybe"],
    ["-machine", "q35,accel=kvm", "-accel", "tcg"],
    ["-machine", "pc-q35-10.0,kernel_irqchip=split", "-accel", "kvm", "-machine",
     "kernel-irqchip=on"],
    ["-machine", "q35,kernel-irqchip=on,kernel_irqchip=split"],
    ["-machine", "q35,dump_guest_core=off", "-machine", "dump-guest-core=on"],
    ["-bogus"],
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=[" ".join(a) for a in BAD_OPTIONS])
def test_bad_options_fail_with_qemus_own_words(qemu_binary: str, build: Build,
                                               args: list[str], capsys: Any) -> None:
    extra = [] if any(a.startswith("-accel") or "accel=" in a for a in args) else ["-accel", "tcg"]
    real = subprocess.run([qemu_binary, *args, *extra, "-S", *BASE_ARGS], capture_output=True,
                          text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert real.returncode != 0
    qemu_says = real.stderr.strip().splitlines()[0].split(": ", 1)[1]
    assert main(["resolve", "--release", build.name, *args, *extra]) == 1
    err = capsys.readouterr().err
    assert err == f"machines: {qemu_says}\n"


def test_unknown_global_driver_only_warns_like_qemu(build: Build, capsys: Any) -> None:
    assert main(["resolve", "--release", build.name, "-M", "q35", "-global", "bogus.x=1"]) == 0
    assert "global bogus.x has invalid class name" in capsys.readouterr().out


@pytest.mark.kvm
def test_split_irqchip_default_only_for_pc_q35_4_0(qemu_binary: str, build: Build,
                                                   real_kvm: object) -> None:
    """Under KVM the IOAPIC type shows the machine's default irqchip mode."""
    names = sorted(n for n, m in build.machines.items() if m.family)

    async def body(session: QemuSession) -> str:
        for path in ("/machine/q35", "/machine/i440fx"):
            try:
                children = await session.qom_list(path)
            except QmpCommandError:
                continue
            return next(str(c["type"]) for c in children if c["name"] == "ioapic")
        raise AssertionError("no ioapic")

    async def all_of() -> list[str]:
        out = []
        for name in names:
            args = ["-machine", name, "-accel", "kvm", "-S", *BASE_ARGS]
            async with QemuProcess(qemu_binary, args) as process:
                out.append(await body(QemuSession(process)))
        return out

    got = asyncio.run(all_of())
    for name, kind in zip(names, got, strict=True):
        split = build.machines[name].default_kernel_irqchip_split
        assert kind == ("child<ioapic>" if split else "child<kvm-ioapic>"), name
    assert [n for n, k in zip(names, got, strict=True) if k == "child<ioapic>"] == ["pc-q35-4.0"]


def test_qom_get_sample_helper_sees_devices(qemu_binary: str) -> None:
    async def body(session: QemuSession) -> Any:
        return await walk_devices(session)

    found = run_many(qemu_binary, [(["-machine", "pc-q35-10.0", "-device", "e1000"], body)])[0]
    assert any(t == "e1000" for _, t in found)
    assert all(path.startswith("/machine/") for path, _ in found)


def test_board_devices_are_on_their_boards_only(qemu_binary: str, build: Build) -> None:
    """drift.BOARD_DEVICES: each board-only device exists on its boards and on no other."""
    from machines.drift import BOARD_DEVICES, board

    names = ["pc-q35-10.0", "pc-i440fx-10.0", "microvm", "isapc"]

    async def types(session: QemuSession) -> set[str]:
        return {t for _, t in await walk_devices(session)}

    found = run_many(qemu_binary, [(["-machine", n], types) for n in names])
    for name, present in zip(names, found, strict=True):
        machine = build.machines[name]
        for device, boards in BOARD_DEVICES.items():
            assert (device in present) == (board(machine) in boards), (name, device)


def test_microvm_has_no_mch_drift() -> None:
    from machines.drift import compat_drift

    items = compat_drift("microvm", get_build("10.1"), get_build("10.2"))
    assert not [i for i in items if i.driver == "mch"]
    q35 = compat_drift("pc-q35-10.1", get_build("10.1"), get_build("10.2"))
    assert not [i for i in q35 if i.driver == "mch"]  # its compat entry pins it


DEVICE_ARGS = ["-machine", "pc-q35-10.0", "-blockdev", "null-co,node-name=d0,size=1048576",
               "-device", "virtio-blk-pci,drive=d0,id=vb", "-netdev", "user,id=hn0",
               "-device", "virtio-net-pci,netdev=hn0,id=n0,mac=52:54:00:ab:cd:ef,addr=0x5"]
REALIZE_TIME = ("disable-legacy", "cyls", "heads", "secs", "logical_block_size", "addr")


def test_device_options_apply_and_realize_time_values_are_labelled(qemu_binary: str,
                                                                   build: Build) -> None:
    async def body(session: QemuSession) -> dict[str, Any]:
        out = {f"vb.{p}": await session.qom_get("/machine/peripheral/vb", p)
               for p in REALIZE_TIME}
        for p in ("mac", "netdev", "addr"):
            out[f"n0.{p}"] = await session.qom_get("/machine/peripheral/n0", p)
        return out

    real = run_many(qemu_binary, [(DEVICE_ARGS, body)])[0]
    config = configure(build, parse_args(DEVICE_ARGS))
    resolver = Resolver(config)
    blk, net = config.options.devices[0], config.options.devices[1]
    resolved = resolver.device("virtio-blk-pci", blk)
    for prop in REALIZE_TIME:
        r = resolved[prop]
        # The type default is not what QEMU has after realize: the model must say so.
        assert r.value != real[f"vb.{prop}"] and r.decided_at_realize, (prop, r)
    nic = resolver.device("virtio-net-pci", net)
    for prop in ("mac", "netdev", "addr"):
        assert nic[prop].value == real[f"n0.{prop}"], (prop, nic[prop])
        assert nic[prop].source.kind == "device"
    with pytest.raises(PropertyError, match=r"Property 'virtio-net-pci\.addr' doesn't take"):
        resolver.device("virtio-net-pci", parse_args(["-device",
                                                      "virtio-net-pci,addr=0x40"]).devices[0])
