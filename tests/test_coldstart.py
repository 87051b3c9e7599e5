"""What a cold ``resolve``/``preflight`` process loads (issue 18).

The cold-start target is measured by benchmarks/coldstart.py (numbers in BENCHMARKS.md); these
tests only keep the causes of a slow start from coming back: a module the command does not
need, and value classes whose annotations typing has to compile at every start.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import typing
from functools import cache

import pytest

import machines

# Imported by neither command: each costs a cold start a millisecond or more
# (argparse with gettext/locale, pathlib with urllib/ipaddress, fractions with decimal).
NOT_ON_THE_HOT_PATH = {"argparse", "pathlib", "fractions", "decimal", "asyncio", "cffi", "qemu",
                       "attr", "attrs", "inspect", "ast", "dataclasses", "tempfile", "ipaddress",
                       "urllib", "textwrap", "shlex", "machines.fleet", "machines.qmp",
                       "kvmglue.kvm"}

COMMANDS = {
    "resolve": ("resolve", "-M", "pc-q35-10.0", "--device", "ioapic"),
    "preflight": ("preflight", "--release", "10.0.2", "--dest", "linux-7.0/10.0.2",
                  "-M", "pc-q35-10.0", "-accel", "tcg"),
}


@cache  # each command's subprocess runs once for all the tests here
def _modules_after(argv: tuple[str, ...]) -> frozenset[str]:
    """The modules a command adds to what the interpreter (and an editable install's
    import hook, which may bring pathlib) loaded before it."""
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import contextlib, io\n"
            "from machines.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main({list(argv)!r})\n"
            "print(rc, *sorted(set(sys.modules) - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.split()
    assert out[0] == "0"
    return frozenset(out[1:])


# The shipped data (builds, model, kernel profiles) is packed (marshal): a text answer
# decodes no JSON at all.
ALSO_NOT = {"resolve": {"json"}, "preflight": {"json"}}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_cold_command_imports_only_what_it_needs(command: str) -> None:
    loaded = _modules_after(COMMANDS[command])
    assert "machines.resolve" in loaded  # the command did its work
    avoid = NOT_ON_THE_HOT_PATH | ALSO_NOT[command]
    heavy = {m for m in loaded if m in avoid or m.split(".")[0] in avoid - {"machines", "kvmglue"}}
    assert not heavy, f"{command} imported {sorted(heavy)}"


def _value_classes() -> list[type]:
    found = []
    for info in pkgutil.walk_packages(machines.__path__, "machines."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields") \
                    and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def test_value_classes_on_the_hot_path_have_evaluated_annotations() -> None:
    """typing.NamedTuple compiles each string annotation (``from __future__ import
    annotations``) into a ForwardRef: 130 compile() calls, 2-3 ms of a cold resolve.  The
    modules a resolve or pre-flight loads therefore do without that import."""
    hot = _modules_after(COMMANDS["preflight"]) | _modules_after(COMMANDS["resolve"])
    classes = [c for c in _value_classes() if c.__module__ in hot]
    assert len(classes) > 20
    stringly = [f"{c.__module__}.{c.__qualname__}.{field}"
                for c in classes for field, hint in getattr(c, "__annotations__", {}).items()
                if isinstance(hint, (str, typing.ForwardRef))]
    assert not stringly, stringly
