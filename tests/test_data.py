"""Generated data stays generated; data files are read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machines.compat.reference import model_from_sources
from machines.errors import DataError, UsageError
from machines.registry import DATA as _DATA
from machines.registry import get_build

DATA = Path(_DATA)


def test_model_data_is_regenerated_from_its_inputs() -> None:
    """data/model.json must equal what the generator makes from its inputs today.

    Regenerate with: python -m machines.compat.regen
    """
    assert json.loads((DATA / "model.json").read_text()) == model_from_sources()


def test_only_merged_reference_entries_are_applied() -> None:
    """The reference feeds only 10.1 and 10.1.2; unconfirmed entries stay out of them."""
    model = json.loads((DATA / "model.json").read_text())
    entries = [e for t in model["tables"].values() for e in t]
    blocked = [e for e in entries if e["property"] == "x-migration-blocked"]
    # Unconfirmed in the reference; the real 11.1.3 binary has it in hw_compat_10_0.
    assert blocked and all(set(e["releases"]) == {"11.0", "11.1"} for e in blocked)
    assert not any(e["property"] == "x-account-downtime" for e in entries)
    # 11.1.3's 10.2 share has no known split; the reference's hw_compat_10_2 is unconfirmed.
    assert not any(e["releases"] for e in model["tables"].get("hw_compat_10_2", []))
    assert model["tables"]["hw+pc_compat_10_2"]


def _write(path: Path, doc: object) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_build_file_newer_schema_is_refused(tmp_path: Path) -> None:
    doc = json.loads((DATA / "qemu-10.0.2.json").read_text())
    doc["schema"] = "machines/qemu-build/v9"
    with pytest.raises(DataError, match="newer than this tool understands"):
        get_build(_write(tmp_path / "new.json", doc))


def test_build_file_wrong_types_name_the_field(tmp_path: Path) -> None:
    doc = json.loads((DATA / "qemu-10.0.2.json").read_text())
    doc["machines"]["pc-q35-9.2"]["tables"] = "hw_compat_9_2"
    with pytest.raises(DataError, match=r"field tables must be a list"):
        get_build(_write(tmp_path / "bad.json", doc))
    doc = json.loads((DATA / "qemu-10.0.2.json").read_text())
    doc["tables"]["hw_compat_9_2"][0] = ["a", "b"]
    with pytest.raises(UsageError, match=r"tables.hw_compat_9_2\[0\]"):
        get_build(_write(tmp_path / "bad2.json", doc))


def test_build_file_extra_fields_are_tolerated(tmp_path: Path) -> None:
    doc = json.loads((DATA / "qemu-10.0.2.json").read_text())
    doc["from_the_future"] = {"anything": [1, 2]}
    doc["machines"]["pc-q35-9.2"]["new_field"] = True
    build = get_build(_write(tmp_path / "extra.json", doc))
    assert "pc-q35-9.2" in build.machines


def test_not_json_and_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DataError, match="not JSON"):
        get_build(str(broken))
    with pytest.raises(DataError, match="no such file"):
        get_build(str(tmp_path / "missing.json"))


def test_shipped_import_passes_the_full_check() -> None:
    from machines.registry import check_import

    doc = json.loads((DATA / "qemu-10.0.2.json").read_text())
    assert check_import(doc, "shipped", deep=True) is doc
