"""The gaps report as text, Markdown (for a qemu-devel mail), JSON and HTML.

JSON is ``machines/gaps/v1``: fields may be added, never renamed or removed.
Pure: strings in, strings out.
"""

from __future__ import annotations

import json
from typing import Any

from machines.gaps import CLASSES, GUEST, HOST, MIGRATION, SCHEMA, Gap, GapReport
from machines.render import Cell, Table, to_html_page, to_text
from machines.values import Value, format_value

CLASS_MEANING = {
    GUEST: "a property of a device, CPU or machine that the guest reads as hardware "
           "(config space, CPUID, I/O ports, ACPI): a VM on an old machine type sees other "
           "hardware after the upgrade, and its migration stream may not load",
    MIGRATION: "the property's name says it shapes the migration stream (sections, fields, "
               "instance ids: 'migrat', 'vmstate', 'instance-id', 'send-'): migration "
               "between the builds on the old type may fail though the hardware is the same",
    HOST: "not hardware: a backend or other non-device object, a migration parameter, a "
          "property naming a host backend, or an 'x-' knob (QEMU's prefix for unstable or "
          "debug properties; an x- compat knob can still change what a guest sees)",
}
FIX_RULE = ("pc_compat_X_Y for drivers only the x86 target has (CPUs, machines, the chipset "
            "and x86 platform devices, or drivers only the pc arrays name), hw_compat_X_Y for "
            "devices every target can have. X_Y is the version of the newest affected machine "
            "type both builds register, so the entry reaches it and every older type; if the "
            "default changed in a release after X.Y, the entry belongs in the array of the "
            "last release before the change (a build in between tells which)")
STATUSES = {
    GUEST: ("31", "#f4b8b8", "the guest sees the difference"),
    MIGRATION: ("33", "#f7e7a1", "the migration stream differs"),
    HOST: ("90", "#e6e6e6", "host side only"),
    "confirmed": ("31", "#f4b8b8", "read back from both binaries: they differ"),
    "disproved": ("32", "#c8ecc8", "read back from both binaries: they agree"),
}


def _v(value: Value | None) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, str):
        return f'"{value}"'
    return format_value(value)


def _machines(names: tuple[str, ...]) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return f"{names[0]} ... {names[-1]} ({len(names)} types)"


def _confirmation(gap: Gap) -> str:
    if gap.confirmed is None:
        return gap.evidence or "not checked (--confirm reads guest-visible gaps back)"
    return ("confirmed: " if gap.confirmed else "disproved: ") + gap.evidence


def _status(gap: Gap) -> str:
    if gap.confirmed is True:
        return "confirmed"
    if gap.confirmed is False:
        return "disproved"
    return ""


# -- JSON ---------------------------------------------------------------------


def to_json(report: GapReport) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "old": {"build": report.old, "version": report.old_version},
        "new": {"build": report.new, "version": report.new_version},
        "machines": list(report.machines),
        "confirmed_with": {b: c for b, c in report.confirmed_with},
        "classes": CLASS_MEANING,
        "fix_rule": FIX_RULE,
        "gaps": [{
            "type": g.typename, "property": g.prop, "qapi_type": g.qapi_type,
            "old": g.old, "new": g.new, "old_default": g.old_default,
            "new_default": g.new_default, "kind": g.kind, "machines": list(g.machines),
            "class": g.verdict, "reason": g.reason, "subtypes": g.subtypes,
            "confirmed": g.confirmed, "evidence": g.evidence,
            "fix": None if g.fix is None else {
                "driver": g.fix.driver, "property": g.fix.property, "value": g.fix.value,
                "array": g.fix.array, "why": g.fix.why_array, "c": g.fix.c},
        } for g in report.gaps],
        "new_properties": [{
            "type": n.typename, "property": n.prop, "qapi_type": n.qapi_type,
            "default": n.default, "class": n.verdict, "reason": n.reason,
            "machines": list(n.machines),
            "fix": None if n.fix is None else {
                "driver": n.fix.driver, "property": n.fix.property, "value": n.fix.value,
                "array": n.fix.array, "why": n.fix.why_array, "c": n.fix.c},
        } for n in report.new_properties],
        "restored": [{"type": r.typename, "property": r.prop, "old_default": r.old_default,
                      "new_default": r.new_default, "by": list(r.by)}
                     for r in report.restored],
        "useless_entries": [{"array": u.table, "entry": u.entry, "driver": u.driver,
                             "property": u.prop, "value": u.value, "kind": u.kind,
                             "reason": u.reason, "machines": u.machines}
                            for u in report.useless],
        "not_compared": [{"type": s.typename, "property": s.prop, "old": s.old, "new": s.new,
                          "reason": s.reason, "types": s.types} for s in report.skipped],
    }


