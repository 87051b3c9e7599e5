"""Progress of a long run on stderr: on a terminal, or when asked (``--progress``).

On a terminal each step overwrites the last on one line, which is cleared at
the end; asked for without a terminal (a log), each step is a line of its own.
stdout is never touched, so piped output stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def reporter(wanted: bool | None, stream: TextIO | None = None
             ) -> Iterator[Callable[[str], None]]:
    """A callback for steps; ``wanted`` None means: only on a terminal."""
    out = stream if stream is not None else sys.stderr
    tty = out.isatty()
    if wanted is None:
        wanted = tty
    shown = False

    def step(text: str) -> None:
        nonlocal shown
        if not wanted:
            return
        if tty:
            out.write(f"\r\033[Kmachines: {text}")
        else:
            out.write(f"machines: {text}\n")
        out.flush()
        shown = True

    try:
        yield step
    finally:
        if shown and tty:
            out.write("\r\033[K")
            out.flush()
