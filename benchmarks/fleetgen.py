"""A synthetic fleet for ``machines preflight --fleet``: any size, seeded.

    python benchmarks/fleetgen.py --vms 1000000 --hosts 10000 --seed 7 OUTDIR

writes ``OUTDIR/vms.jsonl`` (streamed: any size fits) and ``OUTDIR/hosts/hNNNNN.json``,
and prints how many host classes and VM classes (as ``preflight --fleet``
forms them) it made.  The mix leans the way a region does: hosts on every
QEMU build this tool ships (the model's releases 10.0 to 11.1 and the real
5.2, 7.2, 10.0.2, 10.0.13 and 11.1.3), some model releases with one of the
SEOIB RFC's designs laid over them, a few hosts with their own imported
builds, and the three shipped kernels; VMs mostly on new q35 types with a
split irqchip, a tail of old types, aliases, explicit policies and designs.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any

MACHINES = [("pc-q35-11.1", 12), ("pc-q35-11.0", 10), ("pc-q35-10.2", 15), ("pc-q35-10.1", 10),
            ("pc-q35-10.0", 10), ("pc-q35-9.2", 8), ("pc-i440fx-10.2", 6), ("pc-q35-8.2", 4),
            ("pc-i440fx-9.2", 4), ("pc-q35-7.2", 5), ("pc-i440fx-6.2", 4), ("pc-q35-5.2", 3),
            ("pc-q35-5.0", 2), ("pc-i440fx-5.2", 2), ("q35", 3), ("pc", 2)]
IRQCHIP = [("split", 60), ("on", 30), (None, 10)]
IOAPIC = [(None, 90), ("0x11", 5), ("0x20", 5)]
POLICY = [(None, 85), ("quirked", 7), ("respected", 5), ("not-advertised", 3)]
STATE = [("QUIRKED", 60), ("RESPECTED", 30), ("NOT_ADVERTISED", 10)]
# Every shipped build: the model's releases and the imported real ones.
QEMU = [("11.1", 14), ("11.0", 10), ("10.2.2", 8), ("10.2", 12), ("10.1.2", 6), ("10.1", 5),
        ("10.0", 4), ("10.0.2", 10), ("10.0.13", 10), ("11.1.3", 10), ("7.2", 6), ("5.2", 4)]
MODEL = ("10.0", "10.1", "10.1.2", "10.2", "10.2.2", "11.0", "11.1")
DESIGN = [(None, 70), ("rfc-v2", 10), ("gated", 8), ("gated:11.0", 4), ("opt-in", 8)]
KERNEL = [("linux-7.0", 45), ("linux-6.18.y-seoib", 20), ("linux-6.12", 35)]
# Hosts that run a build of their own, embedded in the profile ("qemu": {"import": ...}):
# a local point release and a rebuild of a shipped one, each from a shipped import file.
IMPORTS = [("10.0.13", "10.0.14", "local 1:10.0.14+ds-0+site1"),
           ("11.1.3", "11.1.3", "local rebuild 1:11.1.3+ds-1+site2")]
IMPORTED_SHARE = 0.003


class _Picker:
    """``random.choices`` for one value, without rebuilding the weights every call."""

    def __init__(self, choices: Sequence[tuple[Any, int]]) -> None:
        self.values = [v for v, _ in choices]
        self.cum = list(itertools.accumulate(w for _, w in choices))

    def __call__(self, rng: random.Random) -> Any:
        return self.values[bisect.bisect_right(self.cum, rng.random() * self.cum[-1])]


def _import_doc(shipped: str, version: str, package: str) -> dict[str, Any]:
    from machines.registry import IMPORTED

    with open(IMPORTED[shipped], encoding="utf-8") as fh:
        doc = json.load(fh)
    doc["qemu"] = {**doc["qemu"], "version": version, "package": package}
    return doc  # type: ignore[no-any-return]


def hosts(count: int, seed: int) -> list[dict[str, Any]]:
    from kvmglue.profile import shipped

    rng = random.Random(seed)
    kernels = {name: shipped(name).to_json() for name, _ in KERNEL}
    imports = [_import_doc(*spec) for spec in IMPORTS]
    pick_qemu, pick_design, pick_kernel = _Picker(QEMU), _Picker(DESIGN), _Picker(KERNEL)
    out = []
    for i in range(1, count + 1):
        kernel = kernels[pick_kernel(rng)]
        if rng.random() < IMPORTED_SHARE:
            qemu: dict[str, Any] = {"import": imports[rng.randrange(len(imports))]}
        else:
            qemu = {"release": pick_qemu(rng)}
            design = pick_design(rng) if qemu["release"] in MODEL else None
            if design is not None:
                qemu["seoib"] = design
        out.append({"schema": "machines/host-profile/v1", "name": f"h{i:05d}",
                    "kernel": kernel, "qemu": qemu})
    return out


def _base_name(host: dict[str, Any]) -> str:
    """The shipped build a host's QEMU is (or is imported from), for the VM mix."""
    qemu = host["qemu"]
    if "import" in qemu:
        return {v: s for s, v, _ in IMPORTS}[qemu["import"]["qemu"]["version"]]
    return str(qemu["release"])


