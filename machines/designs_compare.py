"""What each of the SEOIB RFC's designs would do to a fleet: the feedback the RFC asks for.

For every VM (a fleet's JSON lines, or one VM's QEMU arguments) and every
design, as if its hosts' QEMU took the design:

* does the VM's SEOIB state change at its next power-on (on a kernel with the
  SEOIB API)?
* to which host classes can it then no longer move: ``old-qemu`` (a QEMU
  without the design, which cannot load ``x86-seoib-state``) and
  ``old-kernel`` (the design's QEMU on a kernel without the SEOIB API)?
* does it stay exposed to the EOI storm (QUIRKED with directed EOI advertised
  but not honoured: what hangs Windows with Credential Guard)?
* for a VM exposed today, what gets it the fix: a restart, a configuration
  change (a newer machine type under ``gated``, ``seoib-policy`` under
  ``opt-in``) and a restart, or nothing the design offers?

VMs are grouped by what the rules read (build, machine type, irqchip, IOAPIC,
policy), so a 100,000-VM fleet costs one decision per class.  Pure: the CLI
reads the files and renders.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from attrs import frozen

from machines.build import Build
from machines.config import VmConfig, configure
from machines.errors import MachinesError
from machines.i386.designs import (
    GATED,
    NONE,
    OPT_IN,
    RFC_V2,
    Design,
    newest_version,
    next_version,
    overlay,
)
from machines.i386.seoib import KernelCaps, SeoibDecision, SeoibState, decide, inputs_from
from machines.options import AccelOption, QemuOptions, parse_args
from machines.preflight import BLOCKED, Target, judge_target, source_from
from machines.registry import get_build
from machines.resolve import Resolver

SCHEMA = "machines/seoib-designs/v1"
HOST_CLASSES = ("old-qemu", "old-kernel")
FIXES = ("not-needed", "restart", "config-change", "not-possible")


class VmKey(NamedTuple):
    """What the rules read of a VM: its build and QEMU options (policy only for opt-in)."""

    qemu: str
    args: tuple[str, ...]
    policy: str | None = None


def fleet_key(qemu: str, machine: str, irqchip: str | None, ioapic: int | None,
              policy: str | None) -> VmKey:
    """A fleet line's fields as QEMU options (as ``preflight --fleet`` reads them)."""
    accel = "kvm" + (f",kernel-irqchip={irqchip}" if irqchip else "")
    args = ["-machine", machine, "-accel", accel if irqchip is not None else "tcg"]
    if ioapic is not None:
        args += ["-global", f"ioapic.version={ioapic:#x}"]
    return VmKey(qemu, tuple(args), policy)


@frozen
class Outcome:
    """One VM class under one design."""

    state_today: str | None
    state_next: str | None
    changes: bool
    lost: tuple[str, ...]  # host classes it can no longer move to
    exposed_today: bool
    exposed_next: bool
    fix: str  # one of FIXES
    error: str | None = None
    lost_hosts: tuple[str, ...] = ()  # --hosts classes it can no longer move to


@frozen
class DesignTotals:
    design: str
    vms: int
    kvm_lapic: int
    changes_state: int
    lost: dict[str, int]
    exposed_today: int
    stay_exposed: int
    fix: dict[str, int]
    errors: int
    lost_hosts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"design": self.design, "vms": self.vms, "kvm_lapic": self.kvm_lapic,
                "changes_state_at_next_power_on": self.changes_state,
                "can_no_longer_move_to": dict(self.lost),
                "exposed_today": self.exposed_today,
                "stay_quirked_exposed": self.stay_exposed,
                "to_get_the_fix": dict(self.fix), "errors": self.errors,
                "can_no_longer_move_to_hosts": dict(self.lost_hosts)}


@frozen
class HostClass:
    """Hosts of a --hosts directory that the rules cannot tell apart."""

    id: str
    target: Target
    kernel: str
    hosts: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        caps = self.target.caps
        return {"qemu": self.target.build.name, "kernel": self.kernel,
                "kernel_enable_flag": caps.enable, "kernel_disable_flag": caps.disable,
                "hosts": len(self.hosts)}