def to_json_text(report: GapReport) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n"


# -- tables (text and HTML) ------------------------------------------------------------


def tables(report: GapReport) -> list[Table]:
    title = f"Compat gaps: QEMU {report.old} -> {report.new}"
    inputs = (("old build", f"{report.old} (QEMU {report.old_version})"),
              ("new build", f"{report.new} (QEMU {report.new_version})"),
              ("machine types compared", f"{len(report.machines)}: "
                                         f"{_machines(report.machines)}"),
              *((f"binary for {b}", c) for b, c in report.confirmed_with))
    gaps = Table(
        title=title,
        columns=("Type", "Property", "Old", "New", "Machine types", "Class", "Confirmation",
                 "Fix"),
        short=("Type", "Property", "Old", "New", "Types", "Class", "Proof", "Array"),
        rows=tuple((
            Cell(g.typename), Cell(g.prop), Cell(_v(g.old)), Cell(_v(g.new)),
            Cell(str(len(g.machines)), "", ", ".join(g.machines), _machines(g.machines)),
            Cell(g.verdict, g.verdict, g.reason),
            Cell({True: "yes", False: "NO", None: "-"}[g.confirmed], _status(g),
                 _confirmation(g), _confirmation(g)),
            Cell(g.fix.array if g.fix else "-", "", g.fix.why_array if g.fix else "",
                 f"{g.fix.c} in {g.fix.array}" if g.fix else "-"),
        ) for g in report.gaps),
        row_ids=tuple(f"{g.typename}.{g.prop}" for g in report.gaps),
        legend=tuple((c, CLASS_MEANING[c]) for c in CLASSES),
        inputs=inputs,
        notes=(f"Fix rule: {FIX_RULE}.",) if report.gaps else
        ("No gaps: every changed default is restored on every machine type both builds "
         "register.",),
    )
    news = Table(
        title=f"New properties with a non-neutral default and no compat entry "
              f"({len(report.new_properties)}): check by hand",
        columns=("Type", "Property", "Default", "Class"),
        short=("Type", "Property", "Default", "Class"),
        rows=tuple((Cell(n.typename), Cell(n.prop), Cell(_v(n.default)),
                    Cell(n.verdict, n.verdict, n.reason)) for n in report.new_properties),
        notes=("The old build has no such property: whether its default is what the old "
               "build always did (a new name for old behaviour) or something new, only the "
               "source says. Not counted as gaps.",),
    )
    restored = Table(
        title=f"Changed defaults the new build's compat properties restore "
              f"({len(report.restored)})",
        columns=("Type", "Property", "Old default", "New default", "Restored by"),
        short=("Type", "Property", "Old", "New", "Restored by"),
        rows=tuple((Cell(r.typename), Cell(r.prop), Cell(_v(r.old_default)),
                    Cell(_v(r.new_default)),
                    Cell(", ".join(b.split(" ", 1)[0] for b in r.by) or "-", "",
                         ", ".join(r.by), ", ".join(r.by) or "-"))
                   for r in report.restored),
    )
    useless = Table(
        title=f"Compat entries of {report.new} that do nothing ({len(report.useless)})",
        columns=("Array", "Entry", "Kind", "Why"),
        short=("Array", "Entry", "Kind", "Why"),
        rows=tuple((Cell(f"{u.table}[{u.entry}]"),
                    Cell(f'{{ "{u.driver}", "{u.prop}", "{u.value}" }}'), Cell(u.kind),
                    Cell(_cut(u.reason, 40), "", u.reason,
                         u.reason))
                   for u in report.useless),
    )
    skipped = Table(
        title=f"Differences not compared ({len(report.skipped)}): not static defaults",
        columns=("Type", "Property", "Old", "New", "Why"),
        short=("Type", "Property", "Old", "New", "Why"),
        rows=tuple((Cell(s.typename + (f" (+{s.types - 1} more)" if s.types > 1 else "")),
                    Cell(s.prop), Cell(_cut(s.old)), Cell(_cut(s.new)),
                    Cell(_cut(s.reason, 36), "", s.reason, s.reason))
                   for s in report.skipped),
    )
    return [gaps, news, restored, useless, skipped]


