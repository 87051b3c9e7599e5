"""A fleet pre-flight summary for people: ``preflight --fleet --summary md|html|json``.

Made from a :class:`machines.fleet.FleetRun` after its VMs are read: VMs per
verdict, the top blocking reasons (with counts and example VMs), the host
classes that can take no VM of some VM class, the VMs that can move nowhere,
and the VMs that need a restart (a policy change) to stay movable.  Its size
grows with the classes, not with the VMs: lists of VMs are counts with a few
examples.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

from machines.errors import MachinesError
from machines.fleet import VERDICTS, Decided, FleetRun, HostClass
from machines.render import Cell, Table, to_html_page, to_markdown

SCHEMA = "machines/fleet-summary/v1"
EXAMPLES = 5  # example VM ids per line
TOP = 20  # rows of the longer tables

VERDICT_MEANING = {
    "ok": "can move to every host, without warnings",
    "warn": "can move to every host, some with warnings",
    "limited": "can move to some host classes, blocked on others",
    "nowhere": "blocked on every host",
    "error": "cannot be judged: the VM as described would not power on",
}


def _describe(decided: Decided) -> str:
    config, state = decided
    accel = f"kernel-irqchip={config.irqchip}" if config.irqchip else "TCG"
    parts = [config.machine, f"QEMU {config.build.name}", accel]
    if config.ioapic is not None:
        parts.append(f"ioapic {config.ioapic:#x}")
    if config.policy is not None:
        parts.append(f"seoib-policy={config.policy}")
    if state is not None:
        parts.append(state)
    return ", ".join(parts)


def summarize(run: FleetRun, fleet: str = "", hosts: str = "") -> dict[str, Any]:
    """The summary as data (the json form; md and html render it)."""
    outcomes = run.outcomes()
    per_class = Counter(run.class_of)
    examples: dict[int, list[str]] = {i: [] for i in per_class}
    wanted = len(per_class)
    for vm_id, index in zip(run.ids, run.class_of, strict=True):
        found = examples[index]
        if len(found) < EXAMPLES:
            found.append(vm_id)
            if len(found) == EXAMPLES:
                wanted -= 1
                if not wanted:
                    break
    # Decided classes: VM classes that amount to the same configuration and state.
    decided_of: dict[int, Decided] = {}
    for index in per_class:
        with contextlib.suppress(MachinesError):
            decided_of[index] = run.decided(run.vm_classes[index])
    verdicts = dict.fromkeys(VERDICTS, 0)
    for index, count in per_class.items():
        verdicts[outcomes[index].verdict] += count

    def merged(indexes: list[int]) -> list[str]:
        out: list[str] = []
        for i in indexes:
            out += examples[i][:EXAMPLES - len(out)]
        return out

    # Top blocking reasons: VMs blocked somewhere by each code.
    by_code: dict[str, dict[str, Any]] = {}
    for index, count in per_class.items():
        outcome = outcomes[index]
        codes: dict[str, tuple[set[HostClass], Any]] = {}
        for host_key, reasons in outcome.reasons.items():
            if host_key in outcome.blocked:
                for reason in reasons:
                    if reason.severity == "blocked":
                        codes.setdefault(reason.code, (set(), reason))[0].add(host_key)
        for code, (classes, reason) in codes.items():
            new: dict[str, Any] = {"code": code, "vms": 0, "host_classes": set(),
                                   "classes": [], "message": reason.message, "fix": reason.fix}
            entry = by_code.setdefault(code, new)
            entry["vms"] += count
            entry["host_classes"] |= classes
            entry["classes"].append(index)
    top = sorted(by_code.values(), key=lambda e: (-e["vms"], e["code"]))
    blocking = [{"code": e["code"], "vms": e["vms"],
                 "host_classes": sorted((run.class_ids[k] for k in e["host_classes"]),
                                        key=_hc_order),
                 "examples": merged(sorted(e["classes"], key=lambda i: -per_class[i])),
                 "example_message": e["message"], "fix": e["fix"]} for e in top]

    # Host classes that take no VM of some VM class.
    refusing = []
    for host_key, host_ids in run.host_classes.items():
        refused: list[tuple[int, int]] = [(index, per_class[index]) for index in per_class
                   if host_key in outcomes[index].blocked]
        if not refused:
            continue
        refused.sort(key=lambda x: -x[1])
        seen: dict[Decided, int] = {}  # decided class -> VMs
        for index, count in refused:
            seen[decided_of[index]] = seen.get(decided_of[index], 0) + count
        biggest = sorted(seen.items(), key=lambda x: -x[1])[:3]
        refusing.append({
            "host_class": run.class_ids[host_key], "hosts": len(host_ids),
            "vm_classes": len(seen), "vms": sum(c for _, c in refused),
            "largest": [{"vm_class": _describe(d), "vms": c,
                         "codes": _codes(run.judge(d).reasons[host_key])} for d, c in biggest],
            "examples": merged([i for i, _ in refused])})
    refusing.sort(key=_by_vms)

    # VMs that can move nowhere, by class.
    nowhere: dict[Decided, list[int]] = {}
    for index in per_class:
        if outcomes[index].verdict == "nowhere":
            nowhere.setdefault(decided_of[index], []).append(index)
    nowhere_rows = sorted(({"vm_class": _describe(d), "vms": sum(per_class[i] for i in idx),
                            "codes": sorted({c for rs in run.judge(d).reasons.values()
                                             for c in _codes(rs)}),
                            "examples": merged(idx)} for d, idx in nowhere.items()),
                          key=_by_vms)

    # VMs that a restart into QUIRKED (a policy change) keeps movable to more classes.
    restart: dict[Decided, tuple[list[int], list[str], str]] = {}
    for index in per_class:
        decided = decided_of.get(index)
        if decided is None or decided[1] in (None, "QUIRKED"):
            continue
        now = outcomes[index]
        try:
            quirked = run.judge((decided[0], "QUIRKED"))
        except MachinesError:
            continue
        gained = [run.class_ids[k] for k in now.reasons
                  if k in now.blocked and k not in quirked.blocked]
        if gained:
            if decided not in restart:
                from machines.preflight import _quirked_fix

                restart[decided] = ([], gained, _quirked_fix(run.source(decided)))
            restart[decided][0].append(index)
    restart_rows = sorted(({"vm_class": _describe(d), "vms": sum(per_class[i] for i in idx),
                            "regains": gained, "how": how, "examples": merged(idx)}
                           for d, (idx, gained, how) in restart.items()),
                          key=_by_vms)

    return {
        "schema": SCHEMA, "fleet": fleet, "hosts_dir": hosts,
        "vms": len(run.ids), "hosts": len(run.hosts),
        "host_classes": {run.class_ids[k]: run.header()["host_classes"][run.class_ids[k]]
                         | {"hosts": len(ids)} for k, ids in run.host_classes.items()},
        "vm_classes": len(run.vm_classes),
        "verdicts": verdicts,
        "top_blocking_reasons": blocking[:TOP],
        "host_classes_refusing": refusing,
        "nowhere": {"vms": verdicts["nowhere"], "classes": nowhere_rows},
        "need_restart": {"vms": sum(r["vms"] for r in restart_rows), "classes": restart_rows},
    }


def _by_vms(entry: dict[str, Any]) -> int:
    return -int(entry["vms"])


def _hc_order(name: str) -> int:
    return int(name[2:])


def _codes(reasons: list[Any]) -> list[str]:
    return [r.code for r in reasons if r.severity == "blocked"]


def tables(summary: dict[str, Any]) -> list[Table]:
    def cells(*values: Any, status: str = "") -> tuple[Cell, ...]:
        return tuple(Cell(str(v), status if i == 0 else "") for i, v in enumerate(values))

    def ex(names: list[str], total: int) -> str:
        more = total - len(names)
        return ", ".join(names) + (f" and {more} more" if more > 0 else "")

    status = {"ok": "ok", "warn": "warn", "limited": "warn", "nowhere": "blocked",
              "error": "refused"}
    out = [Table(
        f"Fleet pre-flight summary: {summary['vms']} VMs, {summary['hosts']} hosts in "
        f"{len(summary['host_classes'])} host classes, {summary['vm_classes']} VM classes",
        ("verdict", "VMs", "meaning"), ("verdict", "VMs", "meaning"),
        tuple((Cell(v, status[v]), Cell(str(n)), Cell(VERDICT_MEANING[v]))
              for v, n in summary["verdicts"].items()),
        row_ids=tuple(summary["verdicts"]),
        inputs=(("VM list", summary["fleet"]), ("hosts", summary["hosts_dir"])))]
    out.append(Table(
        "Top blocking reasons", ("reason", "VMs blocked somewhere", "on host classes",
                                 "example VMs", "example message", "fix"),
        ("reason", "VMs", "hc", "examples", "message", "fix"),
        tuple((Cell(e["code"], "blocked", e["example_message"]), *cells(
            e["vms"], " ".join(e["host_classes"]), ex(e["examples"], e["vms"]),
            e["example_message"], e["fix"])) for e in summary["top_blocking_reasons"]),
        row_ids=tuple(e["code"] for e in summary["top_blocking_reasons"])))
    out.append(Table(
        "Host classes that can take no VM of some VM class",
        ("host class", "hosts", "VM classes it cannot take", "VMs it cannot take",
         "largest such VM classes (blocked by)", "example VMs"),
        ("hc", "hosts", "vm classes", "VMs", "largest", "examples"),
        tuple(cells(e["host_class"], e["hosts"], e["vm_classes"], e["vms"],
                    "; ".join(f"{x['vm_class']}: {x['vms']} VMs ({', '.join(x['codes'])})"
                              for x in e["largest"]), ex(e["examples"], e["vms"]),
                    status="blocked") for e in summary["host_classes_refusing"]),
        row_ids=tuple(e["host_class"] for e in summary["host_classes_refusing"])))
    out.append(Table(
        f"VMs that can move nowhere: {summary['nowhere']['vms']}",
        ("VM class", "VMs", "blocked by", "example VMs"), ("class", "VMs", "by", "examples"),
        tuple(cells(e["vm_class"], e["vms"], ", ".join(e["codes"]), ex(e["examples"], e["vms"]),
                    status="blocked") for e in summary["nowhere"]["classes"]),
        row_ids=tuple(e["vm_class"] for e in summary["nowhere"]["classes"])))
    out.append(Table(
        f"VMs that need a restart (a policy change) to stay movable: "
        f"{summary['need_restart']['vms']}",
        ("VM class", "VMs", "host classes a QUIRKED restart regains", "how", "example VMs"),
        ("class", "VMs", "regains", "how", "examples"),
        tuple(cells(e["vm_class"], e["vms"], " ".join(e["regains"]), e["how"],
                    ex(e["examples"], e["vms"]), status="warn")
              for e in summary["need_restart"]["classes"]),
        row_ids=tuple(e["vm_class"] for e in summary["need_restart"]["classes"])))
    out.append(Table(
        "Host classes", ("host class", "QEMU", "SEOIB design", "kernel enable flag",
                         "kernel disable flag", "kernels", "hosts"),
        ("hc", "qemu", "seoib", "enable", "disable", "kernels", "hosts"),
        tuple(cells(name, c["qemu"], c["seoib"], c["kernel_enable_flag"],
                    c["kernel_disable_flag"], ", ".join(c["kernels"]), c["hosts"])
              for name, c in summary["host_classes"].items()),
        row_ids=tuple(summary["host_classes"])))
    return out


def render(summary: dict[str, Any], form: str) -> str:
    if form == "json":
        import json

        return json.dumps(summary, indent=1) + "\n"
    parts = tables(summary)
    if form == "md":
        return "\n".join("#" + to_markdown(t) if i else to_markdown(t)
                         for i, t in enumerate(parts))
    return to_html_page(parts[0].title, parts)
