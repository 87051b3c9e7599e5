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


def vm_args(vm: dict[str, Any]) -> list[str]:
    """A fleet VM line as the QEMU arguments it stands for (README, fleet fields)."""
    accel = f"kvm,kernel-irqchip={vm['irqchip']}" if "irqchip" in vm else "tcg"
    if "policy" in vm:
        accel += f",seoib-policy={vm['policy']}"
    args = ["-machine", vm["machine"], "-accel", accel]
    if "ioapic" in vm:
        version = vm["ioapic"] if isinstance(vm["ioapic"], int) else int(vm["ioapic"], 0)
        args += ["-global", f"ioapic.version={version:#x}"]
    return args


def _per_pair(vm: dict[str, Any], hosts: dict[str, Any]) -> dict[str, Any] | str:
    """One VM against every host, directly, without any grouping."""
    source_host = hosts[vm["source_host"]]
    name = vm.get("qemu") or source_host.build.name
    if "seoib" in vm:
        name = f"{name.split('+')[0]}+{vm['seoib']}"
    build = get_build(name)
    args = vm_args(vm)
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
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--expand-hosts"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    header, rows, summary = lines[0], lines[1:-1], lines[-1]
    assert header["schema"] == "machines/fleet/v2" and "summary" in summary
    assert header["form"] == "hosts"
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


def read_class_form(text: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]],
                                         list[dict[str, Any]], dict[str, Any]]:
    """The class form read back: header, outcomes with their reasons inlined, VM lines,
    totals."""
    lines = [json.loads(line) for line in text.splitlines()]
    header, totals = lines[0], lines[-1]["summary"]
    reasons = {line.pop("reason"): line for line in lines if "reason" in line}
    outcomes = {}
    for line in lines:
        if "outcome" in line and "vm" not in line:
            for key in ("warnings", "blocked"):
                if key in line:
                    line[key] = {hc: [reasons[r] for r in refs] for hc, refs in line[key].items()}
            outcomes[line["outcome"]] = line
    vms = [line for line in lines if "vm" in line]
    return header, outcomes, vms, totals


@pytest.mark.parametrize("seed", [1, 4])
def test_class_form_says_what_the_per_host_form_says(tmp_path: Path, seed: int,
                                                     capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, seed, vms=200, hosts=30)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 0
    header, outcomes, vms, totals = read_class_form(capsys.readouterr().out)
    assert header["schema"] == "machines/fleet/v2" and header["form"] == "classes"
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--expand-hosts"]) == 0
    per_host = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert per_host[0]["host_classes"] == header["host_classes"]
    classes = header["host_classes"]
    assert sum(len(c["hosts"]) for c in classes.values()) == header["hosts"] == 30
    for c in classes.values():  # what defines the class
        assert {"qemu", "seoib", "kernel_enable_flag", "kernel_disable_flag", "kernels"} <= set(c)
    assert [v["vm"] for v in vms] == [r["vm"] for r in per_host[1:-1]]
    for vm, row in zip(vms, per_host[1:-1], strict=True):
        outcome = outcomes[vm["outcome"]]
        assert vm["verdict"] == outcome["verdict"]
        if "error" in row:
            assert outcome == {"outcome": vm["outcome"], "verdict": "error",
                               "error": row["error"]}
            continue
        hosts = [h for hc in outcome["can_move_to"] for h in classes[hc]["hosts"]]
        assert sorted(hosts) == sorted(row["can_move_to"])
        assert outcome["warnings"] == row["warnings"] and outcome["blocked"] == row["blocked"]
        expected = ("nowhere" if not hosts else "limited" if row["blocked"] else
                    "warn" if row["warnings"] else "ok")
        assert vm["verdict"] == expected
    assert totals["vms"] == 200 == sum(totals["verdicts"].values())
    assert per_host[-1]["summary"] == totals

