"""What a run left behind: live processes that name a path, children, zombies."""

from __future__ import annotations

import os


def processes_mentioning(text: str) -> list[int]:
    """PIDs of live (or zombie) processes whose command line contains ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


def children() -> list[tuple[int, str]]:
    """(pid, state) of this process's children: 'Z' is a zombie nobody reaped."""
    pids: list[int] = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as fh:
            pids += [int(p) for p in fh.read().split()]
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                out.append((pid, fh.read().rsplit(")", 1)[1].split()[0]))
        except OSError:
            continue
    return out
