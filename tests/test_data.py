"""Generated data stays generated; data files are read defensively."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from machines.compat.reference import SOURCES, build_model
from machines.errors import DataError, UsageError
from machines.registry import DATA as _DATA
from machines.registry import get_build

DATA = Path(_DATA)


def test_model_data_is_regenerated_from_its_inputs() -> None:
    """data/model.json must equal what the generator makes from sources/ today.

    Regenerate with: python -m machines.compat.regen
    """
    base = json.loads((DATA / "qemu-10.0.2.json").read_text())
    reference = json.loads((SOURCES / "qemu-compat-10.1-11.0.json").read_text())
    properties = json.loads((SOURCES / "model-properties.json").read_text())
    fresh = build_model(base, reference, properties)
    assert json.loads((DATA / "model.json").read_text()) == fresh


def test_only_merged_reference_entries_are_applied() -> None:
    model = json.loads((DATA / "model.json").read_text())
    entries = [e for t in model["tables"].values() for e in t]
    assert not any(e["property"] == "x-migration-blocked" and e["releases"] for e in entries)
    assert not any(e["property"] == "x-account-downtime" for e in entries)
    hw_10_2 = [e for e in model["tables"]["hw_compat_10_2"] if e["releases"]]
    assert hw_10_2 == []  # scsi-block migrate-pr is 11.0, beyond the model


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
