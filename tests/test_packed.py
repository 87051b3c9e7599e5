"""The packed build data (issue 18): the same document as the JSON it is generated from."""

from __future__ import annotations

import json
import os

import pytest

from machines.compat.packed import (
    PackedMap,
    load_packed,
    pack,
    packed_path,
    shipped_json,
    unpack,
)
from machines.registry import IMPORTED, _load_import

SHIPPED = {os.path.basename(p): p for p in shipped_json()}


def test_every_shipped_json_file_is_packed() -> None:
    from kvmglue.profile import SHIPPED_DIR

    dirs = (os.path.dirname(IMPORTED["10.0.2"]), SHIPPED_DIR)
    assert set(SHIPPED) == {f for d in dirs for f in os.listdir(d) if f.endswith(".json")}


def test_shipped_kernel_profiles_load_packed() -> None:
    from kvmglue.profile import SHIPPED_DIR, load, shipped, shipped_names

    for name in shipped_names():
        assert shipped(name) == load(os.path.join(SHIPPED_DIR, f"{name}.json"))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_packed_equals_the_json(name: str) -> None:
    path = SHIPPED[name]
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    loaded = load_packed(path)
    assert loaded is not None, f"{packed_path(path)} missing: python -m machines.compat.regen"
    if "qom" in doc:
        assert isinstance(loaded["qom"]["properties"], PackedMap)
    assert unpack(loaded) == doc
    assert json.dumps(unpack(loaded)) == json.dumps(doc)  # same order, same types


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_packed_is_current(name: str) -> None:
    """The file is exactly what the regen step writes from today's JSON."""
    path = SHIPPED[name]
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


@pytest.mark.parametrize("damage", ["schema", "length", "truncated", "garbage"])
def test_a_packed_file_that_does_not_load_is_not_used(tmp_path, damage: str) -> None:
    """The JSON is read instead: a damaged file, or one a Python's marshal cannot read."""
    import shutil

    from machines.compat.packed import write_packed

    path = tmp_path / "qemu-x.json"
    shutil.copy(IMPORTED["5.2"], path)
    out = write_packed(str(path))
    with open(out, "rb") as f:
        data = f.read()
    first = data.index(b"\n")
    data = {"schema": b"machines/packed-build/v1" + data[data.index(b" "):],
            "length": data[:first] + b"x" + data[first:],
            "truncated": data[: first + 100],
            "garbage": data[: first + 1] + b"\xff" * 64 + data[first + 65:]}[damage]
    with open(out, "wb") as f:
        f.write(data)
    assert load_packed(str(path)) is None


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
