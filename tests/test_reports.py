"""Reports: golden files for every format, and the matrix's contents.

The golden files in tests/golden/ are the reviewed outputs for a fixed input
set (shipped kernel and host profiles only, so nothing depends on this
machine).  After an intended change, regenerate them (a separate step, which
asserts nothing) and review the diff before committing it:

    python tests/test_reports.py --regen

The test only compares: it never writes a golden file, so a run cannot pass by
comparing the output with itself.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from machines.cli import main

GOLDEN = Path(__file__).parent / "golden"
FORMATS = ("text", "md", "csv", "json", "html")
MATRIX = ["matrix", "--release", "10.2", "--seoib", "rfc-v2", "--source-kernel", "linux-7.0",
          "--since", "9.2", "--dest", "linux-6.12/10.2+rfc-v2", "--dest", "linux-7.0/10.0.2",
          "--dest", "linux-7.0/10.2+rfc-v2", "--color", "never"]
MATRIX_REMOVED = ["matrix", "--release", "10.1", "--source-kernel", "linux-6.12",
                  "--family", "q35", "--include-removed", "--since", "4.0",
                  "--dest", "linux-6.12/10.1.2", "--color", "never"]
COMPARE = ["compare", "pc-q35-9.0", "pc-q35-9.2", "--release", "10.0", "--color", "never"]
COMPARE_10_2 = ["compare", "pc-q35-10.0", "pc-q35-10.1", "pc-q35-10.2", "--release", "10.2",
                "--color", "never"]
CASES = {"matrix": MATRIX, "matrix-removed": MATRIX_REMOVED, "compare": COMPARE,
         "compare-10.2": COMPARE_10_2}
SUFFIX = {"text": "txt", "md": "md", "csv": "csv", "json": "json", "html": "html"}


def _produce(argv: list[str], fmt: str, tmp_path: Path) -> str:
    out = tmp_path / f"out.{SUFFIX[fmt]}"
    assert main([*argv, "--format", fmt, "-o", str(out)]) == 0
    return out.read_text()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, fmt: str, tmp_path: Path) -> None:
    golden = GOLDEN / f"{case}.{SUFFIX[fmt]}"
    assert golden.exists(), f"missing {golden}; regenerate: python tests/test_reports.py --regen"
    expected = golden.read_text()  # read before the program runs
    assert _produce(CASES[case], fmt, tmp_path) == expected


def regenerate() -> None:
    """Write every golden file from the program's current output (review the diff!)."""
    GOLDEN.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for case, argv in sorted(CASES.items()):
            for fmt in FORMATS:
                out = Path(scratch) / f"out.{SUFFIX[fmt]}"
                if main([*argv, "--format", fmt, "-o", str(out)]) != 0:
                    raise SystemExit(f"{case} --format {fmt} failed")
                (GOLDEN / f"{case}.{SUFFIX[fmt]}").write_text(out.read_text())
                print(f"wrote {GOLDEN / f'{case}.{SUFFIX[fmt]}'}")


def test_text_fits_100_columns_with_4_kernels_and_8_hosts(capsys: Any, tmp_path: Path) -> None:
    dests = [a for d in ("linux-6.12/10.2", "linux-7.0/10.0.2", "linux-7.0/10.1",
                         "linux-7.0/10.1.2", "linux-6.12/10.0", "linux-7.0/10.2",
                         "linux-6.18.y-seoib/10.2", "linux-6.12/10.0.2") for a in ("--dest", d)]
    doc = json.loads((Path(__file__).parents[1] / "kvmglue" / "profiles" /
                      "linux-7.0.json").read_text())
    doc["name"] = "linux-7.0-local"
    kernel = tmp_path / "linux-7.0-local.json"
    kernel.write_text(json.dumps(doc))
    kernels = [a for k in ("linux-6.12", "linux-6.18.y-seoib", "linux-7.0", str(kernel))
               for a in ("--kernel", k)]
    assert main(["matrix", *kernels, "--source-kernel", "linux-7.0",
                 "--include-removed", "--color", "never", *dests]) == 0
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "D8" in out and "K4" in out


def test_colour_only_when_asked_or_on_a_tty(capsys: Any) -> None:
    assert main(["matrix", "--since", "10.2", "--source-kernel", "linux-7.0"]) == 0
    assert "\033[" not in capsys.readouterr().out  # captured stdout is not a tty
    assert main(["matrix", "--since", "10.2", "--source-kernel", "linux-7.0", "--seoib", "rfc-v2",
                 "--color", "always"]) == 0
    assert "\033[32m" in capsys.readouterr().out


