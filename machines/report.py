"""Rendering results for people (text) and for programs (JSON, CSV).

JSON documents carry ``"schema": "machines/<kind>/v1"``; fields may be added
in later versions, never renamed or removed within one.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from machines.values import format_value

if TYPE_CHECKING:  # keep 'machines list' from importing the resolver
    from kvmglue.profile import KernelProfile
    from machines.build import Build
    from machines.compare import CompareTable
    from machines.hostprofile import HostProfile
    from machines.i386.ioapic import Ioapic
    from machines.i386.seoib import SeoibDecision
    from machines.machine import MachineType
    from machines.preflight import Destination
    from machines.preflight import Source as PreflightSource
    from machines.resolve import Resolved, Resolver
    from machines.savevm import SavedState


def print_json(doc: Any) -> None:
    import json  # here: text output, the usual case, does not need it

    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def _build_json(build: Build) -> dict[str, Any]:
    return {"name": build.name, "version": build.version_text, "kind": build.kind,
            "seoib_aware": build.seoib_aware, "seoib_design": build.seoib_design}


def listing_json(build: Build) -> dict[str, Any]:
    return {
        "schema": "machines/list/v1",
        "qemu": _build_json(build),
        "machines": [
            {"name": m.name, "desc": m.desc, "alias": m.alias, "is_default": m.is_default,
             "deprecated": m.deprecated, "family": m.family,
             "version": str(m.version) if m.version else None, "added_in": m.added_in}
            for m in build.registered()
        ],
        "not_registered": sorted(n for n, m in build.machines.items() if not m.registered),
    }


def _chain(machine: type[MachineType]) -> list[str]:
    names = []
    node = machine.newer()
    while node is not None:
        names.append(node.name)
        node = node.newer()
    return names


def machine_json(build: Build, machine: type[MachineType]) -> dict[str, Any]:
    split = machine.default_kernel_irqchip_split
    return {
        "schema": "machines/machine/v1",
        "name": machine.name,
        "qemu": _build_json(build),
        "desc": machine.desc,
        "family": machine.family,
        "alias": machine.alias,
        "is_default": machine.is_default,
        "deprecated": machine.deprecated,
        "registered": machine.registered,
        "added_in": machine.added_in,
        "default_cpu_type": machine.default_cpu_type,
        "default_kernel_irqchip": None if split is None else ("split" if split else "on"),
        "derives_from": _chain(machine),
        "tables": [t.name for t in machine.compat_tables()],
        "compat_props": [
            {"driver": cp.driver, "property": cp.property, "value": cp.value,
             "table": cp.table, "entry": cp.entry}
            for cp in machine.compat_props()
        ],
    }


def machine_text(build: Build, machine: type[MachineType]) -> str:
    out = io.StringIO()
    flags = [f for f, on in (("default", machine.is_default), ("deprecated", machine.deprecated),
                             ("not registered", not machine.registered)) if on]
    out.write(f"{machine.name}: {machine.desc}{' (' + ', '.join(flags) + ')' if flags else ''}\n")
    out.write(f"  QEMU build:      {build.name} ({build.kind})\n")
    if machine.alias:
        out.write(f"  alias:           {machine.alias}\n")
    if machine.added_in:
        out.write(f"  added in:        QEMU {machine.added_in}\n")
    chain = _chain(machine)
    if chain:
        shown = " -> ".join(chain[:3]) + (" -> ..." if len(chain) > 3 else "")
        out.write(f"  derives from:    {shown}\n")
    split = machine.default_kernel_irqchip_split
    if split is not None:
        out.write(f"  kernel-irqchip:  {'split' if split else 'on'} by default under KVM\n")
    props = machine.compat_props()
    out.write(f"  compat_props:    {len(props)} entries, applied in this order "
              "(later entries win)\n")
    table = None
    for cp in props:
        if cp.table != table:
            table = cp.table
            out.write(f"  {table}:\n")
        out.write(f"    {cp.driver}.{cp.property}={cp.value}\n")
    return out.getvalue()


def _resolved_json(r: Resolved) -> dict[str, Any]:
    return r.to_json()


def resolve_json(resolver: Resolver, devices: dict[str, dict[str, Resolved]],
                 ioapic: Ioapic | None, seoib: list[SeoibDecision] | None = None
                 ) -> dict[str, Any]:
    config = resolver.config
    irqchip = resolver.kernel_irqchip()
    return {
        "schema": "machines/resolve/v1",
        "qemu": _build_json(config.build),
        "machine": config.machine.name,
        "machine_as_given": config.machine_as_given,
        "accel": {
            "name": config.accel,
            "source": config.accel_source,
            "kernel_irqchip": _resolved_json(irqchip) if irqchip else None,
        },
        "cpu": config.cpu_type,
        "ioapic": None if ioapic is None else {
            "type": ioapic.type, "path": ioapic.path, "version": ioapic.version,
            **ioapic.source.to_json()},
        "devices": {t: {p: _resolved_json(r) for p, r in props.items()}
                    for t, props in devices.items()},
        "incoming": config.options.incoming,
        "loadvm": config.options.loadvm,
        "warnings": list(config.warnings),
        "seoib": seoib_json(seoib[0]) if seoib else None,
        "seoib_by_kernel": {d.kernel: seoib_json(d) for d in seoib or []},
        "error": next((d.error for d in seoib or [] if d.error), None),
    }


def resolve_text(resolver: Resolver, devices: dict[str, dict[str, Resolved]],
                 ioapic: Ioapic | None) -> str:
    config = resolver.config
    out = io.StringIO()
    given = f" (from '{config.machine_as_given}')" if config.alias_used else ""
    out.write(f"machine:        {config.machine.name}{given}, QEMU {config.build.name}\n")
    out.write(f"accelerator:    {config.accel} ({config.accel_source})\n")
    irqchip = resolver.kernel_irqchip()
    if irqchip is not None:
        out.write(f"kernel-irqchip: {irqchip.value} ({irqchip.source.describe()})\n")
    out.write(f"cpu:            {config.cpu_type}\n")
    if ioapic is not None:
        out.write(f"ioapic:         {ioapic.type} version {ioapic.version:#x} "
                  f"({ioapic.source.describe()})\n")
    for warning in config.warnings:
        out.write(f"warning:        {warning}\n")
    for typename, props in devices.items():
        out.write(f"\n{typename}:\n")
        width = max((len(p) for p in props), default=0)
        for name, r in props.items():
            value = "<unset>" if r.value is None else format_value(r.value)
            note = (f" (QEMU decides at realize; {format_value(r.realized)} on a plain machine)"
                    if r.realized is not None else
                    f" (decided at realize: {r.realize_rule})" if r.realize_rule else "")
            out.write(f"  {name:<{width}}  {value:<12} {r.source.describe()}{note}\n")
    return out.getvalue()


def seoib_json(d: SeoibDecision) -> dict[str, Any]:
    return {
        "kernel": d.kernel,
        "policy": d.policy,
        "policy_source": d.policy_source.to_json() if d.policy_source else None,
        "state": d.state.name if d.state is not None else None,
        "deferred": d.deferred,
        "x2apic_api_flags": d.flags,
        "guest": {"lvr_directed_eoi": d.lvr_directed_eoi,
                  "eoi_broadcast_suppressed": d.eoi_broadcast_suppressed},
        "migration_section": d.migration_section,
        "warnings": list(d.warnings),
        "trace": [{"rule": s.rule, "message": s.message} for s in d.trace],
        "error": d.error,
        "aborts": d.aborts,
    }


def seoib_text(decisions: list[SeoibDecision]) -> str:
    out = io.StringIO()
    for d in decisions:
        state = d.state.name if d.state is not None else "none (no KVM LAPIC)"
        if d.error:
            state = "QEMU ABORTS" if d.aborts else "REFUSED"
        out.write(f"\nSEOIB on kernel {d.kernel}: {state}\n")
        if d.policy is not None and d.policy_source is not None:
            out.write(f"  policy:            {d.policy} ({d.policy_source.describe()})\n")
        out.write(f"  x2APIC API flags:  {d.flags:#x}\n")
        out.write(f"  guest:             LVR directed-EOI bit "
                  f"{'set' if d.lvr_directed_eoi else 'clear'}; EOI broadcast "
                  f"{'suppressed' if d.eoi_broadcast_suppressed else 'not suppressed'}\n")
        out.write(f"  migration stream:  "
                  f"{'carries x86-seoib-state' if d.migration_section else 'no x86-seoib-state'}"
                  "\n")
        for warning in d.warnings:
            out.write(f"  warning:           {warning}\n")
        if d.error:
            out.write(f"  error:             {d.error}\n")
        out.write("  trace:\n")
        for i, step in enumerate(d.trace, 1):
            out.write(f"    {i}. [{step.rule}] {step.message}\n")
    return out.getvalue()


def preflight_json(source: PreflightSource, host: HostProfile | None,
                   kernel: KernelProfile | None, described: str,
                   results: list[Destination], qemu_why: str = "",
                   notes: Sequence[str] = ()) -> dict[str, Any]:
    config = source.config
    return {
        "schema": "machines/preflight/v1",
        "source": {
            "described_by": described,
            "host": host.name if host else "this host",
            "qemu": config.build.name,
            "qemu_why": qemu_why,
            "notes": list(notes),
            "kernel": kernel.name if kernel else None,
            "machine": source.machine,
            "machine_as_given": config.machine_as_given,
            "accel": config.accel,
            "kernel_irqchip": source.kernel_irqchip,
            "ioapic": None if source.ioapic is None else {
                "type": source.ioapic.type, "version": source.ioapic.version},
            "seoib": {"state": source.state.name if source.state else None,
                      "origin": source.state_origin,
                      "migration_section": bool(source.state and source.state.value
                                                and config.build.seoib_aware)},
        },
        "destinations": [
            {"host": r.host, "verdict": r.verdict,
             "reasons": [{"code": x.code, "severity": x.severity, "message": x.message,
                          "fix": x.fix} for x in r.reasons]}
            for r in results
        ],
    }


def preflight_text(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    src = doc["source"]
    given = (f" (configured as '{src['machine_as_given']}')"
             if src["machine_as_given"] not in (None, src["machine"]) else "")
    origin = src["seoib"]["origin"]
    state = src["seoib"]["state"]
    if state is None:  # the origin says why there is none
        state, origin = "none", (origin if "no KVM LAPIC" in origin
                                 else f"no KVM LAPIC; {origin}")
    out.write(f"source: {src['machine']}{given} on QEMU {src['qemu']}, {src['host']}"
              f"{', kernel ' + src['kernel'] if src['kernel'] else ''}\n")
    out.write(f"        from {src['described_by']}\n")
    if src.get("qemu_why"):
        out.write(f"        QEMU {src['qemu']}: {src['qemu_why']}\n")
    for note in src.get("notes", []):
        out.write(f"        note: {note}\n")
    out.write(f"        SEOIB {state} ({origin})")
    if src["kernel_irqchip"]:
        out.write(f", kernel-irqchip={src['kernel_irqchip']}")
    if src["ioapic"]:
        out.write(f", IOAPIC {src['ioapic']['version']:#x}")
    out.write("\n")
    for dest in doc["destinations"]:
        out.write(f"\n{dest['host']}: {dest['verdict'].upper()}\n")
        for r in dest["reasons"]:
            out.write(f"  [{r['severity']}] {r['code']}: {r['message']}\n")
            out.write(f"      fix: {r['fix']}\n")
    return out.getvalue()


def compare_json(build: Build, table: CompareTable) -> dict[str, Any]:
    return {
        "schema": "machines/compare/v1",
        "qemu": _build_json(build),
        "machines": list(table.machines),
        "rows": [
            {"driver": d, "property": p,
             "values": {m: c.value for m, c in zip(table.machines, cells, strict=True)},
             "sources": {m: c.source for m, c in zip(table.machines, cells, strict=True)}}
            for d, p, cells in table.rows
        ],
    }


def inspect_json(saved: SavedState) -> dict[str, Any]:
    return {
        "schema": "machines/inspect/v1",
        "file": saved.path,
        "size": saved.size,
        "machine": saved.machine,
        "seoib_section": saved.seoib is not None,
        "seoib_state": saved.effective_seoib.name,
        "sections": [{"kind": s.kind, "name": s.name, "instance_id": s.instance_id,
                      "version": s.version, "offset": s.offset, "size": s.size}
                     for s in saved.sections],
    }


def inspect_text(saved: SavedState) -> str:
    out = io.StringIO()
    out.write(f"{saved.path}: QEMU migration stream v3, {saved.size} bytes\n")
    out.write(f"machine type: {saved.machine or '(no configuration section)'}\n")
    if saved.seoib is None:
        out.write("SEOIB: no x86-seoib-state section: QUIRKED\n")
    else:
        out.write(f"SEOIB: x86-seoib-state: {saved.seoib.name}\n")
    out.write(f"sections ({len(saved.sections)}):\n")
    for s in saved.sections:
        ident = f" instance {s.instance_id}" if s.instance_id is not None else ""
        version = f" v{s.version}" if s.version is not None else ""
        size = f", {s.size} bytes" if s.size is not None else " (RAM, not read)" \
            if s.kind == "iterative" else ""
        out.write(f"  @{s.offset:<10} {s.name}{ident}{version}{size}\n")
    return out.getvalue()
