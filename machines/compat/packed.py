"""Shipped build data in a form that loads without decoding what a command does not use.

A ``machines import`` file is about 540 kB, 90 % of it the QOM property tables
and the values each type's objects showed (``qom.properties``,
``qom.instances``), of which a ``resolve`` reads a handful of types.  The
packed form (``data/qemu-NAME.packed``) is the rest of the document as one
line of JSON, whose packed members index a blob of per-type JSON texts that
follows it: loading decodes the line only, and a type's table is decoded the
first time it is asked for (:class:`PackedMap`).  ``unpack(packed) == original`` is checked by
the test suite for every shipped build, and ``python -m machines.compat.regen``
writes the packed files along with ``model.json``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

PACKED = ("properties", "instances")  # the qom members stored as per-type JSON texts
SCHEMA = "machines/packed-build/v1"


def packed_path(path: str) -> str:
    """``data/qemu-10.0.2.json`` -> ``data/qemu-10.0.2.packed``."""
    return path.removesuffix(".json") + ".packed"


def pack(doc: dict[str, Any], source_size: int) -> bytes:
    """The packed form of a ``machines import`` document.

    One line of JSON (the document, with each packed qom member an index
    ``{type: [offset, length]}``), a newline, then the per-type JSON texts
    back to back, at those offsets.  ``source_size`` is the JSON file's size: a packed
    file whose JSON has since changed size is stale and not used.
    """
    qom = dict(doc["qom"])
    blob = bytearray()
    for key in PACKED:
        index = {}
        for name, value in qom.get(key, {}).items():
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
            index[name] = [len(blob), len(text)]
            blob += text
        qom[key] = index
    header = json.dumps({**doc, "packed": SCHEMA, "packed_from_size": source_size, "qom": qom},
                        separators=(",", ":"),
                        ensure_ascii=False).encode()
    return header + b"\n" + bytes(blob)


class PackedMap(Mapping[str, Any]):
    """A read-only mapping whose values are JSON texts in a blob, each decoded once, when
    asked for."""

    __slots__ = ("_blob", "_index", "_values")

    def __init__(self, blob: memoryview, index: dict[str, list[int]]) -> None:
        self._blob = blob
        self._index = index
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            offset, length = self._index[key]
            value = self._values[key] = json.loads(bytes(self._blob[offset:offset + length]))
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def load_packed(path: str) -> dict[str, Any] | None:
    """The packed document next to ``path`` with lazy qom tables, or None when there is none."""
    try:
        with open(packed_path(path), "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    end = data.find(b"\n")
    doc: dict[str, Any] = json.loads(data[:end])
    if doc.pop("packed", None) != SCHEMA:
        return None
    size = doc.pop("packed_from_size", None)
    try:
        if size != os.path.getsize(path):
            return None  # the JSON changed since the regen step: read the JSON itself
    except OSError:
        return None
    blob = memoryview(data)[end + 1:]
    qom = doc["qom"]
    for key in PACKED:
        qom[key] = PackedMap(blob, qom.get(key, {}))
    return doc


def unpack(doc: dict[str, Any]) -> dict[str, Any]:
    """A loaded packed document as the plain document it was made from (for the tests)."""
    qom = dict(doc["qom"])
    for key in PACKED:
        qom[key] = {name: qom[key][name] for name in qom[key]}
    return {**doc, "qom": qom}


def write_packed(path: str) -> str:
    """Write the packed form of the import file ``path``; return where."""
    from machines.fileio import atomic_stream

    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = packed_path(path)
    with atomic_stream(out) as fh:
        fh.write(pack(doc, os.path.getsize(path)))
    return out


def regenerate_all(data: str | None = None) -> list[str]:
    """Pack every shipped import file (``python -m machines.compat.regen`` calls this)."""
    from machines.registry import DATA, IMPORTED

    data = data or DATA
    return [write_packed(os.path.join(data, os.path.basename(p))) for p in IMPORTED.values()]
