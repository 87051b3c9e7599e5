"""Pre-flight for a whole fleet: every VM against every host, decided per class.

A fleet is many VMs and many hosts that mostly look alike.  The rules read
only a few fields of each (see :mod:`machines.preflight`), so VMs are
grouped into classes by exactly those fields (source QEMU build, machine
type as configured, irqchip, IOAPIC version, policy, and the SEOIB state or
the source host's kernel flags it is decided from) and hosts by theirs (QEMU
build, kernel flags).  Each pair of classes is judged once; the answer is
expanded to VMs and host ids only when it is written.

Input: ``VMS.jsonl``, one VM per line::

    {"id": "vm-1", "machine": "pc-q35-10.2", "irqchip": "split",
     "ioapic": "0x20", "state": "QUIRKED",
     "source_host": "h-17", "qemu": "10.2"}

(``id`` and ``machine`` required; ``state`` or ``source_host`` needed for a
KVM-LAPIC VM; ``"seoib": "rfc-v2"`` lays one of the SEOIB RFC's designs over
the VM's QEMU, as ``--seoib`` does.)  ``--hosts DIR``: one host profile per ``*.json`` file.

Output, streamed as JSON lines: a header naming the host classes and their
hosts, then per VM the host ids it can move to and, for each host class it
cannot move to (or only with warnings), the reasons once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any, NamedTuple

from machines.config import configure
from machines.errors import DataError, MachinesError
from machines.hostprofile import HostProfile, from_json
from machines.i386.seoib import KernelCaps, SeoibInputs, SeoibState, decide, inputs_from
from machines.options import parse_args
from machines.preflight import Reason, Source, Target, judge_target, source_from
from machines.registry import NEWEST, build_names, get_build
from machines.resolve import Resolver
from machines.schema import load_json

SCHEMA = "machines/fleet/v1"
FIELDS = ("id", "machine", "qemu", "irqchip", "ioapic", "policy", "state", "source_host",
          "seoib")


class Vm(NamedTuple):
    id: str
    machine: str
    qemu: str | None = None
    irqchip: str | None = None
    ioapic: int | None = None
    policy: str | None = None
    state: str | None = None
    source_host: str | None = None
    seoib: str | None = None  # the SEOIB design of the VM's QEMU (machines/i386/designs.py)
    line: int = 0  # its line in the VM list, for messages


class HostClass(NamedTuple):
    build: str  # the build's name
    enable: bool
    disable: bool


class VmClass(NamedTuple):
    qemu: str
    machine: str
    irqchip: str | None
    ioapic: int | None
    policy: str | None
    state: str | None
    source: HostClass | None  # only when the state is decided at power-on


def _vm_from(doc: Any, number: int, where: str) -> Vm:
    if not isinstance(doc, dict):
        raise DataError(f"{where}:{number}: a VM must be a JSON object")
    for key in ("id", "machine"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise DataError(f"{where}:{number}: field {key} must be a non-empty string")
    values: dict[str, Any] = {}
    for key in FIELDS[2:]:
        value = doc.get(key)
        if key == "ioapic" and value is not None:
            if isinstance(value, str):
                try:
                    value = int(value, 0)
                except ValueError:
                    raise DataError(f"{where}:{number}: field ioapic must be a number") from None
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"{where}:{number}: field ioapic must be a number")
        elif value is not None and not isinstance(value, str):
            raise DataError(f"{where}:{number}: field {key} must be a string")
        values[key] = value
    if values["irqchip"] not in (None, "on", "split", "off"):
        raise DataError(f"{where}:{number}: field irqchip must be on, split or off")
    if values["seoib"] is not None:
        from machines.i386.designs import parse_design

        try:
            values["seoib"] = parse_design(values["seoib"]).label
        except MachinesError as err:
            raise DataError(f"{where}:{number}: field seoib: {err}") from None
    if values["state"] is not None:
        try:
            values["state"] = SeoibState.parse(values["state"]).name
        except KeyError:
            raise DataError(f"{where}:{number}: field state must be QUIRKED, RESPECTED or "
                            "NOT_ADVERTISED") from None
    return Vm(doc["id"], doc["machine"], **values, line=number)


def read_vms(path: str) -> Iterator[Vm]:
    """The fleet's VMs in order; a bad line fails with its number."""
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the generator
    except OSError as err:
        raise DataError(f"fleet {path}: {err.strerror}") from None
    with fh:
        loads = json.loads
        seen: dict[str, int] = {}
        try:
            for number, line in enumerate(fh, 1):
                # One line, one JSON document: parsing lines joined together would be
                # faster, but would accept a VM split over two lines.
                if line.strip():
                    vm = _vm_from(loads(line), number, path)
                    first = seen.setdefault(vm.id, number)
                    if first != number:
                        raise DataError(f"{path}:{number}: VM id {vm.id!r} is already used on "
                                        f"line {first}")
                    yield vm
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not JSON ({err.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{number}: nested too deeply") from None
        except UnicodeDecodeError:
            raise DataError(f"{path}: not UTF-8 text") from None


def read_hosts(directory: str) -> list[HostProfile]:
    """One host profile per ``*.json`` file in ``directory``, in name order."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except OSError as err:
        raise DataError(f"hosts {directory}: {err.strerror}") from None
    if not names:
        raise DataError(f"hosts {directory}: no *.json host profiles")
    hosts = []
    seen: dict[str, str] = {}
    for name in names:
        path = os.path.join(directory, name)
        host = from_json(load_json(path, "host profile"), path)
        if host.name in seen:
            raise DataError(f"{path}: host {host.name!r} is already defined by {seen[host.name]}")
        seen[host.name] = path
        hosts.append(host)
    return hosts


def host_class(host: HostProfile) -> HostClass:
    return HostClass(host.build.name, host.kernel.has_enable_flag, host.kernel.has_disable_flag)


class ConfigKey(NamedTuple):
    """What the rules read of a VM's configuration (its class minus the state's origin)."""

    qemu: str
    machine: str
    irqchip: str | None
    ioapic: int | None
    policy: str | None


class _Configured(NamedTuple):
    source: Source  # with no state yet
    inputs: SeoibInputs


class _Judged(NamedTuple):
    blob: bytes  # the VM line after its id, pre-encoded
    ok: int
    warn: int
    blocked: int


class FleetRun:
    """Classes, decisions once per pair, and the expanded JSON lines."""

    def __init__(self, hosts: Iterable[HostProfile]) -> None:
        self.hosts = list(hosts)
        self.by_id = {h.name: h for h in self.hosts}
        self.host_classes: dict[HostClass, list[str]] = {}
        self.targets: dict[HostClass, Target] = {}
        for host in self.hosts:
            key = host_class(host)
            self.host_classes.setdefault(key, []).append(host.name)
            if key not in self.targets:
                self.targets[key] = Target(host.build, KernelCaps(
                    "the destination kernel", key.enable, key.disable))
        self.class_ids = {key: f"hc{i + 1}" for i, key in enumerate(self.host_classes)}
        self._judged: dict[VmClass, _Judged] = {}
        self._by_state: dict[tuple[ConfigKey, str | None], _Judged] = {}
        self._configs: dict[ConfigKey, _Configured] = {}
        self.pairs = 0

    def header(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "hosts": len(self.hosts), "host_classes": {
            self.class_ids[k]: {"qemu": k.build, "kernel_enable_flag": k.enable,
                                "kernel_disable_flag": k.disable, "hosts": ids}
            for k, ids in self.host_classes.items()}}

    def check(self, vms: Iterable[Vm], where: str) -> None:
        """Bad input found before any output: a source_host that is not a host."""
        for vm in vms:
            if vm.source_host is not None and vm.source_host not in self.by_id:
                raise DataError(f"{where}:{vm.line}: VM {vm.id}: source_host "
                                f"{vm.source_host!r} is not among the hosts")

    def vm_class(self, vm: Vm) -> VmClass:
        source = None
        qemu = vm.qemu
        if vm.source_host is not None:
            host = self.by_id.get(vm.source_host)
            if host is None:
                raise DataError(f"VM {vm.id}: source_host {vm.source_host!r} is not among "
                                "the hosts")
            qemu = qemu or host.build.name
            if vm.state is None:
                source = host_class(host)
        qemu = qemu or NEWEST
        if vm.seoib is not None:  # the VM's own word on its design wins over its host's
            from machines.i386.designs import split_build_name

            qemu = f"{split_build_name(qemu)[0]}+{vm.seoib}"
        return VmClass(qemu, vm.machine, vm.irqchip, vm.ioapic, vm.policy, vm.state, source)

    def judge(self, key: VmClass) -> _Judged:
        """A VM class's verdicts, through the (configuration, state) it amounts to."""
        judged = self._judged.get(key)
        if judged is None:
            try:
                config_key, state = self._decided(key)
            except MachinesError as err:
                judged = _Judged((', "error": ' + json.dumps(str(err)) + "}\n").encode(), 0, 0, 0)
            else:
                judged = self._by_state.get((config_key, state))
                if judged is None:
                    judged = self._by_state[(config_key, state)] = self._judge(config_key, state)
            self._judged[key] = judged
        return judged

    def _configured(self, key: ConfigKey) -> _Configured:
        """The source configuration, resolved once per distinct configuration."""
        found = self._configs.get(key)
        if found is None:
            qemu, machine, irqchip, ioapic, policy = key
            from machines.i386.designs import split_build_name

            if split_build_name(qemu)[0] not in build_names() and not os.path.exists(qemu):
                raise DataError(f"unknown QEMU build {qemu!r}")
            # No irqchip: a TCG VM (see the README's field table).
            accel = f"kvm,kernel-irqchip={irqchip}" if irqchip else "tcg"
            if policy is not None:
                accel += f",seoib-policy={policy}"
            args = ["-machine", machine, "-accel", accel]
            if ioapic is not None:
                args += ["-global", f"ioapic.version={ioapic:#x}"]
            config = configure(get_build(qemu), parse_args(args))
            resolver = Resolver(config)
            resolver.check_accel()
            base = source_from(config, None, "")
            found = self._configs[key] = _Configured(base, inputs_from(resolver))
        return found

    def _decided(self, key: VmClass) -> tuple[ConfigKey, str | None]:
        """The configuration and the SEOIB state a VM class amounts to."""
        config_key = ConfigKey(key.qemu, key.machine, key.irqchip, key.ioapic, key.policy)
        configured = self._configured(config_key)
        inputs = configured.inputs
        kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
        if key.state is not None and not kvm_lapic:
            raise DataError(f"state {key.state}: a VM without a KVM LAPIC ("
                            + ("TCG: no irqchip field" if not inputs.kvm
                               else "kernel-irqchip=off") + ") has no SEOIB state")
        if key.state is not None:
            return config_key, key.state
        if not kvm_lapic:
            return config_key, None
        if key.source is None:
            if not configured.source.config.build.seoib_aware:
                return config_key, SeoibState.QUIRKED.name  # an unaware QEMU never sets it
            raise DataError("needs a state or a source_host to decide its SEOIB state")
        decision = decide(inputs, KernelCaps("the source kernel", key.source.enable,
                                             key.source.disable))
        if decision.refused:
            raise DataError(f"would not power on: {decision.error}")
        return config_key, decision.state.name if decision.state else None

    def reasons(self, config_key: ConfigKey, state: str | None
                ) -> dict[HostClass, list[Reason]]:
        """Per host class, the reasons against the move (empty: it can go)."""
        base = self._configured(config_key).source
        source = base._replace(state=SeoibState[state] if state else None,
                               state_origin="the fleet's VM class")
        out = {}
        for host_key, target in self.targets.items():
            self.pairs += 1
            out[host_key] = judge_target(source, target)
        return out

    def _judge(self, config_key: ConfigKey, state: str | None) -> _Judged:
        result = self.reasons(config_key, state)
        movable: list[str] = []
        warnings: dict[str, list[dict[str, str]]] = {}
        blocked: dict[str, list[dict[str, str]]] = {}
        counts = [0, 0, 0]
        for host_key, reasons in result.items():
            ids = self.host_classes[host_key]
            as_json = [r.to_json() for r in reasons]
            if any(r.severity == "blocked" for r in reasons):
                blocked[self.class_ids[host_key]] = as_json
                counts[2] += len(ids)
                continue
            movable += ids
            if reasons:
                warnings[self.class_ids[host_key]] = as_json
                counts[1] += len(ids)
            else:
                counts[0] += len(ids)
        blob = (', "can_move_to": ' + json.dumps(movable) + ', "warnings": '
                + json.dumps(warnings) + ', "blocked": ' + json.dumps(blocked) + "}\n").encode()
        return _Judged(blob, *counts)

    def run(self, vms: Iterable[Vm], out: IO[bytes]) -> dict[str, int]:
        """Write the header and one line per VM; return totals."""
        out.write((json.dumps(self.header()) + "\n").encode())
        totals = {"vms": 0, "vm_classes": 0, "errors": 0, "ok": 0, "warn": 0, "blocked": 0}
        write = out.write
        for vm in vms:
            judged = self.judge(self.vm_class(vm))
            write(b'{"vm": ' + json.dumps(vm.id).encode() + judged.blob)
            totals["vms"] += 1
            totals["errors"] += not (judged.ok or judged.warn or judged.blocked)
            totals["ok"] += judged.ok
            totals["warn"] += judged.warn
            totals["blocked"] += judged.blocked
        totals["vm_classes"] = len(self._judged)
        totals["decided_classes"] = len(self._by_state)
        totals["class_pairs"] = self.pairs
        return totals
