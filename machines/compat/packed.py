"""Shipped build data in a form that loads without decoding what a command does not use.

A ``machines import`` file is about 540 kB, 90 % of it the QOM property tables
and the values each type's objects showed (``qom.properties``,
``qom.instances``), of which a ``resolve`` reads a handful of types.  The
packed form (``data/qemu-NAME.packed``, and ``data/model.packed`` for the model's
data) is a first line naming the format and the header's length, the rest of the
document in :mod:`marshal` form (version 2: every Python 3 reads it, and unlike
later versions its bytes do not depend on the writing process), then a blob of
per-type values, also marshalled, that the header indexes: a type's table is
decoded the first time it is asked for (:class:`PackedMap`).  Nothing here needs
:mod:`json` to read, so a cold ``resolve`` does not import it.  A packed file that
does not load (or whose JSON has changed since) is not used: the JSON is read
instead.  ``unpack(packed) == original`` is checked by the test suite for every
shipped file, and ``python -m machines.compat.regen`` writes the packed files along
with ``model.json``.
"""

import marshal
import os
from collections.abc import Iterator, Mapping
from typing import Any

PACKED = ("properties", "instances")  # the qom members stored per type
SCHEMA = "machines/packed-build/v2"
MARSHAL_VERSION = 2


def packed_path(path: str) -> str:
    """``data/qemu-10.0.2.json`` -> ``data/qemu-10.0.2.packed``."""
    return path.removesuffix(".json") + ".packed"


def pack(doc: dict[str, Any], source_size: int) -> bytes:
    """The packed form of a JSON document (an import file or the model data).

    ``SCHEMA LENGTH``, a newline, the document as LENGTH bytes of marshal (each packed
    qom member, where there is one, replaced by an index: the type names and the offset
    of each one's value, plus the end), then the per-type values back to back.
    ``source_size`` is the JSON file's size: a packed file whose JSON has since changed
    size is stale.
    """
    blob = bytearray()
    body = dict(doc)
    if isinstance(doc.get("qom"), dict):
        qom = dict(doc["qom"])
        for key in PACKED:
            members = qom.get(key, {})
            offsets = []
            for value in members.values():
                offsets.append(len(blob))
                blob += marshal.dumps(value, MARSHAL_VERSION)
            qom[key] = (tuple(members), (*offsets, len(blob)))
        body["qom"] = qom
    header = marshal.dumps({"doc": body, "packed_from_size": source_size}, MARSHAL_VERSION)
    return f"{SCHEMA} {len(header)}\n".encode() + header + bytes(blob)


class PackedMap(Mapping[str, Any]):
    """A read-only mapping whose values are marshalled in a blob, each decoded once, when
    asked for."""

    __slots__ = ("_blob", "_index", "_offsets", "_values")

    def __init__(self, blob: memoryview, names: tuple[str, ...], offsets: tuple[int, ...]
                 ) -> None:
        self._blob = blob
        self._index = {name: i for i, name in enumerate(names)}
        self._offsets = offsets
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            i = self._index[key]
            value = self._values[key] = marshal.loads(
                self._blob[self._offsets[i]:self._offsets[i + 1]])
            return value

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


def load_packed(path: str) -> dict[str, Any] | None:
    """The packed document next to the JSON file ``path`` (qom tables decoded lazily), or
    None when there is none, it is stale, or it does not load."""
    try:
        with open(packed_path(path), "rb") as f:
            data = f.read()
        source_size = os.path.getsize(path)
    except OSError:
        return None
    first = data.find(b"\n")
    schema, _, length = data[:first].decode("ascii", "replace").partition(" ")
    if schema != SCHEMA or not length.isdigit():
        return None
    start, end = first + 1, first + 1 + int(length)
    try:
        header = marshal.loads(memoryview(data)[start:end])
    except (ValueError, EOFError, TypeError):
        return None  # damaged, or a Python whose marshal cannot read it: use the JSON
    if not isinstance(header, dict) or header.get("packed_from_size") != source_size:
        return None
    doc: dict[str, Any] = header["doc"]
    qom = doc.get("qom")
    if isinstance(qom, dict):
        blob = memoryview(data)[end:]
        for key in PACKED:
            qom[key] = PackedMap(blob, *qom.get(key, ((), (0,))))
    return doc


def load_shipped(path: str, what: str) -> Any:
    """A JSON file the package ships, read from its packed twin when there is a usable one
    (else the JSON itself; failures are one DataError line naming the file)."""
    packed = load_packed(path)
    if packed is not None:
        return packed
    from machines.schema import load_json

    return load_json(path, what)


def unpack(doc: dict[str, Any]) -> dict[str, Any]:
    """A loaded packed document as the plain document it was made from (for the tests)."""
    if not isinstance(doc.get("qom"), dict):
        return doc
    qom = dict(doc["qom"])
    for key in PACKED:
        qom[key] = {name: qom[key][name] for name in qom[key]}
    return {**doc, "qom": qom}


def write_packed(path: str) -> str:
    """Write the packed form of the JSON file ``path``; return where."""
    import json

    from machines.fileio import atomic_stream

    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    out = packed_path(path)
    with atomic_stream(out) as fh:
        fh.write(pack(doc, os.path.getsize(path)))
    return out


def shipped_json(data: str | None = None) -> list[str]:
    """The shipped JSON files that have a packed form: the imports, the model data and
    the kernel profiles."""
    from kvmglue.profile import SHIPPED_DIR, shipped_names
    from machines.registry import DATA, IMPORTED

    data = data or DATA
    return [*(os.path.join(data, os.path.basename(p)) for p in IMPORTED.values()),
            os.path.join(data, "model.json"),
            *(os.path.join(SHIPPED_DIR, f"{name}.json") for name in shipped_names())]


def regenerate_all(data: str | None = None) -> list[str]:
    """Pack every shipped JSON file (``python -m machines.compat.regen`` calls this)."""
    return [write_packed(path) for path in shipped_json(data)]