def vms(count: int, made_hosts: Sequence[dict[str, Any]], seed: int
        ) -> Iterator[dict[str, Any]]:
    """VMs that run today: each on a host whose QEMU has its machine type (and policy)."""
    from machines.registry import get_build

    rng = random.Random(seed + 1)
    by_release: dict[str, list[str]] = {}
    for host in made_hosts:
        by_release.setdefault(_base_name(host), []).append(host["name"])
    runs: dict[tuple[str, bool], list[str]] = {}  # (machine, policy given) -> releases
    pick_machine, pick_policy = _Picker(MACHINES), _Picker(POLICY)
    pick_irqchip, pick_ioapic, pick_state = _Picker(IRQCHIP), _Picker(IOAPIC), _Picker(STATE)
    pick_design = _Picker(DESIGN[1:])
    for i in range(1, count + 1):
        machine = pick_machine(rng)
        policy = pick_policy(rng)
        key = (machine, policy is not None)
        releases = runs.get(key)
        if releases is None:
            releases = runs[key] = sorted(
                r for r in by_release if get_build(r).find(machine) is not None
                and (policy is None or get_build(r).seoib_aware))
        if not releases:  # nowhere to run it: take a type every host has
            machine, policy = "pc-q35-5.2", None
            releases = sorted(by_release)
        vm: dict[str, Any] = {"id": f"vm{i:07d}", "machine": machine}
        for field, value in (("irqchip", pick_irqchip(rng)), ("ioapic", pick_ioapic(rng)),
                             ("policy", policy)):
            if value is not None:
                vm[field] = value
        release = releases[rng.randrange(len(releases))]
        names = by_release[release]
        vm["source_host"] = names[rng.randrange(len(names))]
        if rng.random() < 0.4:
            vm["state"] = pick_state(rng)
        if rng.random() < 0.05:
            vm["qemu"] = release  # said explicitly, as some inventories do
        if rng.random() < 0.03 and release in MODEL:
            vm["seoib"] = pick_design(rng)
        yield vm


def write(directory: str, vm_count: int, host_count: int, seed: int) -> tuple[str, str]:
    host_dir = os.path.join(directory, "hosts")
    os.makedirs(host_dir, exist_ok=True)
    made = hosts(host_count, seed)
    for host in made:
        with open(os.path.join(host_dir, f"{host['name']}.json"), "w", encoding="utf-8") as fh:
            json.dump(host, fh)
    fleet = os.path.join(directory, "vms.jsonl")
    dumps = json.dumps
    with open(fleet, "w", encoding="utf-8") as fh:
        batch: list[str] = []
        for vm in vms(vm_count, made, seed):
            batch.append(dumps(vm))
            if len(batch) >= 10_000:
                fh.write("\n".join(batch) + "\n")
                batch.clear()
        if batch:
            fh.write("\n".join(batch) + "\n")
    return fleet, host_dir


def classes(fleet: str, host_dir: str) -> tuple[int, int]:
    """How many host classes and VM classes ``preflight --fleet`` forms from the fleet."""
    from machines.fleet import FleetRun, read_hosts

    run = FleetRun(read_hosts(host_dir))
    run.read(fleet)
    return len(run.host_classes), len(run.vm_classes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("directory")
    args = p.parse_args()
    fleet, host_dir = write(args.directory, args.vms, args.hosts, args.seed)
    host_classes, vm_classes = classes(fleet, host_dir)
    print(f"{fleet}: {args.vms} VMs in {vm_classes} VM classes; "
          f"{host_dir}: {args.hosts} hosts in {host_classes} host classes")


if __name__ == "__main__":
    main()