def _cli_reference(vm: dict[str, Any], host_dir: Path, hosts: dict[str, Any],
                   capsys: Any) -> dict[str, list[str]] | None:
    """One VM through the single-VM command, 'machines preflight --json', to every host.

    Independent of the fleet code: no grouping, no host classes, the CLI's own source
    reading (--release, --seoib, --source-host, --source-state, QEMU arguments).  None
    when the command refuses the VM (exit 2, one line); an exception fails the test.
    """
    args = vm_args(vm)
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
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--expand-hosts"]) == 0
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
    _, outcomes, vms, _ = read_class_form(capsys.readouterr().out)
    rows = {v["vm"]: outcomes[v["outcome"]] for v in vms}
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
        (["--dest", "linux-7.0/10.2", "--summary", "md", "-M", "q35"],
         "--summary go with --fleet and --hosts"),
        (["--dest", "linux-7.0/10.2", "--expand-hosts", "-M", "q35"], "--expand-hosts go with"),
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


# -- the summary ----------------------------------------------------------------------------

def known_fleet(directory: Path) -> tuple[Path, Path]:
    """Hosts and VMs whose summary is known: one VM stuck, one that a restart frees."""
    from machines.hostprofile import from_spec, host_profile_json

    host_dir = directory / "hosts"
    host_dir.mkdir()
    for name, spec in [("old-kernel", "linux-6.12/10.2+opt-in"),
                       ("new-kernel", "linux-7.0/10.2+opt-in"),
                       ("new-kernel-2", "linux-7.0/10.2+opt-in")]:
        host = from_spec(spec)
        (host_dir / f"{name}.json").write_text(json.dumps(
            host_profile_json(name, host.kernel, host.qemu)))
    fleet = directory / "vms.jsonl"
    fleet.write_text(
        '{"id": "respected", "machine": "pc-q35-10.2", "qemu": "10.2", "seoib": "opt-in", '
        '"irqchip": "split", "policy": "respected", "state": "RESPECTED"}\n'
        '{"id": "quirked", "machine": "pc-q35-10.2", "irqchip": "split", '
        '"source_host": "old-kernel"}\n'
        '{"id": "too-new", "machine": "pc-q35-11.1", "qemu": "11.1", "irqchip": "on", '
        '"state": "QUIRKED"}\n'
        '{"id": "tcg", "machine": "pc-q35-10.2", "qemu": "10.2"}\n'
        '{"id": "broken", "machine": "pc-q35-10.2", "qemu": "10.2", "state": "QUIRKED"}\n')
    return fleet, host_dir


def test_summary_of_a_known_fleet(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = known_fleet(tmp_path)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--summary", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["schema"] == "machines/fleet-summary/v1"
    assert summary["verdicts"] == {"ok": 2, "warn": 0, "limited": 1, "nowhere": 1, "error": 1}
    assert len(summary["host_classes"]) == 2  # the two new-kernel hosts are one class
    assert summary["nowhere"]["vms"] == 1
    assert summary["nowhere"]["classes"][0]["examples"] == ["too-new"]
    assert summary["nowhere"]["classes"][0]["codes"] == ["machine-type-unknown"]
    restart = summary["need_restart"]
    assert restart["vms"] == 1 and restart["classes"][0]["examples"] == ["respected"]
    assert "seoib-policy=quirked" in restart["classes"][0]["how"]
    codes = {e["code"]: e for e in summary["top_blocking_reasons"]}
    assert codes["machine-type-unknown"]["vms"] == 1
    assert codes["seoib-kernel-api-missing"]["examples"] == ["respected"]
    refusing = {e["host_class"]: e for e in summary["host_classes_refusing"]}
    old = next(n for n, c in summary["host_classes"].items() if c["kernels"] == ["linux-6.12"])
    assert refusing[old]["vms"] == 2 and refusing[old]["vm_classes"] == 2
    # md: the same, for people; and --summary-output writes it next to the JSON lines
    md = tmp_path / "summary.md"
    out = tmp_path / "lines.jsonl"
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir), "-o", str(out),
                 "--summary", "md", "--summary-output", str(md)]) == 0
    text = md.read_text()
    assert "# Fleet pre-flight summary: 5 VMs" in text and "| nowhere | 1 |" in text
    assert "## VMs that need a restart (a policy change) to stay movable: 1" in text
    assert read_class_form(out.read_text())[3]["verdicts"] == summary["verdicts"]


