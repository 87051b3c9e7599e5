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

Output (``machines/fleet/v2``), JSON lines: a header naming each host class
once with its hosts and what defines it; by default (the class form) each
reason and each outcome (per host class: can move, warnings, blocked, with
reason ids) once, then one short line per VM naming its verdict and outcome;
with ``expand_hosts`` (the per-host form, for small fleets) one line per VM
with the host ids it can move to and the reasons per host class inline.

Memory grows with the VMs only by their ids (kept for the duplicate check and
the output) and one class number each; a line is parsed and dropped.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from json.encoder import encode_basestring_ascii
from typing import IO, Any, NamedTuple

from machines.build import Build
from machines.config import configure
from machines.errors import DataError, MachinesError
from machines.hostprofile import HostProfile, from_json
from machines.i386.seoib import KernelCaps, SeoibInputs, SeoibState, decide, inputs_from
from machines.options import parse_args
from machines.preflight import (
    Reason,
    Source,
    Static,
    Target,
    destination_options,
    source_from,
    target_static,
)
from machines.preflight import _seoib as seoib_reasons
from machines.registry import NEWEST, build_names, get_build
from machines.resolve import Resolver
from machines.schema import load_json

SCHEMA = "machines/fleet/v2"
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
    build: Build  # by identity: an imported build is not the shipped one of its name
    enable: bool
    disable: bool


class VmClass(NamedTuple):
    qemu: str | None  # the build the VM names
    base: Build | None  # else its source host's build (else the model's newest)
    machine: str
    irqchip: str | None
    ioapic: int | None
    policy: str | None
    state: str | None
    source: HostClass | None  # only when the state is decided at power-on
    seoib: str | None


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


def _line_error(err: Exception, path: str, number: int) -> DataError:
    """What a VM list's unreadable line is, in one line naming it."""
    if isinstance(err, json.JSONDecodeError):
        return DataError(f"{path}:{number}: not JSON ({err.msg})")
    if isinstance(err, RecursionError):
        return DataError(f"{path}:{number}: nested too deeply")
    return DataError(f"{path}: not UTF-8 text")


def read_vms(path: str) -> Iterator[Vm]:
    """The fleet's VMs in order; a bad line fails with its number."""
    try:
        fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the generator
    except OSError as err:
        raise DataError(f"fleet {path}: {err.strerror}") from None
    with fh:
        loads = json.loads
        seen: dict[str, int] = {}
        number = 0
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
        except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as err:
            raise _line_error(err, path, number) from None


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
    memo: dict[str, Any] = {}  # hosts share kernel profiles and imported builds
    for name in names:
        path = os.path.join(directory, name)
        host = from_json(load_json(path, "host profile"), path, memo)
        if host.name in seen:
            raise DataError(f"{path}: host {host.name!r} is already defined by {seen[host.name]}")
        seen[host.name] = path
        hosts.append(host)
    return hosts


def host_class(host: HostProfile) -> HostClass:
    return HostClass(host.build, host.kernel.has_enable_flag, host.kernel.has_disable_flag)


class ConfigKey(NamedTuple):
    """What the rules read of a VM's configuration (its class minus the state's origin)."""

    build: Build
    machine: str
    irqchip: str | None
    ioapic: int | None
    policy: str | None


Decided = tuple[ConfigKey, "str | None"]
VERDICTS = ("ok", "warn", "limited", "nowhere", "error")


class _Configured(NamedTuple):
    source: Source  # with no state yet
    inputs: SeoibInputs


class Outcome(NamedTuple):
    """What one decided VM class gets on every host class (or why it cannot be judged)."""

    verdict: str  # one of VERDICTS
    reasons: dict[HostClass, list[Reason]]  # every host class, in class order
    error: str | None = None
    blocked: frozenset[HostClass] = frozenset()  # the host classes it cannot move to
    pairs: tuple[int, int, int] = (0, 0, 0)  # hosts it can move to (ok, warn), blocked


def _label(build: Build) -> str:
    """A build as the output names it: an imported build says so."""
    try:
        if get_build(build.name) is build:
            return build.name
    except MachinesError:
        pass
    return f"{build.name} (imported)"


