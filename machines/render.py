"""Tables for people and pipelines: text, Markdown, CSV and one self-contained HTML page.

A :class:`Table` is the shared shape of the matrix and the machine-type
comparison: titled columns, rows of cells, and for every cell a short text,
a status (ok, warn, blocked, respected...) and the full reason behind it.
Each renderer shows what its medium can: text fits 100 columns and colours
only on a terminal; HTML shows reasons on hover and in an expandable detail,
with a legend and the inputs the page was made from, and loads nothing from
the network.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence

from attrs import field, frozen

# status -> (ANSI colour, HTML background, meaning)
STATUSES: dict[str, tuple[str, str, str]] = {
    "ok": ("32", "#c8ecc8", "the VM can migrate there"),
    "warn": ("33", "#f7e7a1", "it can, with warnings"),
    "blocked": ("31", "#f4b8b8", "it cannot"),
    "respected": ("32", "#c8ecc8", "SEOIB advertised and honoured (ENABLE)"),
    "not-advertised": ("36", "#c9e4f2", "SEOIB not advertised (DISABLE)"),
    "quirked": ("35", "#f3c9e6", "legacy: advertised under split irqchip, not honoured"),
    "refused": ("31", "#f4b8b8", "QEMU would refuse to power the VM on"),
    "na": ("90", "#e6e6e6", "does not apply"),
    "differs": ("33", "#f7e7a1", "differs between the machine types"),
    "": ("", "", ""),
}


@frozen
class Cell:
    text: str  # short, for the 100-column text form
    status: str = ""
    detail: str = ""
    full: str = ""  # the long label, where the other forms have room

    @property
    def label(self) -> str:
        return self.full or self.text


@frozen
class Table:
    title: str
    columns: tuple[str, ...]  # full titles
    short: tuple[str, ...]  # titles for the text form (<= a few characters where needed)
    rows: tuple[tuple[Cell, ...], ...]
    row_ids: tuple[str, ...] = ()  # one per row, for the HTML page (data-row)
    legend: tuple[tuple[str, str], ...] = ()  # (short title, what it is), for the text form
    # The same for the forms that show full titles and labels (md, html): a legend
    # explains only what its form shows.  None: the text form's legend serves.
    long_legend: tuple[tuple[str, str], ...] | None = None

    @property
    def full_legend(self) -> tuple[tuple[str, str], ...]:
        return self.legend if self.long_legend is None else self.long_legend
    inputs: tuple[tuple[str, str], ...] = ()  # what the table was made from
    group_by: int | None = None  # column whose value starts a new group (family)
    notes: tuple[str, ...] = field(default=())


def to_text(table: Table, color: bool = False, width: int = 100) -> str:
    shown = [i for i in range(len(table.columns)) if i != table.group_by]
    widths = {i: max(len(table.short[i]), *(len(r[i].text) for r in table.rows))
              if table.rows else len(table.short[i]) for i in shown}
    # two spaces between columns where the table fits the width, else one
    sep = "  " if sum(widths.values()) + 2 * (len(shown) - 1) <= width else " "
    out = io.StringIO()
    out.write(table.title + "\n\n")

    def line(cells: Sequence[str], statuses: Sequence[str] = ()) -> str:
        parts = []
        for i in shown:
            padded = cells[i].ljust(widths[i])
            status = statuses[i] if i < len(statuses) else ""
            if color and STATUSES.get(status, ("",))[0]:
                padded = f"\033[{STATUSES[status][0]}m{padded}\033[0m"
            parts.append(padded)
        return sep.join(parts).rstrip()

    out.write(line(table.short) + "\n")
    out.write(sep.join("-" * widths[i] for i in shown) + "\n")
    group = None
    for row in table.rows:
        if table.group_by is not None and row[table.group_by].text != group:
            group = row[table.group_by].text
            out.write(f"{group}\n")
        out.write(line([c.text for c in row], [c.status for c in row]) + "\n")
    if table.legend:
        out.write("\n")
        for short, meaning in table.legend:
            out.write(_wrap(f"{short:>6}  {meaning}", width, 8))
    for note in table.notes:
        out.write(_wrap(note, width, 2))
    text = out.getvalue()
    return text


def _wrap(text: str, width: int, indent: int) -> str:
    import textwrap

    return textwrap.fill(text, width=width, subsequent_indent=" " * indent,
                         break_on_hyphens=False) + "\n"


def to_markdown(table: Table) -> str:
    out = io.StringIO()
    out.write(f"# {table.title}\n\n")

    def esc(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out.write("| " + " | ".join(esc(c) for c in table.columns) + " |\n")
    out.write("|" + "|".join("---" for _ in table.columns) + "|\n")
    for row in table.rows:
        out.write("| " + " | ".join(esc(c.label) for c in row) + " |\n")
    if table.full_legend:
        out.write("\n")
        for short, meaning in table.full_legend:
            out.write(f"- **{esc(short)}**: {esc(meaning)}\n")
    if table.notes:
        out.write("\n" + "\n\n".join(esc(n) for n in table.notes) + "\n")
    if table.inputs:
        out.write("\n## Inputs\n\n")
        for name, value in table.inputs:
            out.write(f"- {esc(name)}: {esc(value)}\n")
    return out.getvalue()


def to_csv(table: Table, details: bool = True) -> str:
    """One row per table row; with ``details``, a reason column after each status cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header: list[str] = []
    has_detail = [details and any(r[i].detail for r in table.rows)
                  for i in range(len(table.columns))]
    for i, title in enumerate(table.columns):
        header.append(title)
        if has_detail[i]:
            header.append(f"{title} (why)")
    writer.writerow(header)
    for row in table.rows:
        cells: list[str] = []
        for i, cell in enumerate(row):
            cells.append(cell.label)
            if has_detail[i]:
                cells.append(cell.detail)
        writer.writerow(cells)
    return out.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f0f0f0; position: sticky; top: 0; }