def test_summary_agrees_with_the_lines(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = random_fleet(tmp_path, 5, vms=300, hosts=20)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir)]) == 0
    _, outcomes, vms, totals = read_class_form(capsys.readouterr().out)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--summary", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["verdicts"] == totals["verdicts"]
    stuck = {v["vm"] for v in vms if v["verdict"] == "nowhere"}
    assert summary["nowhere"]["vms"] == len(stuck)
    assert {x for c in summary["nowhere"]["classes"] for x in c["examples"]} <= stuck
    for entry in summary["top_blocking_reasons"]:
        blocked = {v["vm"] for v in vms if any(
            r["code"] == entry["code"]
            for rs in outcomes[v["outcome"]].get("blocked", {}).values() for r in rs)}
        assert entry["vms"] == len(blocked) and set(entry["examples"]) <= blocked


def test_summary_output_needs_summary(tmp_path: Path, capsys: Any) -> None:
    fleet, host_dir = known_fleet(tmp_path)
    assert main(["preflight", "--fleet", str(fleet), "--hosts", str(host_dir),
                 "--summary-output", str(tmp_path / "x.md")]) == 2
    assert "--summary-output needs --summary" in capsys.readouterr().err


# -- streaming ------------------------------------------------------------------------------

def test_a_vm_list_larger_than_memory_use_streams(tmp_path: Path) -> None:
    """Memory grows with the ids, not with the lines: 100 MB of VM list, a few MB held."""
    import tracemalloc

    from machines.fleet import FleetRun, read_hosts

    _, host_dir = random_fleet(tmp_path, 11, vms=1, hosts=4)
    fleet = tmp_path / "big.jsonl"
    pad = "x" * 4000  # fields the rules do not read: an inventory's notes
    with fleet.open("w") as fh:
        for i in range(25_000):
            fh.write(json.dumps({"id": f"vm-{i}", "machine": "pc-q35-10.2", "qemu": "10.2",
                                 "irqchip": "split", "state": "QUIRKED", "notes": pad}) + "\n")
    size = fleet.stat().st_size
    assert size > 100_000_000
    run = FleetRun(read_hosts(str(host_dir)))
    tracemalloc.start()
    try:
        run.read(str(fleet))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(run.ids) == 25_000 and len(run.vm_classes) == 1
    assert peak < size / 20, (peak, size)


def test_vms_from_a_generator(tmp_path: Path) -> None:
    """``FleetRun.add`` takes any iterable: nothing but ids and class numbers is kept."""
    import io

    from machines.errors import DataError
    from machines.fleet import FleetRun, Vm, read_hosts

    _, host_dir = random_fleet(tmp_path, 12, vms=1, hosts=3)
    run = FleetRun(read_hosts(str(host_dir)))
    run.add((Vm(f"g{i}", "pc-q35-10.2", "10.2", "on", state="QUIRKED", line=i + 1)
             for i in range(50_000)), "generated")
    out = io.BytesIO()
    totals = run.write(out)
    assert totals["vms"] == 50_000 and totals["vm_classes"] == 1
    assert len(out.getvalue()) / 50_000 < 80
    with pytest.raises(DataError, match="generated:3: VM id 'g0' is already used"):
        run.add([Vm("g0", "pc-q35-10.2", line=3)], "generated")


def test_equal_but_different_fields_are_checked_each(tmp_path: Path) -> None:
    """The reader remembers lines by their fields as written: 17.0 and true equal 17 in
    Python, and must still be refused after a line with 17 was taken."""
    from machines.errors import DataError
    from machines.fleet import FleetRun

    for bad in ("17.0", "true"):
        fleet = tmp_path / "vms.jsonl"
        fleet.write_text('{"id": "a", "machine": "q35", "ioapic": 17}\n'
                         f'{{"id": "b", "machine": "q35", "ioapic": {bad}}}\n')
        with pytest.raises(DataError, match=f"{fleet}:2: field ioapic must be a number"):
            FleetRun([]).read(str(fleet))