class FleetRun:
    """Host classes, the VMs read into classes, a decision once per pair of classes.

    ``read`` (or ``add``) takes the VMs in one streaming pass and keeps only each
    VM's id and class number; ``write`` judges every class pair and writes the
    answer.  Bad input raises from ``read`` before anything is written.
    """

    def __init__(self, hosts: Iterable[HostProfile]) -> None:
        self.hosts = list(hosts)
        self.by_id = {h.name: h for h in self.hosts}
        self.host_classes: dict[HostClass, list[str]] = {}
        self.kernels: dict[HostClass, set[str]] = {}
        self.targets: dict[HostClass, Target] = {}
        self._source_class: dict[str, HostClass] = {}
        for host in self.hosts:
            key = host_class(host)
            self._source_class[host.name] = key
            self.host_classes.setdefault(key, []).append(host.name)
            self.kernels.setdefault(key, set()).add(host.kernel.name)
            if key not in self.targets:
                self.targets[key] = Target(host.build, KernelCaps(
                    "the destination kernel", key.enable, key.disable))
        self.class_ids = {key: f"hc{i + 1}" for i, key in enumerate(self.host_classes)}
        self._sizes = {key: len(ids) for key, ids in self.host_classes.items()}
        labels: dict[Build, str] = {}
        for key in self.host_classes:
            if key.build not in labels:
                label = _label(key.build)
                n = sum(1 for v in labels.values() if v == label or v.startswith(label + " #"))
                labels[key.build] = f"{label} #{n + 1}" if n else label
        self.labels = labels
        # The VMs, as read: their ids in input order and each one's class number.
        self.ids: list[str] = []
        self.vm_classes: list[VmClass] = []
        self.class_of: array[int] = array("I")
        self._class_index: dict[VmClass, int] = {}
        self._raw: dict[tuple[Any, ...], int] = {}  # a line's fields as written -> class
        self._seen: set[str] = set()
        self._configs: dict[ConfigKey, _Configured] = {}
        self._outcomes: dict[Decided, Outcome] = {}
        self._by_index: list[Outcome] = []
        self._statics: dict[tuple[ConfigKey, Build], tuple[Static, list[Reason], bool]] = {}
        self._seoibs: dict[tuple[Any, ...], tuple[Reason, ...]] = {}
        self.pairs = 0

    # -- reading ----------------------------------------------------------------------

    def header(self, form: str = "classes") -> dict[str, Any]:
        classes = {}
        for key, ids in self.host_classes.items():
            design = getattr(key.build, "design", None)
            classes[self.class_ids[key]] = {
                "qemu": self.labels[key.build],
                "seoib": design.label if design is not None else "none",
                "kernel_enable_flag": key.enable, "kernel_disable_flag": key.disable,
                "kernels": sorted(self.kernels[key]), "hosts": ids}
        return {"schema": SCHEMA, "form": form, "hosts": len(self.hosts),
                "host_classes": classes}

    def vm_class(self, vm: Vm, where: str = "") -> VmClass:
        source = None
        base = None
        if vm.source_host is not None:
            key = self._source_class.get(vm.source_host)
            if key is None:
                at = f"{where}:{vm.line}: " if where else ""
                raise DataError(f"{at}VM {vm.id}: source_host {vm.source_host!r} is not among "
                                "the hosts")
            if vm.qemu is None:
                base = key.build
            if vm.state is None:
                source = key
        return VmClass(vm.qemu, base, vm.machine, vm.irqchip, vm.ioapic, vm.policy, vm.state,
                       source, vm.seoib)

    def _index(self, key: VmClass) -> int:
        index = self._class_index.get(key)
        if index is None:
            index = self._class_index[key] = len(self.vm_classes)
            self.vm_classes.append(key)
        return index

    def _take(self, vm_id: str, index: int, number: int, where: str) -> None:
        seen = self._seen
        size = len(seen)
        seen.add(vm_id)
        if len(seen) == size:
            first = _first_line(where, vm_id) if where and os.path.exists(where) else None
            raise DataError(f"{where}:{number}: VM id {vm_id!r} is already used"
                            + (f" on line {first}" if first else ""))
        self.ids.append(vm_id)
        self.class_of.append(index)

    def add(self, vms: Iterable[Vm], where: str = "") -> None:
        """Take VMs from any iterable (a generator does: nothing but ids is kept)."""
        for vm in vms:
            self._take(vm.id, self._index(self.vm_class(vm, where)), vm.line, where)

    def read(self, path: str) -> None:
        """Take a VM list in one streaming pass; a bad line raises naming file and line.

        Each line is parsed with ``json.loads``; the fields the rules read, as written,
        key a memo of the line's class, so a line like one seen before costs a tuple
        and a dict lookup.  Only a new combination goes through the field checks.
        """
        try:
            fh = open(path, encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as err:
            raise DataError(f"fleet {path}: {err.strerror}") from None
        with _no_gc():
            self._read(fh, path)

    def _read(self, fh: IO[str], path: str) -> None:
        loads = json.loads
        raw = self._raw
        source_of: dict[str | None, HostClass | None] = {None: None}
        source_of.update(self._source_class)
        seen = self._seen
        seen_add = seen.add
        ids_append = self.ids.append
        class_append = self.class_of.append
        number = 0
        with fh:
            try:
                for number, line in enumerate(fh, 1):
                    try:
                        doc = loads(line)
                    except ValueError:
                        if line.isspace():
                            continue
                        raise
                    try:
                        vm_id = doc["id"]
                        get = doc.get
                        ioapic = get("ioapic")
                        # type(ioapic): 17, 17.0 and true are equal keys but not all valid
                        # the source host by its class: many hosts, few classes
                        index = raw[(get("machine"), get("qemu"), get("irqchip"), ioapic,
                                     ioapic.__class__, get("policy"), get("state"),
                                     source_of[get("source_host")], get("seoib"))]
                        if vm_id.__class__ is not str or not vm_id:
                            raise KeyError
                    except (KeyError, TypeError, AttributeError):
                        index = self._slow(doc, number, path)
                        vm_id = doc["id"]
                    size = len(seen)
                    seen_add(vm_id)
                    if len(seen) == size:
                        self._take(vm_id, index, number, path)  # raises: a duplicate
                    ids_append(vm_id)
                    class_append(index)
            except (json.JSONDecodeError, RecursionError, UnicodeDecodeError) as err:
                raise _line_error(err, path, number) from None

    def _slow(self, doc: Any, number: int, path: str) -> int:
        """A line with fields not seen before: checked, classed and remembered."""
        vm = _vm_from(doc, number, path)
        index = self._index(self.vm_class(vm, path))
        get = doc.get
        ioapic = get("ioapic")
        source = vm.source_host
        self._raw[(get("machine"), get("qemu"), get("irqchip"), ioapic, ioapic.__class__,
                   get("policy"), get("state"), source and self._source_class[source],
                   get("seoib"))] = index
        return index

    # -- judging ----------------------------------------------------------------------

    def outcome(self, key: VmClass) -> Outcome:
        try:
            decided = self.decided(key)
        except MachinesError as err:
            return Outcome("error", {}, str(err))
        return self.judge(decided)

    def judge(self, decided: Decided) -> Outcome:
        found = self._outcomes.get(decided)
        if found is None:
            reasons, blocked = self._reasons(*decided)
            sizes = self._sizes
            pairs = [0, 0, 0]
            for key, rs in reasons.items():
                pairs[2 if key in blocked else 1 if rs else 0] += sizes[key]
            if len(blocked) == len(reasons):
                verdict = "nowhere"
            elif blocked:
                verdict = "limited"
            elif pairs[1]:
                verdict = "warn"
            else:
                verdict = "ok"
            found = self._outcomes[decided] = Outcome(verdict, reasons, None, blocked,
                                                      (pairs[0], pairs[1], pairs[2]))
        return found

    def _build(self, key: VmClass) -> Build:
        from machines.i386.designs import DesignBuild, overlay, parse_design, split_build_name

        if key.qemu is not None:
            if split_build_name(key.qemu)[0] not in build_names() \
                    and not os.path.exists(key.qemu):
                raise DataError(f"unknown QEMU build {key.qemu!r}")
            build = get_build(key.qemu)
        else:
            build = key.base or get_build(NEWEST)
        if key.seoib is not None:  # the VM's own word on its design wins over its host's
            if isinstance(build, DesignBuild):
                build = build.base
            build = overlay(build, parse_design(key.seoib))
        return build

    def _configured(self, key: ConfigKey) -> _Configured:
        """The source configuration, resolved once per distinct configuration."""
        found = self._configs.get(key)
        if found is None:
            build, machine, irqchip, ioapic, policy = key
            # No irqchip: a TCG VM (see the README's field table).
            accel = f"kvm,kernel-irqchip={irqchip}" if irqchip else "tcg"
            if policy is not None:
                accel += f",seoib-policy={policy}"
            args = ["-machine", machine, "-accel", accel]
            if ioapic is not None:
                args += ["-global", f"ioapic.version={ioapic:#x}"]
            config = configure(build, parse_args(args))
            resolver = Resolver(config)
            resolver.check_accel()
            base = source_from(config, None, "")
            found = self._configs[key] = _Configured(base, inputs_from(resolver))
        return found

    def decided(self, key: VmClass) -> Decided:
        """The configuration and the SEOIB state a VM class amounts to."""
        config_key = ConfigKey(self._build(key), key.machine, key.irqchip, key.ioapic,
                               key.policy)
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
        return self._reasons(config_key, state)[0]

    def _reasons(self, config_key: ConfigKey, state: str | None
                 ) -> tuple[dict[HostClass, list[Reason]], frozenset[HostClass]]:
        """:meth:`reasons`, and the host classes where one of them blocks."""
        base = self._configured(config_key).source
        source = base._replace(state=SeoibState[state] if state else None,
                               state_origin="the fleet's VM class")
        # judge_target, in its parts: what the configuration and the destination's build
        # decide (once per pair), and the SEOIB reasons, which read only the state, the
        # designs, the irqchips and the destination kernel's flags.  The lists are shared
        # between outcomes: nothing changes them.
        statics = self._statics
        seoibs = self._seoibs
        # The policy is not part of it: the destination is configured without one.
        static_key = config_key._replace(policy=None)
        dest_opts = None
        stateful = state not in (None, "QUIRKED") and source.kernel_irqchip == "split"
        out = {}
        blocked = []
        self.pairs += len(self.targets)
        for host_key, target in self.targets.items():
            entry = statics.get((static_key, target.build))
            if entry is None:
                if dest_opts is None:
                    dest_opts = destination_options(source, None)
                static = target_static(source, target.build, dest_opts=dest_opts)
                plain = list(static.before) if static.final else [*static.before,
                                                                  *static.after]
                entry = statics[(static_key, target.build)] = (static, plain, _blocks(plain))
            static, plain, plain_blocks = entry
            if stateful and not static.final:
                key = (config_key.build, state, target.build, static.irqchip, host_key.enable,
                       host_key.disable)
                seoib = seoibs.get(key)
                if seoib is None:
                    seoib = seoibs[key] = tuple(seoib_reasons(source, target, static.irqchip))
                if seoib:  # every SEOIB reason blocks
                    out[host_key] = [*static.before, *seoib, *static.after]
                    blocked.append(host_key)
                    continue
            out[host_key] = plain
            if plain_blocks:
                blocked.append(host_key)
        return out, frozenset(blocked)

    def source(self, decided: Decided) -> Source:
        config_key, state = decided
        return self._configured(config_key).source._replace(
            state=SeoibState[state] if state else None)

    # -- writing ----------------------------------------------------------------------

    def outcomes(self) -> list[Outcome]:
        """Every VM class's outcome, by class number."""
        done = self._by_index
        with _no_gc():
            done += [self.outcome(key) for key in self.vm_classes[len(done):]]
        return done

    def write(self, out: IO[bytes], expand_hosts: bool = False) -> dict[str, Any]:
        """The header, then (class form) the reasons and outcomes once each and one short
        line per VM, or (``expand_hosts``) one line per VM naming host ids; return totals."""
        outcomes = self.outcomes()
        write = out.write
        write((json.dumps(self.header("hosts" if expand_hosts else "classes")) + "\n").encode())
        if expand_hosts:
            fragments = [self._per_host(o) for o in outcomes]
        else:
            fragments = self._class_records(outcomes, write)
        enc = encode_basestring_ascii
        ids, class_of = self.ids, self.class_of
        step = 1 << 16
        for start in range(0, len(ids), step):
            write("".join(['{"vm": ' + enc(vm_id) + fragments[index] for vm_id, index in
                           zip(ids[start:start + step], class_of[start:start + step],
                               strict=True)]).encode())
        return self.totals(outcomes)

    def _class_records(self, outcomes: list[Outcome], write: Callable[[bytes], Any]
                       ) -> list[str]:
        """Write each reason and each outcome once; the VM lines' tails, by class."""
        reason_ids: dict[Reason, str] = {}
        by_identity: dict[int, str] = {}  # most reasons are shared objects: a faster key
        lines: list[str] = []
        outcome_ids: dict[int, str] = {}  # id(Outcome) -> its record's id
        records: list[str] = []
        fragments = []
        for outcome in outcomes:
            number = outcome_ids.get(id(outcome))
            if number is None:
                number = outcome_ids[id(outcome)] = f"o{len(outcome_ids) + 1}"
                record: dict[str, Any] = {"outcome": number, "verdict": outcome.verdict}
                if outcome.error is not None:
                    record["error"] = outcome.error
                else:
                    movable, warnings, blocked = [], {}, {}
                    for host_key, reasons in outcome.reasons.items():
                        refs = []
                        for reason in reasons:
                            ref = by_identity.get(id(reason))
                            if ref is None:
                                ref = reason_ids.get(reason)
                                if ref is None:
                                    ref = reason_ids[reason] = f"r{len(reason_ids) + 1}"
                                    lines.append(json.dumps({"reason": ref, **reason.to_json()}))
                                by_identity[id(reason)] = ref
                            refs.append(ref)
                        hc = self.class_ids[host_key]
                        if host_key in outcome.blocked:
                            blocked[hc] = refs
                        else:
                            movable.append(hc)
                            if refs:
                                warnings[hc] = refs
                    record.update(can_move_to=movable, warnings=warnings, blocked=blocked)
                records.append(json.dumps(record))
            fragments.append(f', "verdict": "{outcome.verdict}", "outcome": "{number}"}}\n')
        for line in lines:
            write((line + "\n").encode())
        for line in records:
            write((line + "\n").encode())
        return fragments

    def _per_host(self, outcome: Outcome) -> str:
        if outcome.error is not None:
            return ', "error": ' + json.dumps(outcome.error) + "}\n"
        movable: list[str] = []
        warnings: dict[str, list[dict[str, str]]] = {}
        blocked: dict[str, list[dict[str, str]]] = {}
        for host_key, reasons in outcome.reasons.items():
            as_json = [r.to_json() for r in reasons]
            if host_key in outcome.blocked:
                blocked[self.class_ids[host_key]] = as_json
                continue
            movable += self.host_classes[host_key]
            if reasons:
                warnings[self.class_ids[host_key]] = as_json
        return (', "can_move_to": ' + json.dumps(movable) + ', "warnings": '
                + json.dumps(warnings) + ', "blocked": ' + json.dumps(blocked) + "}\n")

    def totals(self, outcomes: list[Outcome]) -> dict[str, Any]:
        """Counts for the last line: VMs per verdict, VM-host pairs per verdict."""
        per_class = Counter(self.class_of)
        verdicts = dict.fromkeys(VERDICTS, 0)
        pairs = {"ok": 0, "warn": 0, "blocked": 0}
        for index, count in per_class.items():
            outcome = outcomes[index]
            verdicts[outcome.verdict] += count
            ok, warn, blocked = outcome.pairs
            pairs["ok"] += count * ok
            pairs["warn"] += count * warn
            pairs["blocked"] += count * blocked
        return {"vms": len(self.ids), "vm_classes": len(self.vm_classes),
                "decided_classes": len(self._outcomes), "host_classes": len(self.host_classes),
                "errors": verdicts["error"], "verdicts": verdicts, **pairs,
                "class_pairs": self.pairs}


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while.

    A fleet run makes millions of small objects that live to the end (ids,
    class keys, reasons) and no cycles; each full collection walks all of them,
    which cost more than half of the judging time at 1,000,000 VMs.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _blocks(reasons: list[Reason]) -> bool:
    return any(r.severity == "blocked" for r in reasons)


def _first_line(path: str, vm_id: str) -> int | None:
    """The line that first used ``vm_id`` (read again: only an error needs it)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and doc.get("id") == vm_id:
                return number
    return None