def test_matrix_json_rows_and_reasons(tmp_path: Path) -> None:
    doc = json.loads(_produce(MATRIX, "json", tmp_path))
    assert doc["schema"] == "machines/matrix/v1"
    rows = {r["machine"]: r for r in doc["rows"]}
    assert list(rows)[:3] == ["pc-i440fx-10.2", "pc-i440fx-10.1", "pc-i440fx-10.0"]
    new = rows["pc-q35-10.2"]
    assert new["seoib_policy"]["value"] is None  # the posted code has no user setting
    assert new["states"]["linux-6.12"]["state"] == "QUIRKED"
    assert "rfc-fallback" in [s["rule"] for s in new["states"]["linux-6.12"]["trace"]]
    assert new["states"]["linux-7.0"]["state"] == "RESPECTED"
    assert [r["code"] for r in new["verdicts"]["linux-6.12/10.2+rfc-v2"]["reasons"]] == [
        "seoib-destination-abort"]
    assert [r["code"] for r in new["verdicts"]["linux-7.0/10.0.2"]["reasons"]] == [
        "machine-type-unknown"]
    # no machine-type gate: an old type changes too, and can no longer go to QEMU 10.0.2
    assert rows["pc-q35-10.0"]["states"]["linux-7.0"]["state"] == "RESPECTED"
    assert [r["code"] for r in rows["pc-q35-10.0"]["verdicts"]["linux-7.0/10.0.2"]["reasons"]
            ] == ["seoib-section-unsupported"]
    assert new["verdicts"]["linux-7.0/10.2+rfc-v2"]["verdict"] == "ok"
    doc = json.loads(_produce([*MATRIX[:3], *MATRIX[5:]], "json", tmp_path))
    assert {r["states"]["linux-7.0"]["state"] for r in doc["rows"]} == {"QUIRKED"}


def test_matrix_filters_and_removed_types(tmp_path: Path) -> None:
    doc = json.loads(_produce(MATRIX_REMOVED, "json", tmp_path))
    names = [r["machine"] for r in doc["rows"]]
    assert all(n.startswith("pc-q35-") for n in names)
    gone = [r for r in doc["rows"] if not r["registered"]]
    assert {r["machine"] for r in gone} == {"pc-q35-4.1", "pc-q35-4.0.1", "pc-q35-4.0"}
    assert all(set(r["states"].values()) == {None} for r in gone)
    assert doc["rows"][0]["seoib_policy"]["value"] is None  # 10.1 has no seoib-policy


def test_html_is_self_contained(tmp_path: Path) -> None:
    page = _produce(MATRIX, "html", tmp_path)
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert "<link" not in page
    assert page.count('<tr class="row"') == 2 * 4  # 10.2, 10.1, 10.0, 9.2 of each family
    assert "Inputs" in page and "Legend" in page


def test_output_file_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "m.txt"
    target.write_text("previous\n")
    assert main([*MATRIX, "-o", str(target), "--family", "nope"]) == 2  # argparse refuses
    assert target.read_text() == "previous\n"
    assert main([*MATRIX, "-o", str(target)]) == 0
    assert target.read_text().startswith("Machine types of QEMU 10.2")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m.txt")]


def test_matrix_legends_explain_only_what_is_shown(capsys: Any) -> None:
    import re
    from html.parser import HTMLParser

    argv = ["matrix", "--since", "9.2", "--include-removed", "--source-kernel", "linux-7.0",
            "--dest", "linux-6.12/10.2", "--color", "never"]
    assert main([*argv, "--format", "html"]) == 0
    page = capsys.readouterr().out

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.where: list[str] = []
            self.shown: list[str] = []
            self.terms: list[str] = []

        def handle_starttag(self, tag: str, attrs: Any) -> None:
            self.where.append("inputs" if ("class", "inputs") in attrs else tag)

        def handle_endtag(self, tag: str) -> None:
            self.where.pop()

        def handle_data(self, data: str) -> None:
            if not self.where:
                return
            if self.where[-1] == "dt" and "dl" in self.where:
                self.terms.append(data)
            elif {"th", "summary"} & set(self.where[-1:]) or self.where[-1] == "td":
                self.shown.append(data)

    cells = Cells()
    cells.feed(page)
    assert cells.terms and "K1" not in cells.terms and "quirk:c" not in cells.terms
    for term in cells.terms:
        assert any(term in text for text in cells.shown), term
    # Machine names never wrap; QUIRKED has its own colour, not warn's yellow.
    assert "tr.row td:first-child, th { white-space: nowrap; }" in page
    colours = dict(re.findall(r"\.s-([\w-]+) \{ background: (#[0-9a-f]+); \}", page))
    assert colours["quirked"] != colours["warn"]
    assert main([*argv]) == 0
    text = capsys.readouterr().out
    table, _, legend = text.partition("\n\n    K1 ")
    for line in ("    K1 " + legend).splitlines():
        term = line.split()[0] if line[:8].strip() else None
        if term and not line.startswith("        "):
            assert term in table, term


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        raise SystemExit("usage: python tests/test_reports.py --regen")
    regenerate()