def host_classes(hosts: Iterable[Any]) -> tuple[HostClass, ...]:
    """Group host profiles by what the rules read: the build and the kernel's flags."""
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for host in hosts:
        k = host.kernel
        key = (host.build.name, k.has_enable_flag, k.has_disable_flag, k.x2apic_api.system)
        groups.setdefault(key, []).append(host)
    out = []
    for i, members in enumerate(groups.values()):
        first = members[0]
        k = first.kernel
        caps = KernelCaps("the destination kernel", k.has_enable_flag, k.has_disable_flag,
                          k.x2apic_api.system)
        out.append(HostClass(f"hc{i + 1}", Target(first.build, caps), k.name,
                             tuple(h.name for h in members)))
    return tuple(out)


@frozen
class Comparison:
    designs: tuple[DesignTotals, ...]
    vm_classes: int
    new_kernel: str
    old_kernel: str
    gate: str
    described: str
    host_classes: tuple[HostClass, ...] = ()


def _exposed(d: SeoibDecision) -> bool:
    return d.state is SeoibState.QUIRKED and d.lvr_directed_eoi and not d.eoi_broadcast_suppressed


def _design_options(opts: QemuOptions, design: str, policy: str | None) -> QemuOptions:
    """Keep seoib-policy only where the design has it."""
    accels = []
    for accel in opts.accels:
        props = tuple(p for p in accel.props if p[0] != "seoib-policy")
        if design == OPT_IN and accel.name == "kvm" and policy is not None:
            props += (("seoib-policy", policy),)
        accels.append(AccelOption(accel.name, props, accel.text))
    return opts._replace(accels=tuple(accels))


