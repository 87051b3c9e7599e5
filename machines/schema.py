"""Reading versioned JSON documents (data files, profiles) defensively.

Every document this project reads or writes names its kind and version in a
``"schema"`` field, ``machines/<kind>/v<N>``.  A reader accepts its own kind
at its own version or older, refuses a newer one with a message that says so,
ignores fields it does not know, and rejects a field of the wrong type naming
the field's path (``machines.pc-q35-9.2.tables[3]``).
"""

from __future__ import annotations

import os
import re
from typing import Any, TypeVar

from machines.errors import DataError

T = TypeVar("T")
_SCHEMA = re.compile(r"^machines/([a-z0-9-]+)/v(\d+)$")
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number"}  # bool before int: True is an int


def load_json(path: str | os.PathLike[str], what: str) -> Any:
    """Parse a JSON file; any failure is one DataError line naming the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise DataError(f"{what} {path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{what} {path}: is a directory") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{what} {path}: cannot read: {getattr(err, 'strerror', None) or err}") \
            from None
    import json  # here: the shipped data is packed, so a cold start may never need it

    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{what} {path}: not JSON (line {err.lineno}, column {err.colno}: "
                        f"{err.msg})") from None
    except RecursionError:
        raise DataError(f"{what} {path}: nested too deeply") from None


def check_schema(doc: Any, kind: str, version: int, where: str) -> int:
    """Accept ``machines/<kind>/v<=version``; return the document's version."""
    if not isinstance(doc, dict):
        raise DataError(f"{where}: expected a JSON object at the top level")
    schema = doc.get("schema")
    if not isinstance(schema, str):
        raise DataError(f"{where}: no \"schema\" field (expected machines/{kind}/v{version})")
    match = _SCHEMA.match(schema)
    if not match or match.group(1) != kind:
        raise DataError(f"{where}: schema is {schema!r}, expected machines/{kind}/v{version}")
    found = int(match.group(2))
    if found > version:
        raise DataError(f"{where}: schema {schema} is newer than this tool understands "
                        f"(up to machines/{kind}/v{version}); upgrade machines")
    return found


def get(doc: Any, path: str, kind: type[T], where: str, default: Any = ...) -> T:
    """``doc[path]`` with its type checked; ``path`` is dotted for the message."""
    node = doc
    walked = []
    for part in path.split("."):
        walked.append(part)
        if not isinstance(node, dict):
            raise DataError(f"{where}: {'.'.join(walked[:-1]) or 'document'} must be an object")
        if part not in node:
            if default is not ...:
                return default  # type: ignore[no-any-return,unused-ignore]
            raise DataError(f"{where}: missing field {'.'.join(walked)}")
        node = node[part]
    return expect(node, kind, path, where)


def expect(value: Any, kind: type[T], path: str, where: str) -> T:
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        raise DataError(f"{where}: field {path} must be {_TYPE_NAMES.get(kind, kind.__name__)}, "
                        f"not {_describe(value)}")
    checked: T = value
    return checked


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__