tr.group td { background: #fafafa; font-weight: bold; }
tr.row td:first-child, th { white-space: nowrap; }
details summary { cursor: pointer; list-style: none; }
details summary::-webkit-details-marker { display: none; }
details[open] summary { font-weight: bold; }
details .why { max-width: 28em; font-size: 0.85em; white-space: normal; margin-top: 0.3em; }
.legend span { display: inline-block; padding: 0.1em 0.6em; margin: 0.1em; border: 1px solid #bbb; }
dl.inputs dt { font-weight: bold; margin-top: 0.4em; }
dl.inputs dd { margin-left: 1.5em; font-family: monospace; font-size: 0.85em; }
"""


def to_html(table: Table) -> str:
    return to_html_page(table.title, (table,))


def to_html_page(title: str, tables: Sequence[Table],
                 statuses: Mapping[str, tuple[str, str, str]] | None = None) -> str:
    """One self-contained page: the first table under the page title, each later one
    under its own heading (the gaps report shows several).  ``statuses`` adds
    cell statuses of the caller's own (name -> ANSI colour, background, meaning)."""
    e = html.escape
    out = io.StringIO()
    known = {**STATUSES, **(statuses or {})}
    styles = "\n".join(f".s-{name} {{ background: {colors[1]}; }}"
                       for name, colors in known.items() if name and colors[1])
    out.write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    out.write(f"<title>{e(title)}</title>\n<style>{_CSS}{styles}\n</style>\n</head>\n<body>\n")
    for n, table in enumerate(tables):
        _html_table(out, table, "h1" if n == 0 else "h2", "matrix" if n == 0 else f"table{n}",
                    known)
    out.write("</body>\n</html>\n")
    return out.getvalue()


def _html_table(out: io.StringIO, table: Table, heading: str, table_id: str,
                statuses: Mapping[str, tuple[str, str, str]]) -> None:
    e = html.escape
    shown = [i for i in range(len(table.columns)) if i != table.group_by]
    out.write(f"<{heading}>{e(table.title)}</{heading}>\n<table id=\"{table_id}\">\n<thead><tr>")
    for i in shown:
        out.write(f"<th>{e(table.columns[i])}</th>")
    out.write("</tr></thead>\n<tbody>\n")
    group = None
    for n, row in enumerate(table.rows):
        if table.group_by is not None and row[table.group_by].text != group:
            group = row[table.group_by].text
            out.write(f"<tr class=\"group\"><td colspan=\"{len(shown)}\">{e(group)}"
                      "</td></tr>\n")
        row_id = table.row_ids[n] if table.row_ids else str(n)
        out.write(f"<tr class=\"row\" data-row=\"{e(row_id)}\">")
        for i in shown:
            cell = row[i]
            cls = f" class=\"s-{e(cell.status)}\"" if cell.status else ""
            data = f" data-column=\"{e(table.columns[i])}\" data-status=\"{e(cell.status)}\""
            if cell.detail:
                out.write(f"<td{cls}{data} title=\"{e(cell.detail)}\"><details><summary>"
                          f"{e(cell.label)}</summary><div class=\"why\">{e(cell.detail)}</div>"
                          "</details></td>")
            else:
                out.write(f"<td{cls}{data}>{e(cell.label)}</td>")
        out.write("</tr>\n")
    out.write("</tbody>\n</table>\n")
    used = {c.status for r in table.rows for c in r if c.status}
    if used or table.full_legend:
        out.write("<h2>Legend</h2>\n<p class=\"legend\">")
        for name in statuses:
            if name in used:
                out.write(f"<span class=\"s-{e(name)}\">{e(name)}: {e(statuses[name][2])}</span>")
        out.write("</p>\n")
        if table.full_legend:
            out.write("<dl>")
            for short, meaning in table.full_legend:
                out.write(f"<dt>{e(short)}</dt><dd>{e(meaning)}</dd>")
            out.write("</dl>\n")
    for note in table.notes:
        out.write(f"<p>{e(note)}</p>\n")
    if table.inputs:
        out.write("<h2>Inputs</h2>\n<dl class=\"inputs\">")
        for name, value in table.inputs:
            out.write(f"<dt>{e(name)}</dt><dd>{e(value)}</dd>")
        out.write("</dl>\n")