def _cut(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def to_text_report(report: GapReport, color: bool = False) -> str:
    parts = [to_text(t, color=color) for t in tables(report)]
    details = []
    for g in report.gaps:
        details.append(f"  {g.typename}.{g.prop}: {_confirmation(g)}")
        if g.fix:
            details.append(f"    fix: {g.fix.c} in {g.fix.array}")
    if details:
        parts.insert(1, "Per gap:\n" + "\n".join(details) + "\n")
    return "\n".join(parts)


def to_html(report: GapReport) -> str:
    return to_html_page(f"Compat gaps: QEMU {report.old} -> {report.new}", tables(report),
                        STATUSES)


# -- Markdown (a qemu-devel report) --------------------------------------------------------


def to_markdown(report: GapReport) -> str:
    out = [f"# Compat gaps: QEMU {report.old} -> {report.new}", ""]
    out.append(f"Old build: {report.old} (QEMU {report.old_version}); new build: {report.new} "
               f"(QEMU {report.new_version}). Machine types compared: the "
               f"{len(report.machines)} versioned types both register "
               f"({_machines(report.machines)}).")
    for build, command in report.confirmed_with:
        out.append(f"Read back from `{command}` for {build}.")
    out += ["", f"## Gaps ({len(report.gaps)})", ""]
    if not report.gaps:
        out.append("None: every changed default is restored on every machine type both "
                   "builds register.")
    for g in report.gaps:
        out += [f"### {g.typename}.{g.prop}: {_v(g.old)} -> {_v(g.new)} ({g.verdict})", "",
                f"- machine types: {', '.join(g.machines)}",
                f"- defaults: {_v(g.old_default)} in {report.old}, {_v(g.new_default)} in "
                f"{report.new}"
                + (f"; {g.subtypes} concrete types show the property" if g.subtypes > 1
                   else ""),
                f"- class: {g.verdict}, because {g.reason}",
                f"- {_confirmation(g)}"]
        if g.fix:
            out += [f"- fix, in `{g.fix.array}` ({g.fix.why_array}):", "", "```c",
                    f"    {g.fix.c}", "```"]
        out.append("")
    out += ["## Classes", ""]
    out += [f"- **{c}**: {CLASS_MEANING[c]}." for c in CLASSES]
    out += ["", f"Which array a fix belongs in: {FIX_RULE}.", ""]
    if report.new_properties:
        out += [f"## New properties with a non-neutral default and no compat entry "
                f"({len(report.new_properties)})", "",
                "The old build has no such property; whether the default is the old behaviour "
                "under a new name needs the source. Not counted as gaps.", "",
                "| type | property | default | class |", "|---|---|---|---|"]
        out += [f"| {n.typename} | {n.prop} | {_md(_v(n.default))} | {n.verdict} |"
                for n in report.new_properties]
        out.append("")
    out += [f"## Restored by compat properties ({len(report.restored)})", "",
            "| type | property | old default | new default | restored by |",
            "|---|---|---|---|---|"]
    out += [f"| {r.typename} | {r.prop} | {_md(_v(r.old_default))} | "
            f"{_md(_v(r.new_default))} | {_md(', '.join(r.by))} |" for r in report.restored]
    out += ["", f"## Compat entries of {report.new} that do nothing ({len(report.useless)})", ""]
    if report.useless:
        out += ["| array | entry | kind | why |", "|---|---|---|---|"]
        out += [f'| {u.table}[{u.entry}] | `{{ "{u.driver}", "{u.prop}", "{u.value}" }}` | '
                f"{u.kind} | {_md(u.reason)} |" for u in report.useless]
    else:
        out.append("None.")
    out += ["", f"## Differences not compared ({len(report.skipped)})", "",
            "| type | property | old | new | why |", "|---|---|---|---|---|"]
    out += [f"| {_md(s.typename)}{f' (+{s.types - 1} more)' if s.types > 1 else ''} | "
            f"{_md(s.prop)} | {_md(_cut(s.old, 60))} | {_md(_cut(s.new, 60))} | "
            f"{_md(s.reason)} |" for s in report.skipped]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(report: GapReport, fmt: str, color: bool = False) -> str:
    if fmt == "json":
        return to_json_text(report)
    if fmt == "md":
        return to_markdown(report)
    if fmt == "html":
        return to_html(report)
    return to_text_report(report, color)
