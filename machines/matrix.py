"""The compatibility matrix: machine types x kernels x destination hosts.

One row per machine type of a QEMU build (newest first, grouped by family).
For each: the IOAPIC version and the effective default ``seoib-policy`` (and
where they come from); the SEOIB state a split-irqchip VM of that type gets
under each kernel; and, for each destination host, the pre-flight verdict of
such a VM powered on here (on the source kernel).  Pure: the CLI brings the
profiles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from attrs import frozen

from kvmglue.profile import KernelProfile
from machines.build import Build
from machines.config import configure
from machines.errors import UsageError
from machines.hostprofile import HostProfile
from machines.i386.ioapic import ioapic
from machines.i386.seoib import SeoibDecision, decide, inputs_from
from machines.kernels import caps
from machines.machine import MachineType
from machines.naming import MachineVersion, parse_machine_name, version_key
from machines.options import parse_args
from machines.preflight import Destination, judge, source_from
from machines.render import Cell, Table
from machines.resolve import Resolver

CONFIG = ("-accel", "kvm,kernel-irqchip=split")
FAMILIES = {"q35": "pc_q35", "pc-q35": "pc_q35", "pc_q35": "pc_q35",
            "i440fx": "pc_piix", "pc-i440fx": "pc_piix", "pc_piix": "pc_piix", "pc": "pc_piix"}


@frozen
class Row:
    machine: type[MachineType]
    ioapic_version: int | None
    ioapic_source: str
    policy: str | None
    policy_source: str
    states: tuple[SeoibDecision | None, ...]  # per kernel; None for a type not registered
    verdicts: tuple[Destination | None, ...]  # per destination


@frozen
class Matrix:
    build: Build
    kernels: tuple[KernelProfile, ...]
    destinations: tuple[HostProfile, ...]
    source_kernel: KernelProfile
    rows: tuple[Row, ...]


def since_version(since: str) -> MachineVersion:
    """``--since``: a version as machine types carry it; ``10`` means ``10.0``."""
    text = since.strip()
    if re.fullmatch(r"[A-Za-z]*\d+", text):
        text += ".0"
    version = parse_machine_name(f"x-{text}").version if text else None
    if version is None:
        raise UsageError(f"--since {since}: expected a QEMU version such as 9.0 or 10")
    return version


def select(build: Build, family: str | None = None, since: str | None = None,
           include_removed: bool = False) -> list[type[MachineType]]:
    """The machine types a matrix shows, in ``-machine help`` order."""
    wanted = FAMILIES.get(family, family) if family else None
    floor = since_version(since) if since is not None else None
    names = [m.name for m in build.registered()]
    if include_removed:
        names += sorted((n for n, m in build.machines.items() if not m.registered),
                        key=version_key, reverse=True)
    out = []
    for name in names:
        machine = build.machines[name]
        if machine.family is None or machine.family not in ("pc_q35", "pc_piix"):
            continue
        if not machine.registered and not include_removed:
            continue
        if wanted and machine.family != wanted:
            continue
        if floor and machine.version is not None and machine.version < floor:
            continue
        out.append(machine)
    # families alphabetical as QEMU lists them, newest version first within each
    out.sort(key=lambda m: version_key(m.name), reverse=True)
    return sorted(out, key=lambda m: m.family or "")


def build_matrix(build: Build, kernels: Sequence[KernelProfile],
                 destinations: Sequence[HostProfile], source_kernel: KernelProfile,
                 machines: Sequence[type[MachineType]]) -> Matrix:
    rows = []
    for machine in machines:
        config = configure(build, parse_args(["-machine", machine.name, *CONFIG]), machine)
        resolver = Resolver(config)
        pic = ioapic(resolver)
        inputs = inputs_from(resolver)
        policy = inputs.policy
        policy_source = inputs.policy_source.describe() if inputs.policy_source else \
            f"QEMU {build.name} has no seoib-policy"
        if not machine.registered:
            rows.append(Row(machine, pic.version, pic.source.describe(), policy, policy_source,
                            tuple(None for _ in kernels), tuple(None for _ in destinations)))
            continue
        states = tuple(decide(inputs, caps(k)) for k in kernels)
        here = decide(inputs, caps(source_kernel))
        verdicts: list[Destination | None] = []
        for dest in destinations:
            if here.refused:
                verdicts.append(None)
                continue
            source = source_from(config, here.state, f"power-on on kernel {source_kernel.name}",
                                 here)
            verdicts.append(judge(source, dest))
        rows.append(Row(machine, pic.version, pic.source.describe(), policy, policy_source,
                        states, tuple(verdicts)))
    return Matrix(build, tuple(kernels), tuple(destinations), source_kernel, tuple(rows))


_STATE_STATUS = {"RESPECTED": "respected", "QUIRKED": "quirked",
                 "NOT_ADVERTISED": "not-advertised"}
_STATE_SHORT = {"RESPECTED": "RESP", "QUIRKED": "QRK", "NOT_ADVERTISED": "NADV"}
_POLICY_SHORT = {"quirked": "quirk", "respected": "resp",
                 "not-advertised": "nadv"}


def _state_cell(d: SeoibDecision | None) -> Cell:
    if d is None:
        return Cell("-", "na", "not registered by this QEMU: no VM of this type can start")
    if d.error:
        return Cell("REF", "refused", d.error, "refused")
    name = d.state.name if d.state else "none"
    trace = "; ".join(s.message for s in d.trace)
    return Cell(_STATE_SHORT.get(name, name), _STATE_STATUS.get(name, "na"),
                f"{name} (flags {d.flags:#x}): {trace}", name)


def _verdict_cell(v: Destination | None) -> Cell:
    if v is None:
        return Cell("-", "na", "the VM cannot start here, so there is nothing to migrate")
    if not v.reasons:
        return Cell("ok", "ok", "no reason against it")
    detail = " | ".join(f"[{r.severity}] {r.code}: {r.message} (fix: {r.fix})"
                        for r in v.reasons)
    label = {"blocked": "BLK", "warn": "warn"}.get(v.verdict, v.verdict)
    return Cell(label, v.verdict, detail, f"{v.verdict}: {', '.join(r.code for r in v.reasons)}")


def _family_title(family: str | None) -> str:
    return {"pc_q35": "pc-q35 (Q35 + ICH9)", "pc_piix": "pc-i440fx (i440FX + PIIX)"}.get(
        family or "", family or "")


def to_table(matrix: Matrix) -> Table:
    kernels = [k.name for k in matrix.kernels]
    dests = [d.name for d in matrix.destinations]
    columns = ("family", "machine type", "IOAPIC", "seoib-policy",
               *(f"state on {k}" for k in kernels), *(f"to {d}" for d in dests))
    short = ("family", "machine", "ioapic", "policy",
             *(f"K{i + 1}" for i in range(len(kernels))),
             *(f"D{i + 1}" for i in range(len(dests))))
    rows = []
    for row in matrix.rows:
        m = row.machine
        flags = [f for f, on in (("deprecated", m.deprecated), ("not registered", not m.registered))
                 if on]
        name = m.name + (" *" if m.deprecated else "") + (" (gone)" if not m.registered else "")
        marker = {"compat": ":c", "default": ":d", "accel": ":a", "global": ":g"}
        source_kind = row.policy_source.split(":")[0]
        policy = _POLICY_SHORT.get(row.policy or "", "n/a")
        rows.append((
            Cell(_family_title(m.family)),
            Cell(name, "na" if not m.registered else "", ", ".join(flags)),
            Cell(f"{row.ioapic_version:#x}" if row.ioapic_version else "-", "",
                 f"IOAPIC version from {row.ioapic_source}"),
            Cell(policy + marker.get(source_kind, ""), "", row.policy_source,
                 row.policy or "n/a"),
            *(_state_cell(d) for d in row.states),
            *(_verdict_cell(v) for v in row.verdicts),
        ))
    legend = [(f"K{i + 1}", f"SEOIB state of a split-irqchip VM of the type on kernel {k.name} "
                            f"({k.kernel_release}, {k.origin})")
              for i, k in enumerate(matrix.kernels)]
    legend += [(f"D{i + 1}", f"pre-flight verdict towards {d.name} (kernel {d.kernel.name}, QEMU "
                             f"{d.build.name}) of such a VM powered on here (kernel "
                             f"{matrix.source_kernel.name})")
               for i, d in enumerate(matrix.destinations)]
    legend += [("RESP", "RESPECTED: SEOIB advertised and honoured (ENABLE flag)"),
               ("QRK", "QUIRKED: legacy, advertised under a split irqchip but not honoured"),
               ("NADV", "NOT_ADVERTISED: not advertised (DISABLE flag)"),
               ("REF", "QEMU would refuse to power the VM on"),
               ("BLK", "migration blocked"),
               ("quirk:c", "seoib-policy and where it comes from: c compat property, d type "
                           "default, a -accel, g -global; n/a: this QEMU has no seoib-policy"),
               ("*", "deprecated machine type; (gone): no longer registered")]
    # md and html show the full titles and labels: their legend explains those.
    long_legend = [(f"state on {k.name}", f"SEOIB state of a split-irqchip VM of the type "
                                         f"({k.kernel_release}, {k.origin})")
                   for k in matrix.kernels]
    long_legend += [(f"to {d.name}", f"pre-flight verdict (kernel {d.kernel.name}, QEMU "
                                     f"{d.build.name}) of such a VM powered on here (kernel "
                                     f"{matrix.source_kernel.name})")
                    for d in matrix.destinations]
    long_legend += [("RESPECTED", "SEOIB advertised and honoured (ENABLE flag)"),
                    ("QUIRKED", "legacy, advertised under a split irqchip but not honoured"),
                    ("NOT_ADVERTISED", "not advertised (DISABLE flag)"),
                    ("refused", "QEMU would refuse to power the VM on"),
                    ("seoib-policy", "the type's effective seoib-policy (where it comes from "
                                     "in each cell's detail); n/a: this QEMU has no "
                                     "seoib-policy"),
                    ("*", "deprecated machine type; (gone): no longer registered")]
    shown_cells = {c.text for r in rows for c in r} | {c.label for r in rows for c in r}
    shown_marks = {"*" if " *" in c.label else "" for r in rows for c in r} | shown_cells
    legend = [(k, v) for k, v in legend if k in short or any(k in t for t in shown_marks)
              or (k == "quirk:c" and any(":" in c.text for r in rows for c in r[3:4]))]
    long_legend = [(k, v) for k, v in long_legend if k in columns
                   or any(k in t for t in shown_marks)]
    return Table(
        title=f"Machine types of QEMU {matrix.build.name}: SEOIB and migration",
        columns=columns, short=short, rows=tuple(rows),
        row_ids=tuple(r.machine.name for r in matrix.rows),
        legend=tuple(legend), long_legend=tuple(long_legend), inputs=tuple(inputs(matrix)),
        group_by=0,
    )


def inputs(matrix: Matrix) -> list[tuple[str, str]]:
    build = matrix.build
    out = [("QEMU build", f"{build.name} ({build.kind}); "
                          + ", ".join(f"{k}: {v}" for k, v in sorted(build.provenance.items())
                                      if v and not isinstance(v, (list, dict))))]
    for k in matrix.kernels:
        out.append((f"kernel {k.name}", f"Linux {k.kernel_release}, {k.origin}; x2APIC API "
                                         f"system {k.x2apic_api.system:#x}"))
    out.append(("source kernel (here)", f"{matrix.source_kernel.name} "
                                        f"(Linux {matrix.source_kernel.kernel_release})"))
    for d in matrix.destinations:
        out.append((f"host {d.name}", f"kernel {d.kernel.name} (Linux {d.kernel.kernel_release}),"
                                      f" QEMU {d.build.name} ({d.build.kind})"))
    out.append(("configuration", "-machine TYPE " + " ".join(CONFIG)))
    return out


def to_json(matrix: Matrix) -> dict[str, Any]:
    from machines.report import seoib_json

    return {
        "schema": "machines/matrix/v1",
        "qemu": {"name": matrix.build.name, "kind": matrix.build.kind,
                 "seoib_aware": matrix.build.seoib_aware},
        "configuration": ["-machine", "TYPE", *CONFIG],
        "kernels": [k.name for k in matrix.kernels],
        "source_kernel": matrix.source_kernel.name,
        "destinations": [d.name for d in matrix.destinations],
        "rows": [{
            "machine": r.machine.name,
            "family": r.machine.family,
            "deprecated": r.machine.deprecated,
            "registered": r.machine.registered,
            "ioapic": {"version": r.ioapic_version, "source": r.ioapic_source},
            "seoib_policy": {"value": r.policy, "source": r.policy_source},
            "states": {k.name: (seoib_json(d) if d else None)
                       for k, d in zip(matrix.kernels, r.states, strict=True)},
            "verdicts": {h.name: (None if v is None else {
                "verdict": v.verdict,
                "reasons": [{"code": x.code, "severity": x.severity, "message": x.message,
                             "fix": x.fix} for x in v.reasons]})
                for h, v in zip(matrix.destinations, r.verdicts, strict=True)},
        } for r in matrix.rows],
        "inputs": dict(inputs(matrix)),
    }

