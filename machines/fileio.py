"""Writing output files so that a reader never sees half of one.

Every ``-o FILE`` goes through :func:`atomic_write`: the text goes to a
temporary file in the same directory, is flushed to disk, and only then
renamed over ``FILE``.  An interrupted run (an exception, SIGINT, even
SIGKILL) leaves the previous ``FILE`` as it was; at worst a stray temporary
named ``.FILE.*.tmp`` remains after SIGKILL, never a truncated ``FILE``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from machines.errors import UsageError


def atomic_write(path: str | os.PathLike[str], text: str) -> None:
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise UsageError(f"cannot write {target}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
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


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")
