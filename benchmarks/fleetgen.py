"""A synthetic fleet for ``machines preflight --fleet``: any size, seeded.

    python benchmarks/fleetgen.py --vms 100000 --hosts 1000 --seed 1 OUTDIR

writes ``OUTDIR/vms.jsonl`` and ``OUTDIR/hosts/hNNNN.json``.  The mix leans
the way real fleets do: most VMs on new q35 types with a split irqchip, a
tail of old types, aliases and explicit policies; hosts spread over the
model's QEMU releases and the three shipped kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from collections.abc import Sequence
from typing import Any

MACHINES = [("pc-q35-10.2", 25), ("pc-q35-10.1", 15), ("pc-q35-10.0", 15), ("pc-q35-9.2", 10),
            ("pc-i440fx-10.2", 8), ("pc-q35-8.2", 5), ("pc-i440fx-9.2", 5), ("pc-q35-7.2", 5),
            ("pc-i440fx-6.2", 4), ("pc-q35-5.0", 3), ("q35", 3), ("pc", 2)]
IRQCHIP = [("split", 60), ("on", 30), (None, 10)]
IOAPIC = [(None, 90), ("0x11", 5), ("0x20", 5)]
POLICY = [(None, 85), ("quirked", 7), ("respected", 5), ("not-advertised", 3)]
STATE = [("QUIRKED", 60), ("RESPECTED", 30), ("NOT_ADVERTISED", 10)]
QEMU = [("10.2", 50), ("10.1.2", 15), ("10.1", 10), ("10.0", 10), ("10.0.2", 15)]
KERNEL = [("linux-7.0", 40), ("linux-6.18.y-seoib", 20), ("linux-6.12", 40)]


def _pick(rng: random.Random, choices: Sequence[tuple[Any, int]]) -> Any:
    values, weights = zip(*choices, strict=True)
    return rng.choices(values, weights)[0]


def hosts(count: int, seed: int) -> list[dict[str, Any]]:
    from kvmglue.profile import shipped

    rng = random.Random(seed)
    kernels = {name: shipped(name).to_json() for name, _ in KERNEL}
    return [{"schema": "machines/host-profile/v1", "name": f"h{i:04d}",
             "kernel": kernels[_pick(rng, KERNEL)], "qemu": {"release": _pick(rng, QEMU)}}
            for i in range(1, count + 1)]


def vms(count: int, made_hosts: Sequence[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """VMs that run today: each on a host whose QEMU has its machine type (and policy)."""
    from machines.registry import get_build

    rng = random.Random(seed + 1)
    by_release: dict[str, list[str]] = {}
    for host in made_hosts:
        by_release.setdefault(host["qemu"]["release"], []).append(host["name"])
    out = []
    for i in range(1, count + 1):
        machine = _pick(rng, MACHINES)
        policy = _pick(rng, POLICY)
        releases = [r for r in by_release if get_build(r).find(machine) is not None
                    and (policy is None or get_build(r).seoib_aware)]
        if not releases:  # nowhere to run it: take a type every host has
            machine, policy = "pc-q35-9.2", None
            releases = list(by_release)
        vm: dict[str, Any] = {"id": f"vm{i:06d}", "machine": machine}
        for key, value in (("irqchip", _pick(rng, IRQCHIP)), ("ioapic", _pick(rng, IOAPIC)),
                           ("policy", policy)):
            if value is not None:
                vm[key] = value
        vm["source_host"] = rng.choice(by_release[rng.choice(sorted(releases))])
        if rng.random() < 0.4:
            vm["state"] = _pick(rng, STATE)
        out.append(vm)
    return out


def write(directory: str, vm_count: int, host_count: int, seed: int) -> tuple[str, str]:
    host_dir = os.path.join(directory, "hosts")
    os.makedirs(host_dir, exist_ok=True)
    made = hosts(host_count, seed)
    for host in made:
        with open(os.path.join(host_dir, f"{host['name']}.json"), "w", encoding="utf-8") as fh:
            json.dump(host, fh)
    fleet = os.path.join(directory, "vms.jsonl")
    with open(fleet, "w", encoding="utf-8") as fh:
        for vm in vms(vm_count, made, seed):
            fh.write(json.dumps(vm) + "\n")
    return fleet, host_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--vms", type=int, default=1000)
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("directory")
    args = p.parse_args()
    fleet, host_dir = write(args.directory, args.vms, args.hosts, args.seed)
    print(f"{fleet}: {args.vms} VMs; {host_dir}: {args.hosts} hosts")


if __name__ == "__main__":
    main()
