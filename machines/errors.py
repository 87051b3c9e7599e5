"""Errors that reach the operator as one line and a documented exit code.

Every failure the CLI can meet is one of these; anything else is a bug.  The
exit codes are the ones the README documents:

* 1 ``PowerOnRefused``: QEMU would refuse to power the configuration on.
* 2 ``UsageError`` and its kin: the input was bad (options, names, files).
* 3 ``EnvironmentUnavailable``: something on this host (QEMU, /dev/kvm) is
  missing, refused us, or misbehaved.
* 4 ``QmpSourceError``: ``preflight --qmp`` could not read the running QEMU
  (connection refused, the monitor held by another client, not QMP, broke off);
  3 is ``preflight``'s "a destination is blocked".
"""

from __future__ import annotations

# Messages quote what the operator gave us, which may hold newlines or other
# control characters; shown raw they would break the one-line promise (and
# could forge a second line).  They are shown escaped, as Python would.
_ESCAPES = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7f, 0x85]}
_ESCAPES.update({0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x2028: "\\u2028",
                 0x2029: "\\u2029"})


class MachinesError(Exception):
    """Base class: ``str(err)`` is the one line shown to the operator."""

    exit_code = 2

    def __str__(self) -> str:
        return super().__str__().translate(_ESCAPES)


class UsageError(MachinesError):
    """Bad command line, unknown name or malformed input (exit 2)."""

    exit_code = 2


class OptionError(UsageError):
    """A QEMU option string QEMU itself would reject while parsing it."""

    def __init__(self, option: str, arg: str, reason: str) -> None:
        self.option = option
        self.arg = arg
        self.reason = reason
        super().__init__(f"{option} {arg}: {reason}")  # QEMU's own "where: what"


class PropertyError(UsageError):
    """A property value or name QEMU would reject when it applies it."""


class UnknownMachineError(UsageError):
    """A machine type the build does not have, with the closest names."""

    def __init__(self, name: str, build: str, suggestions: tuple[str, ...], note: str = "") -> None:
        self.name = name
        self.suggestions = suggestions
        hint = ""
        if suggestions:
            hint = "; did you mean " + ", ".join(f"'{s}'" for s in suggestions) + "?"
        extra = f" ({note})" if note else ""
        super().__init__(f"unknown machine type '{name}' for QEMU {build}{extra}{hint}")


class DataError(UsageError):
    """A data or profile file that is not what it claims to be."""


class PowerOnRefused(MachinesError):
    """QEMU (or KVM underneath it) would refuse to power this VM on."""

    exit_code = 1


class EnvironmentUnavailable(MachinesError):
    """A host facility (QEMU binary, /dev/kvm) is absent or failing (exit 3)."""

    exit_code = 3


class QmpSourceError(MachinesError):
    """The running QEMU given with ``--qmp`` could not be read (exit 4)."""

    exit_code = 4
