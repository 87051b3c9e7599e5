"""The packed build data (issue 18): the same document as the JSON it is generated from."""

from __future__ import annotations

import json
import os

import pytest

from machines.compat.packed import PackedMap, load_packed, pack, packed_path, unpack
from machines.registry import IMPORTED, _load_import


@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_packed_equals_the_json(name: str) -> None:
    path = IMPORTED[name]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    loaded = load_packed(path)
    assert loaded is not None, f"{packed_path(path)} missing: python -m machines.compat.regen"
    assert isinstance(loaded["qom"]["properties"], PackedMap)
    assert unpack(loaded) == doc


@pytest.mark.parametrize("name", sorted(IMPORTED))
def test_packed_is_current(name: str) -> None:
    """The file is exactly what the regen step writes from today's JSON."""
    path = IMPORTED[name]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    with open(packed_path(path), "rb") as f:
        assert f.read() == pack(doc, os.path.getsize(path)), \
            "stale: run python -m machines.compat.regen"


def test_shipped_builds_load_packed() -> None:
    doc = _load_import(os.path.realpath(IMPORTED["10.0.2"]))
    assert isinstance(doc["qom"]["instances"], PackedMap)
    props = doc["qom"]["properties"]
    assert "ioapic" in props and "no-such-type" not in props
    assert props["ioapic"] is props["ioapic"]  # decoded once
    assert len(props) == len(list(props))


def test_missing_packed_file_falls_back(tmp_path) -> None:
    assert load_packed(str(tmp_path / "qemu-9.9.json")) is None


def test_a_changed_json_is_read_instead(tmp_path) -> None:
    """A packed file whose JSON has changed size since the regen step is not used."""
    import shutil

    from machines.compat.packed import write_packed

    path = tmp_path / "qemu-x.json"
    shutil.copy(IMPORTED["5.2"], path)
    write_packed(str(path))
    assert load_packed(str(path)) is not None
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n")
    assert load_packed(str(path)) is None
