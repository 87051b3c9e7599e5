"""Every real QEMU build the project ships, proven against its own binary.

The zoo (``.ci/install-zoo``) holds Debian's QEMU 5.2 (bullseye), 7.2
(bookworm), 10.0.13 (trixie) and 11.1.3 (trixie-backports) in chroots; the
host has 10.0.2 (bookworm-backports).  For each: the listing, the registered
types and their flags, every pc type's compat list, a sample of resolved
values read back with ``qom-get``, and what the build refuses to start.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import ZOO_BUILDS, kvm_available, missing, zoo_command
from realqemu import compare_with_model, run_many, sample_body, sample_devices

from machines.build import Build
from machines.cli import main
from machines.compat.importer import flat_from_source
from machines.naming import version_key
from machines.qmp import BASE_ARGS, QemuCommand, QemuProcess, QemuSession
from machines.registry import DATA, get_build

pytestmark = pytest.mark.qemu
SOURCES = Path(DATA).parent / "sources"


@pytest.fixture(scope="module", params=ZOO_BUILDS)
def zoo(request: Any) -> tuple[Build, QemuCommand, dict[str, Any]]:
    command = zoo_command(request.param)

    async def query() -> dict[str, Any]:
        async with QemuProcess(command, ("-machine", "none", "-accel", "tcg", *BASE_ARGS)
                               ) as process:
            session = QemuSession(process)
            version, package = await session.version()
            return {"version": version, "package": package,
                    "machines": await session.machines()}

    return get_build(request.param), command, asyncio.run(query())


def test_listing_equals_machine_help(zoo: tuple[Build, QemuCommand, dict[str, Any]]) -> None:
    build, command, _ = zoo
    real = subprocess.run([*command.resolved(), "-machine", "help"], capture_output=True,
                          text=True, check=True, timeout=60).stdout
    assert build.help_text() == real
    assert main(["list", "--release", build.name]) == 0


def test_version_and_debian_package(zoo: tuple[Build, QemuCommand, dict[str, Any]]) -> None:
    build, _, live = zoo
    assert build.package == live["package"] and live["package"].startswith("Debian 1:")
    assert tuple(int(x) for x in live["version"].split(".")) == build.version


def test_registered_types_aliases_default_deprecated(
        zoo: tuple[Build, QemuCommand, dict[str, Any]]) -> None:
    build, _, live = zoo
    theirs = {m["name"]: m for m in live["machines"]}
    assert set(theirs) == {m.name for m in build.registered()}
    assert {m["alias"]: n for n, m in theirs.items() if m.get("alias")} == \
        {a: m.name for a, m in build.aliases.items()}
    default = [n for n, m in theirs.items() if m.get("is-default")]
    assert default == [build.default_machine.name] if build.default_machine else default == []
    assert {n for n, m in theirs.items() if m.get("deprecated")} == \
        {m.name for m in build.registered() if m.deprecated}


def _pc(names: Any) -> list[str]:
    return sorted(n for n in names if n.startswith(("pc-i440fx-", "pc-q35-")))


def test_compat_lists_equal_the_binary_or_its_source(
        zoo: tuple[Build, QemuCommand, dict[str, Any]]) -> None:
    """QEMU >= 9.1 lists compat-props; older ones only have them in their source."""
    build, _, live = zoo
    ours = {n: [(cp.driver, cp.property, cp.value) for cp in build.machines[n].compat_props()]
            for n in _pc(build.machines)}
    if any("compat-props" in m for m in live["machines"]):
        theirs = {m["name"]: [(p["qom-type"], p["property"], p["value"])
                              for p in m["compat-props"]]
                  for m in live["machines"] if m["name"] in ours}
    else:
        source = json.loads((SOURCES / f"qemu-{live['version']}-arrays.json").read_text())
        assert source["qemu"] == live["version"]
        theirs = flat_from_source(source, list(ours))  # type: ignore[assignment]
    assert set(theirs) == set(ours) and len(ours) >= 30
    for name in ours:
        assert ours[name] == theirs[name], f"{build.name} {name}"


def _sample_types(build: Build) -> list[str]:
    """Oldest, newest and two in between, of each pc family."""
    picked = []
    for prefix in ("pc-i440fx-", "pc-q35-"):
        names = sorted((m.name for m in build.registered() if m.name.startswith(prefix)),
                       key=version_key)
        picked += sorted({names[0], names[len(names) // 3], names[2 * len(names) // 3],
                          names[-1]}, key=version_key)
    return picked


def test_compat_affected_values_equal_qom_get(zoo: tuple[Build, QemuCommand, dict[str, Any]],
                                              record_property: Any) -> None:
    build, command, _ = zoo
    devices = sample_devices(build)
    jobs = [(["-machine", n, *devices], sample_body(build)) for n in _sample_types(build)]
    results = run_many(command, jobs, parallel=2)
    runs = [(j[0][:2], r) for j, r in zip(jobs, results, strict=True)]
    compared, _, wrong = compare_with_model(build, runs)
    record_property("compared_properties", len(compared))
    assert not wrong
    assert len(compared) >= 100
    assert {t for t, _ in compared} >= {"ICH9-LPC", "PIIX4_PM", "e1000"}


# Configurations whose fate differs between builds: machine types each build
# has or lacks, devices, CPU models and properties added over the years, and
# refusals every build shares.
CONFIGS = [
    ["-M", "pc-q35-11.1"],
    ["-M", "pc-q35-5.2"],
    ["-machine", "pc-i440fx-2.12"],
    ["-M", "q35", "-device", "pvpanic-pci"],
    ["-M", "q35", "-cpu", "EPYC-Genoa"],
    ["-M", "q35", "-global", "ICH9-LPC.x-smi-swsmi-timer=off"],
    ["-M", "q35", "-accel", "tcg,kernel-irqchip=split"],
    ["-M", "pc", "-global", "ioapic.version=0x30"],
    ["-M", "q35", "-accel", "kvm,dirty-ring-size=4096"],
    ["-M", "q35", "-accel", "kvm", "-machine", "kernel-irqchip=split"],
]


def _first_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if ": warning: " not in line]
    line = lines[0] if lines else ""
    return line.split(": ", 1)[1] if line.startswith("qemu-system") else line


def _real_outcome(command: QemuCommand, args: list[str]) -> tuple[bool, str]:
    """(started, first error line).

    The monitor greets before the machine is built; it answers commands only
    once the main loop runs, so an answer to query-status means it started.
    """
    accel = [] if any(a == "-accel" for a in args) else ["-accel", "tcg"]
    proc = subprocess.Popen([*command.resolved(), *args, *accel, "-S", *BASE_ARGS,
                             "-qmp", "stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write('{"execute": "qmp_capabilities"}\n'
                             '{"execute": "query-status", "id": "status"}\n')
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        for reply in proc.stdout:
            if '"id": "status"' in reply:
                return True, ""
        proc.wait(timeout=30)
        return False, _first_error(proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.parametrize("args", CONFIGS, ids=[" ".join(c) for c in CONFIGS])
def test_refuses_what_the_build_refuses_in_its_own_words(
        zoo: tuple[Build, QemuCommand, dict[str, Any]], args: list[str], capsys: Any) -> None:
    build, command, _ = zoo
    if "kvm" in " ".join(args) and not kvm_available():
        missing("needs /dev/kvm", "MACHINES_REQUIRE_KVM")
    started, line = _real_outcome(command, args)
    accel = [] if "-accel" in args else ["-accel", "tcg"]
    code = main(["resolve", "--release", build.name, *args, *accel, "--kernel", "linux-7.0"])
    err = capsys.readouterr().err
    if started:
        assert code == 0, err
    else:
        assert code == 1 and line, (line, err)
        assert err.startswith(f"machines: {line}"), (line, err)


def _flat(build: Build) -> dict[str, list[tuple[str, str, str]]]:
    return {n: [(cp.driver, cp.property, cp.value) for cp in m.compat_props()]
            for n, m in build.machines.items() if m.registered}


def test_model_11_1_is_the_import_of_11_1_3_entry_for_entry() -> None:
    model, real = get_build("11.1"), get_build("11.1.3")
    assert _flat(model) == _flat(real)
    assert model.help_text() == real.help_text()


def test_model_10_2_2_is_debians_10_2_2_source() -> None:
    source = json.loads((SOURCES / "qemu-10.2.2-arrays.json").read_text())
    model = get_build("10.2.2")
    ours = _flat(model)
    theirs = flat_from_source(source, _pc(ours))
    assert set(theirs) == set(_pc(ours))
    for name, entries in theirs.items():
        assert ours[name] == entries, name
    # 10.2.0 is the same without the stable backport in pc_compat_10_1.
    older = _flat(get_build("10.2"))
    backport = ("x86_64-cpu", "x-migrate-error-code", "false")
    assert backport in ours["pc-q35-10.1"] and backport not in older["pc-q35-10.1"]
    assert {n: [e for e in v if e != backport] for n, v in ours.items()} == older


def test_no_real_build_claims_seoib() -> None:
    for name in ("5.2", "7.2", "10.0.2", "10.0.13", "11.1.3", "10.0", "10.1", "10.1.2", "10.2",
                 "10.2.2", "11.0", "11.1"):
        build = get_build(name)
        assert not build.seoib_aware, name
        assert "seoib-policy" not in build.qom.properties("kvm-accel"), name


def test_zoo_script_names_the_same_suites() -> None:
    script = (Path(__file__).parent.parent / ".ci" / "install-zoo").read_text()
    from conftest import ZOO_SUITES

    for suite in ZOO_SUITES.values():
        assert suite in script
    assert os.path.basename(os.environ.get("MACHINES_ZOO", "/var/lib/machines-zoo"))
