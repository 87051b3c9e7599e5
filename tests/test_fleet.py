"""Fleet pre-flight: the grouped answer equals the per-pair answer; input errors."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kvmglue.profile import shipped
from machines.cli import main
from machines.config import configure
from machines.errors import MachinesError
from machines.hostprofile import load
from machines.i386.seoib import SeoibState, decide, inputs_from
from machines.kernels import caps
from machines.options import parse_args
from machines.preflight import judge, source_from
from machines.registry import get_build
from machines.resolve import Resolver

KERNELS = ("linux-6.12", "linux-6.18.y-seoib", "linux-7.0")
RELEASES = ("10.0", "10.0.2", "10.1", "10.1.2", "10.2")
DESIGNS = (None, None, "rfc-v2", "gated", "gated:10.1", "opt-in")
MACHINES = ("pc-q35-10.2", "pc-q35-10.1", "pc-q35-10.0", "pc-q35-9.2", "pc-i440fx-10.2",
            "pc-q35-7.2", "pc-q35-5.0", "q35", "pc", "pc-i440fx-6.2", "pc-q35-2.7")


def random_fleet(directory: Path, seed: int, vms: int, hosts: int) -> tuple[Path, Path]:
    rng = random.Random(seed)
    host_dir = directory / "hosts"
    host_dir.mkdir(parents=True)
    names = []
    for i in range(hosts):
        name = f"host-{i}"
        names.append(name)
        qemu: dict[str, str] = {"release": rng.choice(RELEASES)}
        design = rng.choice(DESIGNS)
        if design is not None:
            qemu["seoib"] = design
        doc = {"schema": "machines/host-profile/v1", "name": name,
               "kernel": shipped(rng.choice(KERNELS)).to_json(), "qemu": qemu}
        (host_dir / f"{name}.json").write_text(json.dumps(doc))
    lines = []
    for i in range(vms):
        vm: dict[str, Any] = {"id": f"vm-{i}", "machine": rng.choice(MACHINES),
                              "source_host": rng.choice(names)}
        if rng.random() < 0.7:
            vm["irqchip"] = rng.choice(["on", "split", "split", "off"])
        if rng.random() < 0.2:
            vm["ioapic"] = rng.choice([0x11, 0x20, "0x11"])
        if rng.random() < 0.3:
            vm["policy"] = rng.choice(["quirked", "respected", "not-advertised"])
        if rng.random() < 0.4:
            vm["state"] = rng.choice(["QUIRKED", "RESPECTED", "NOT_ADVERTISED", "respected"])
        if rng.random() < 0.2:
            vm["qemu"] = rng.choice(RELEASES)
        if rng.random() < 0.3:
            vm["seoib"] = rng.choice(DESIGNS[2:])
        lines.append(json.dumps(vm))
    fleet = directory / "vms.jsonl"
    fleet.write_text("\n".join(lines) + "\n")
    return fleet, host_dir


def _per_pair(vm: dict[str, Any], hosts: dict[str, Any]) -> dict[str, Any] | str:
    """One VM against every host, directly, without any grouping."""
    source_host = hosts[vm["source_host"]]
    name = vm.get("qemu") or source_host.build.name
    if "seoib" in vm:
        name = f"{name.split('+')[0]}+{vm['seoib']}"
    build = get_build(name)
    accel = f"kvm,kernel-irqchip={vm['irqchip']}" if "irqchip" in vm else "tcg"
    if "policy" in vm:
        accel += f",seoib-policy={vm['policy']}"
    args = ["-machine", vm["machine"], "-accel", accel]
    if "ioapic" in vm:
        version = vm["ioapic"] if isinstance(vm["ioapic"], int) else int(vm["ioapic"], 0)
        args += ["-global", f"ioapic.version={version:#x}"]
    try:
        config = configure(build, parse_args(args))
        resolver = Resolver(config)
        resolver.check_accel()
    except MachinesError as err:  # QEMU's refusal; any other exception fails the test
        return str(err)
    inputs = inputs_from(resolver)
    kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    if "state" in vm and not kvm_lapic:
        return "no KVM LAPIC"
    if "state" in vm:
        state: SeoibState | None = SeoibState.parse(vm["state"])
    elif inputs.kvm and inputs.kernel_irqchip in ("on", "split"):
        decision = decide(inputs, caps(source_host.kernel))
        if decision.refused:
            return str(decision.error)
        state = decision.state
    else:
        state = None
    source = source_from(config, state, "per pair")
    return {name: judge(source, host) for name, host in hosts.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_grouped_answer_equals_per_pair_answer(tmp_path: Path, seed: int, capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, seed, vms=150, hosts=25)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    header, rows, summary = lines[0], lines[1:-1], lines[-1]
    assert header["schema"] == "machines/fleet/v1" and "summary" in summary
    host_class = {h: c for c, info in header["host_classes"].items() for h in info["hosts"]}
    hosts = {p.stem: load(p) for p in sorted(host_dir.glob("*.json"))}
    vms = [json.loads(line) for line in fleet.read_text().splitlines()]
    assert [r["vm"] for r in rows] == [vm["id"] for vm in vms]
    compared = 0
    for vm, row in zip(vms, rows, strict=True):
        direct = _per_pair(vm, hosts)
        if isinstance(direct, str):
            assert "error" in row, (vm, direct)
            continue
        assert "error" not in row, (vm, row)
        movable = {name for name, d in direct.items() if d.verdict != "blocked"}
        assert set(row["can_move_to"]) == movable, vm
        for name, d in direct.items():
            group = row["blocked"] if d.verdict == "blocked" else row["warnings"]
            codes = [r["code"] for r in group.get(host_class[name], [])]
            assert codes == [r.code for r in d.reasons], (vm, name)
            compared += 1
    assert compared > 1000
    assert summary["summary"]["vms"] == len(vms)
    assert summary["summary"]["decided_classes"] < len(vms)


def _cli_reference(vm: dict[str, Any], host_dir: Path, hosts: dict[str, Any],
                   capsys: Any) -> dict[str, list[str]] | None:
    """One VM through the single-VM command, 'machines preflight --json', to every host.

    Independent of the fleet code: no grouping, no host classes, the CLI's own source
    reading (--release, --seoib, --source-host, --source-state, QEMU arguments).  None
    when the command refuses the VM (exit 2, one line); an exception fails the test.
    """
    accel = f"kvm,kernel-irqchip={vm['irqchip']}" if "irqchip" in vm else "tcg"
    if "policy" in vm:
        accel += f",seoib-policy={vm['policy']}"
    args = ["-machine", vm["machine"], "-accel", accel]
    if "ioapic" in vm:
        version = vm["ioapic"] if isinstance(vm["ioapic"], int) else int(vm["ioapic"], 0)
        args += ["-global", f"ioapic.version={version:#x}"]
    argv = ["preflight", "--json", "--source-host", str(host_dir / f"{vm['source_host']}.json")]
    if "state" in vm:
        argv += ["--source-state", SeoibState.parse(vm["state"]).name]
    for host in hosts:
        argv += ["--dest", str(host_dir / f"{host}.json")]
    code = main([*argv, "--", *args])
    out, err = capsys.readouterr()
    if code == 2:
        assert out == "" and err.count("\n") == 1 and err.startswith("machines: "), err
        return None
    assert code in (0, 1, 3), (code, err)
    doc = json.loads(out)
    if doc["source"]["qemu_why"].startswith("stand-in"):
        # the host's QEMU lacks the machine type: the command reads it with a stand-in
        # build (and says so), the fleet refuses the VM
        return None
    return {host: [r["code"] for r in d["reasons"]]
            for host, d in zip(hosts, doc["destinations"], strict=True)}


@pytest.mark.parametrize("seed", [4, 5])
def test_fleet_answer_equals_the_single_vm_command(tmp_path: Path, seed: int,
                                                   capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, seed, vms=200, hosts=8)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    header, rows = lines[0], lines[1:-1]
    host_class = {h: c for c, info in header["host_classes"].items() for h in info["hosts"]}
    hosts = {p.stem: load(p) for p in sorted(host_dir.glob("*.json"))}
    vms = [json.loads(line) for line in fleet.read_text().splitlines()]
    compared = refused = 0
    for vm, row in zip(vms, rows, strict=True):
        if "source_host" not in vm or "qemu" in vm or "seoib" in vm:
            continue  # the command's source QEMU is its --source-host's, nothing else
        reference = _cli_reference(vm, host_dir, hosts, capsys)
        if reference is None:
            assert "error" in row, (vm, row)
            refused += 1
            continue
        assert "error" not in row, (vm, row)
        for host, codes in reference.items():
            group = row["warnings"] if host in row["can_move_to"] else row["blocked"]
            assert [r["code"] for r in group.get(host_class[host], [])] == codes, (vm, host)
            compared += 1
    assert compared >= 300 and refused >= 1


def test_fleet_input_errors_name_the_line(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, 7, vms=5, hosts=2)
    good = fleet.read_text()
    for bad, needle in [
        ('{"id": "x"}', "field machine must be a non-empty string"),
        ('{"id": "x", "machine": "q35", "ioapic": "eleven"}', "field ioapic must be a number"),
        ('{"id": "x", "machine": "q35", "state": "HAPPY"}', "field state must be"),
        ('{"id": "x", "machine": "q35", "irqchip": "maybe"}', "field irqchip"),
        ('{"id": "x", "machine": "q35", "seoib": "rfc-v9"}', "field seoib: unknown SEOIB design"),
        ("[1, 2]", "a VM must be a JSON object"),
        ("{not json", "not JSON"),
        ('{"id": "x", "machine": "q35", "source_host": "nope"}', "source_host 'nope'"),
        ('{"id": "vm-2", "machine": "q35"}', "VM id 'vm-2' is already used on line 3"),
    ]:
        fleet.write_text(good + bad + "\n")
        assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                     "-o", str(tmp_path / "out.jsonl")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, (bad, err)
        assert f"{fleet}:6:" in err
        assert not (tmp_path / "out.jsonl").exists()  # nothing half-written
        # Without -o: nothing on stdout either, not even the header.
        assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and needle in err


def test_tcg_and_seoib_unaware_vms_need_no_state(tmp_path: Path, capsys: Any) -> None:
    _, host_dir = random_fleet(tmp_path, 10, vms=1, hosts=3)
    fleet = tmp_path / "few.jsonl"
    fleet.write_text(
        '{"id": "tcg", "machine": "q35", "qemu": "10.0.2"}\n'
        '{"id": "unaware", "machine": "pc-q35-10.0", "qemu": "10.0.2", "irqchip": "split"}\n'
        '{"id": "aware", "machine": "pc-q35-10.0", "qemu": "10.2", "seoib": "rfc-v2", '
        '"irqchip": "split"}\n'
        '{"id": "tcg-state", "machine": "q35", "qemu": "10.0.2", "state": "RESPECTED"}\n')
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 0
    rows = {r["vm"]: r for r in map(json.loads, capsys.readouterr().out.splitlines()[1:-1])}
    assert "error" not in rows["tcg"] and "error" not in rows["unaware"], rows
    assert "needs a state or a source_host" in rows["aware"]["error"]
    assert "has no SEOIB state" in rows["tcg-state"]["error"]


def test_fleet_usage_errors(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, 8, vms=3, hosts=2)
    for argv, needle in [
        (["--fleet", str(fleet)], "--fleet and --hosts go together"),
        (["--fleet", str(fleet), "--hosts", str(host_dir), "--dest", "linux-7.0/10.2"],
         "drop --dest"),
        (["--fleet", str(fleet), "--hosts", str(tmp_path / "none")], "hosts"),
        (["--fleet", str(tmp_path / "missing.jsonl"), "--hosts", str(host_dir)], "fleet"),
    ]:
        assert main(["preflight", *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, (argv, err)


def test_duplicate_host_names_are_refused(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, 9, vms=3, hosts=2)
    doc = json.loads((host_dir / "host-0.json").read_text())
    (host_dir / "copy.json").write_text(json.dumps(doc))
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 2
    assert "already defined" in capsys.readouterr().err