class Comparer:
    """Decisions per (VM class, design), cached; totals per design."""

    def __init__(self, designs: Sequence[Design], new_kernel: KernelCaps,
                 old_kernel: KernelCaps, gate: tuple[int, ...],
                 hosts: Sequence[HostClass] = ()) -> None:
        self.designs = tuple(designs)
        self.hosts = tuple(hosts)
        self.new_kernel = new_kernel
        self.old_kernel = old_kernel
        self.gate = gate
        self.vm_classes = 0
        self._outcomes: dict[tuple[VmKey, Design], Outcome] = {}

    def design_build(self, base: Build, design: Design) -> Build:
        if design.name == GATED:
            return overlay(base, Design(GATED, self.gate))
        return overlay(base, design)

    def _decide(self, build: Build, opts: QemuOptions, kernel: KernelCaps
                ) -> tuple[VmConfig, SeoibDecision]:
        config = configure(build, opts)
        resolver = Resolver(config)
        resolver.check_accel()
        return config, decide(inputs_from(resolver), kernel)

    def outcome(self, key: VmKey, design: Design) -> Outcome:
        found = self._outcomes.get((key, design))
        if found is None:
            try:
                found = self._outcome(key, design)
            except MachinesError as err:
                found = Outcome(None, None, False, (), False, False, "not-possible", str(err))
            self._outcomes[(key, design)] = found
        return found

    def _outcome(self, key: VmKey, design: Design) -> Outcome:
        base = get_build(key.qemu)
        opts = parse_args(list(key.args))
        _, today = self._decide(base, _design_options(opts, NONE, None), self.new_kernel)
        build = self.design_build(base, design)
        mine = _design_options(opts, design.name, key.policy)
        config, after = self._decide(build, mine, self.new_kernel)
        if after.refused:
            raise MachinesError(f"would not power on under {design.label}: {after.error}")
        state_today = today.state.name if today.state else None
        state_next = after.state.name if after.state else None
        lost: list[str] = []
        lost_hosts: list[str] = []
        if after.migration_section:
            source = source_from(config, after.state, "next power-on")
            targets = [("old-qemu", Target(base, self.new_kernel)),
                       ("old-kernel", Target(build, self.old_kernel)),
                       *((h.id, h.target) for h in self.hosts)]
            for name, target in targets:
                reasons = judge_target(source, target)
                if any(r.severity == BLOCKED and r.code.startswith("seoib-") for r in reasons):
                    (lost if name in HOST_CLASSES else lost_hosts).append(name)
        exposed_today, exposed_next = _exposed(today), _exposed(after)
        if not exposed_today:
            fix = "not-needed"
        elif not exposed_next:
            fix = "restart"
        elif self._fixed_by_config(build, mine, config, design):
            fix = "config-change"
        else:
            fix = "not-possible"
        return Outcome(state_today, state_next, after.flags != 0 or state_next != state_today,
                       tuple(lost), exposed_today, exposed_next, fix, None, tuple(lost_hosts))

    def _fixed_by_config(self, build: Build, opts: QemuOptions, config: VmConfig,
                         design: Design) -> bool:
        """Whether the design offers a configuration change that ends the exposure."""
        tries: list[QemuOptions] = []
        if design.name == OPT_IN:
            for policy in ("respected", "not-advertised"):
                tries.append(_design_options(opts, OPT_IN, policy))
        elif design.name == GATED and config.machine.prefix:
            newer = f"{config.machine.prefix}-{'.'.join(map(str, self.gate))}"
            if newer in build.machines:
                machine = dict(opts.machine)
                machine["type"] = newer
                tries.append(opts._replace(machine=tuple(machine.items())))
        for attempt in tries:
            try:
                _, d = self._decide(build, attempt, self.new_kernel)
            except MachinesError:
                continue
            if not d.refused and not _exposed(d):
                return True
        return False

    def totals(self, keys: Iterable[VmKey]) -> tuple[DesignTotals, ...]:
        counts: dict[VmKey, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        self.vm_classes = len(counts)
        out = []
        for design in self.designs:
            vms = kvm = changes = exposed_today = stay = errors = 0
            lost = dict.fromkeys(HOST_CLASSES, 0)
            lost_hosts = {h.id: 0 for h in self.hosts}
            fix = dict.fromkeys(FIXES, 0)
            for key, n in counts.items():
                o = self.outcome(key, design)
                vms += n
                if o.error is not None:
                    errors += n
                    continue
                kvm += n if o.state_next is not None else 0
                changes += n if o.changes else 0
                for name in o.lost:
                    lost[name] += n
                for name in o.lost_hosts:
                    lost_hosts[name] += n
                exposed_today += n if o.exposed_today else 0
                stay += n if o.exposed_next else 0
                fix[o.fix] += n
            out.append(DesignTotals(design.label if design.name != GATED else
                                    f"{GATED}:{'.'.join(map(str, self.gate))}",
                                    vms, kvm, changes, lost, exposed_today, stay, fix, errors,
                                    lost_hosts))
        return tuple(out)


ALL_DESIGNS = (Design(NONE), Design(RFC_V2), Design(GATED), Design(OPT_IN))


def default_gate(builds: Iterable[Build]) -> tuple[int, ...]:
    """The first machine-type version newer than every build's newest."""
    return next_version(max(newest_version(b) for b in builds))


def compare(keys: Iterable[VmKey], new_kernel: KernelCaps, old_kernel: KernelCaps,
            gate: tuple[int, ...], described: str,
            designs: Sequence[Design] = ALL_DESIGNS,
            hosts: Sequence[HostClass] = ()) -> Comparison:
    comparer = Comparer(designs, new_kernel, old_kernel, gate, hosts)
    totals = comparer.totals(keys)
    return Comparison(totals, comparer.vm_classes, new_kernel.name, old_kernel.name,
                      ".".join(map(str, gate)), described, tuple(hosts))


# -- reports ---------------------------------------------------------------------------

ROWS = (
    ("vms", "VMs"),
    ("kvm_lapic", "VMs with KVM's LAPIC (irqchip on or split)"),
    ("changes", "change SEOIB state at their next power-on"),
    ("lost:old-qemu", "can no longer move to a QEMU without the design (old QEMU)"),
    ("lost:old-kernel", "can no longer move to a kernel without the SEOIB API (old kernel)"),
    ("exposed_today", "exposed to the EOI storm today (QUIRKED, directed EOI advertised)"),
    ("stay", "stay QUIRKED and exposed after their next power-on"),
    ("fix:restart", "get the fix with a restart"),
    ("fix:config-change", "need a configuration change and a restart"),
    ("fix:not-possible", "cannot get the fix under this design"),
    ("errors", "would not power on / unreadable"),
)


def _value(t: DesignTotals, key: str) -> int:
    if key.startswith("host:"):
        return t.lost_hosts[key[5:]]
    if key.startswith("lost:"):
        return t.lost[key[5:]]
    if key.startswith("fix:"):
        return t.fix[key[4:]]
    return {"vms": t.vms, "kvm_lapic": t.kvm_lapic, "changes": t.changes_state,
            "exposed_today": t.exposed_today, "stay": t.stay_exposed,
            "errors": t.errors}[key]


def to_json(c: Comparison) -> dict[str, Any]:
    return {"schema": SCHEMA, "described": c.described, "vm_classes": c.vm_classes,
            "new_kernel": c.new_kernel, "old_kernel": c.old_kernel, "gate": c.gate,
            "host_classes": {h.id: h.to_json() for h in c.host_classes},
            "designs": [t.to_json() for t in c.designs]}


def to_table(c: Comparison) -> Any:
    from machines.render import Cell, Table

    rows_spec = list(ROWS)
    at = [k for k, _ in rows_spec].index("exposed_today")
    rows_spec[at:at] = [(f"host:{h.id}", f"can no longer move to {h.id}: {len(h.hosts)} hosts, "
                         f"QEMU {h.target.build.name}, kernel {h.kernel}")
                        for h in c.host_classes]
    bad = {"changes", "lost:old-qemu", "lost:old-kernel", "stay", "fix:not-possible", "errors",
           *(f"host:{h.id}" for h in c.host_classes)}
    rows = []
    for key, title in rows_spec:
        cells = [Cell(title)]
        for t in c.designs:
            n = _value(t, key)
            status = ("blocked" if n else "ok") if key in bad else ""
            if key == "fix:config-change" and n:
                status = "warn"
            share = f" ({100 * n / t.vms:.0f}%)" if t.vms and key != "vms" else ""
            cells.append(Cell(str(n), status, f"{n} of {t.vms} VMs{share}", f"{n}{share}"))
        rows.append(tuple(cells))
    designs = tuple(t.design for t in c.designs)
    return Table(
        title=f"SEOIB designs compared over {c.described}",
        columns=("", *designs), short=("", *designs), rows=tuple(rows),
        row_ids=tuple(k for k, _ in rows_spec),
        legend=(("none", "what every QEMU release does: QUIRKED, no flag, no section"),
                ("rfc-v2", "the RFC v2 code as posted: every machine type, IOAPIC >= 0x20 "
                           "RESPECTED, else NOT_ADVERTISED"),
                (f"gated:{c.gate}", f"the same, only for machine types from {c.gate} on"),
                ("opt-in", "kvm-accel seoib-policy, default quirked")),
        inputs=(("VMs", c.described), ("VM classes", str(c.vm_classes)),
                ("next power-on", f"kernel {c.new_kernel}"),
                ("old kernel", c.old_kernel), ("gate", c.gate)),
    )


JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA,
    "title": "machines seoib-designs --format json",
    "type": "object",
    "required": ["schema", "described", "vm_classes", "new_kernel", "old_kernel", "gate",
                 "host_classes", "designs"],
    "properties": {
        "schema": {"const": SCHEMA},
        "described": {"type": "string"},
        "vm_classes": {"type": "integer", "minimum": 0},
        "new_kernel": {"type": "string"},
        "old_kernel": {"type": "string"},
        "gate": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "host_classes": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["qemu", "kernel", "kernel_enable_flag",
                                           "kernel_disable_flag", "hosts"],
            "properties": {"qemu": {"type": "string"}, "kernel": {"type": "string"},
                           "kernel_enable_flag": {"type": "boolean"},
                           "kernel_disable_flag": {"type": "boolean"},
                           "hosts": {"type": "integer", "minimum": 1}}}},
        "designs": {"type": "array", "items": {
            "type": "object",
            "required": ["design", "vms", "kvm_lapic", "changes_state_at_next_power_on",
                         "can_no_longer_move_to", "exposed_today", "stay_quirked_exposed",
                         "to_get_the_fix", "errors", "can_no_longer_move_to_hosts"],
            "additionalProperties": False,
            "properties": {
                "design": {"type": "string"},
                "vms": {"type": "integer", "minimum": 0},
                "kvm_lapic": {"type": "integer", "minimum": 0},
                "changes_state_at_next_power_on": {"type": "integer", "minimum": 0},
                "can_no_longer_move_to": {
                    "type": "object", "additionalProperties": False,
                    "required": list(HOST_CLASSES),
                    "properties": {h: {"type": "integer", "minimum": 0} for h in HOST_CLASSES}},
                "exposed_today": {"type": "integer", "minimum": 0},
                "stay_quirked_exposed": {"type": "integer", "minimum": 0},
                "to_get_the_fix": {
                    "type": "object", "additionalProperties": False, "required": list(FIXES),
                    "properties": {f: {"type": "integer", "minimum": 0} for f in FIXES}},
                "errors": {"type": "integer", "minimum": 0},
                "can_no_longer_move_to_hosts": {
                    "type": "object",
                    "additionalProperties": {"type": "integer", "minimum": 0}},
            }}},
    },
}
