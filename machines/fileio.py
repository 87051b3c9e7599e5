"""Writing output files so that a reader never sees half of one.

Every ``-o FILE`` goes through :func:`atomic_write`: the text goes to a
temporary file in the same directory, is flushed to disk, and only then
renamed over ``FILE``.  An interrupted run (an exception, SIGINT, even
SIGKILL) leaves the previous ``FILE`` as it was; at worst a stray temporary
named ``.FILE.*.tmp`` remains after SIGKILL, never a truncated ``FILE``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from machines.errors import UsageError


@contextlib.contextmanager
def atomic_stream(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only when the block ends without error."""
    import tempfile  # not at import time: most runs write nothing

    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                                   dir=directory)
    except OSError as err:
        raise UsageError(f"cannot write {target}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if os.path.exists(target):
            with contextlib.suppress(OSError):
                os.chmod(tmp, os.stat(target).st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise UsageError(f"cannot write {target}: {err.strerror}") from None
        raise


def atomic_write(path: str | os.PathLike[str], text: str) -> None:
    with atomic_stream(path) as fh:
        fh.write(text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    import json  # here: reading a command's shipped data never needs it

    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
