"""Machine type names: family prefix, version, and how they sort.

QEMU names versioned machine types ``<prefix>-<version>``: ``pc-q35-10.0``,
``pc-i440fx-2.12``, the bug-fix ``pc-q35-4.0.1``, and downstream builds add
their own, such as RHEL's ``pc-q35-rhel9.6.0``.  A version is an optional
alphabetic tag and two or more dotted numbers.  Versions of one family sort by
(tag, numbers), newest first, so downstream types need no special case.
"""

import re
from collections.abc import Iterable
from functools import cache
from typing import NamedTuple

_VERSIONED = re.compile(r"^(?P<prefix>.+?)-(?P<tag>[A-Za-z]*)(?P<numbers>\d+(?:\.\d+)+)$")


class MachineVersion(NamedTuple):
    """A machine type's version: ``(tag, numbers)``, ordered oldest to newest."""

    tag: str
    numbers: tuple[int, ...]

    @property
    def major_minor(self) -> tuple[int, int]:
        return self.numbers[0], self.numbers[1]

    def __str__(self) -> str:
        return self.tag + ".".join(str(n) for n in self.numbers)


class MachineName(NamedTuple):
    """A parsed machine type name."""

    name: str
    prefix: str
    version: MachineVersion | None

    @property
    def versioned(self) -> bool:
        return self.version is not None


ZERO = MachineVersion("", (0, 0))


def version_key(name: str) -> MachineVersion:
    """Sort key for machine names: the version, or 0.0 for unversioned names."""
    return parse_machine_name(name).version or ZERO


@cache
def parse_machine_name(name: str) -> MachineName:
    """Split a machine type name into its family prefix and version."""
    match = _VERSIONED.match(name)
    if not match:
        return MachineName(name, name, None)
    numbers = tuple(int(n) for n in match["numbers"].split("."))
    return MachineName(name, match["prefix"], MachineVersion(match["tag"], numbers))


def parse_release(text: str) -> tuple[int, ...]:
    """A QEMU release like ``10.1`` or ``10.1.2`` as a tuple of numbers."""
    parts = text.split(".")
    if not 2 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"not a QEMU release: {text!r}")
    return tuple(int(p) for p in parts)


def closest_names(name: str, candidates: Iterable[str], limit: int = 3) -> tuple[str, ...]:
    """The candidates most like ``name``, best first (for "did you mean").

    Within the same family, the nearest versions come first: an operator who
    typed ``pc-q35-10.9`` wants ``pc-q35-10.2``, not ``pc-q35-1.0``-alikes.
    """
    pool = list(candidates)
    wanted = parse_machine_name(name)
    if wanted.version is not None:
        same_family = [
            c for c in pool if (p := parse_machine_name(c)).prefix == wanted.prefix and p.version
        ]
        if same_family:
            def distance(candidate: str) -> tuple[int, str]:
                version = parse_machine_name(candidate).version
                target = wanted.version
                assert version is not None and target is not None
                gap = abs(_scalar(version.numbers) - _scalar(target.numbers))
                return gap, candidate

            return tuple(sorted(same_family, key=distance)[:limit])
    import difflib  # only on the way to an error message

    return tuple(difflib.get_close_matches(name, pool, n=limit, cutoff=0.5))


def _scalar(numbers: tuple[int, ...]) -> int:
    """A version as one number (minor versions stay below 100), for distances."""
    return numbers[0] * 10000 + (numbers[1] if len(numbers) > 1 else 0) * 100 + \
        (numbers[2] if len(numbers) > 2 else 0)


# Machine types of other QEMU targets an operator may paste: prefix -> architecture.
_FOREIGN = (("virt", "Arm, RISC-V or LoongArch"), ("sbsa-ref", "Arm"), ("raspi", "Arm"),
            ("pseries", "POWER"), ("powernv", "POWER"), ("s390-ccw-virtio", "s390x"))


def foreign_machine(name: str) -> str | None:
    """The architecture of a well-known non-x86 machine type name (``virt-9.2``), else None."""
    prefix = parse_machine_name(name).prefix
    for known, arch in _FOREIGN:
        if prefix == known or prefix.startswith(known) or name == known:
            return arch
    return None
