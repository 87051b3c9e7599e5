"""The SEOIB designs of the RFC, as an explicit overlay on any QEMU build.

No QEMU release sets the KVM SEOIB flags: every real build (and every model
release) is the design ``none``.  The RFC "target/i386/kvm: Configure proper
KVM SEOIB behavior" (v2, 2026-03-09) asks which of three designs to take;
each can be laid over any build to see what it would do:

``rfc-v2``
    the posted code: at a fresh power-on under KVM with a split irqchip, an
    IOAPIC version (read from ``-global`` only) of at least 0x20 gives
    RESPECTED, else NOT_ADVERTISED; every machine type, microvm too; no
    user setting.
``gated[:VERSION]``
    the same code, only for machine types from VERSION on (default: the
    first version newer than the build's newest, which the overlay adds to
    the build as a new machine type of each PC family); older types stay
    QUIRKED.
``opt-in``
    a ``kvm-accel`` property ``seoib-policy=quirked|respected|not-advertised``,
    default ``quirked``; no gating, no IOAPIC lookup.

A build with a design is named ``BUILD+DESIGN`` (``10.2+rfc-v2``,
``11.1+gated:11.2``); :func:`overlay` makes it.  Nothing here does I/O.
"""

from functools import cache
from typing import Any, NamedTuple

from machines.build import Build
from machines.errors import UsageError
from machines.machine import MachineType
from machines.naming import MachineVersion, parse_machine_name
from machines.qom import PropertyInfo, QomTypes

NONE, RFC_V2, GATED, OPT_IN = "none", "rfc-v2", "gated", "opt-in"
DESIGNS = (NONE, RFC_V2, GATED, OPT_IN)
OPT_IN_POLICIES = ("quirked", "respected", "not-advertised")
OPT_IN_QAPI_TYPE = "SeoibPolicy"
SPELLINGS = "none, rfc-v2, gated, gated:VERSION (e.g. gated:11.2 or gated:pc-q35-11.2), opt-in"


class Design(NamedTuple):
    """One SEOIB design; ``gate`` only for ``gated`` (None: the build's next version).

    A NamedTuple, not attrs: every resolve asks for the design, and attrs costs
    about 10 ms of a cold start to import."""

    name: str
    gate: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        if self.name == GATED and self.gate is not None:
            return f"{GATED}:{'.'.join(map(str, self.gate))}"
        return self.name

    @property
    def sets_flags(self) -> bool:
        return self.name != NONE


def parse_design(text: str) -> Design:
    """``--seoib`` and the ``+DESIGN`` of a build name; bad input is a UsageError."""
    word = text.strip().lower()
    if word in (NONE, RFC_V2, OPT_IN, GATED):
        return Design(word)
    if word.startswith(GATED + ":"):
        gate = word[len(GATED) + 1:]
        numbers = _gate_numbers(gate)
        if numbers is not None:
            return Design(GATED, numbers)
        raise UsageError(f"SEOIB design '{text}': the gate must be a machine-type version such "
                         "as 11.2 or a versioned type such as pc-q35-11.2")
    raise UsageError(f"unknown SEOIB design '{text}'; expected {SPELLINGS}")


def _gate_numbers(gate: str) -> tuple[int, ...] | None:
    parsed = parse_machine_name(gate)
    if parsed.version is not None and not parsed.version.tag:
        return parsed.version.numbers
    parts = gate.split(".")
    if len(parts) >= 2 and all(p.isdigit() and len(p) <= 4 for p in parts):
        return tuple(int(p) for p in parts)
    return None


def split_build_name(name: str) -> tuple[str, Design | None]:
    """``10.2+rfc-v2`` -> (``10.2``, rfc-v2); a name without a design part is left alone."""
    base, sep, tail = name.rpartition("+")
    if not sep or not base or "/" in tail or tail.endswith(".json"):
        return name, None  # no design part (a file name may hold a "+")
    return base, parse_design(tail)


class DesignBuild(Build):
    """A build with a SEOIB design laid over it (the base build is untouched)."""

    def __init__(self, base: Build, design: Design, gate: tuple[int, ...] | None,
                 machines: list[type[MachineType]], listing: list[str],
                 added: tuple[str, ...]) -> None:
        super().__init__(
            f"{base.name}+{design.label}", base.version, base.kind, machines, listing,
            lambda: _overlay_qom(base, design, added),
            package=base.package, seoib_aware=design.sets_flags,
            globals_reach_accel=base.globals_reach_accel, accel_compat=base.accel_compat,
            provenance={**base.provenance, "seoib_design": design.label,
                        "seoib_design_base": base.name},
        )
        self.base = base
        self.seoib_design = design.name
        self.design = design
        self.gate = gate  # gated: the first machine-type version that gets the RFC behaviour
        self.added_machines = added


def newest_version(build: Build) -> tuple[int, ...]:
    """The newest version among the build's registered PC machine types."""
    versions = [m.version.numbers for m in build.registered()
                if m.family and m.version is not None and not m.version.tag]
    if not versions:
        raise UsageError(f"QEMU {build.name} has no versioned PC machine type to gate on")
    return max(versions)


def next_version(version: tuple[int, ...]) -> tuple[int, ...]:
    """The machine-type version the following release adds.

    Since 4.0 QEMU makes three releases a year, X.0, X.1 and X.2, so 10.2 is
    followed by 11.0 and 11.1 by 11.2; older series went on to 2.12.
    """
    if version[0] >= 4 and version[1] >= 2:
        return (version[0] + 1, 0)
    return (version[0], version[1] + 1)


@cache
def overlay(base: Build, design: Design) -> Build:
    """``base`` as it would be with ``design``; ``none`` is the build itself."""
    if design.name == NONE:
        return base
    if isinstance(base, DesignBuild):
        raise UsageError(f"QEMU {base.name} already has a SEOIB design")
    machines = list(base.machines.values())
    listing = list(base.listing)
    added: list[str] = []
    gate = None
    if design.name == GATED:
        newest = newest_version(base)
        gate = design.gate or next_version(newest)
        if gate > newest:
            machines, listing, added = _with_gate_types(base, gate)
    return DesignBuild(base, design, gate, machines, listing, tuple(added))


def _with_gate_types(base: Build, gate: tuple[int, ...]
                     ) -> tuple[list[type[MachineType]], list[str], list[str]]:
    """Add the gate's machine type to each PC family; it takes over the alias and default."""
    machines = dict(base.machines)
    listing = list(base.listing)
    added: list[str] = []
    text = ".".join(map(str, gate))
    for family in sorted({m.family for m in base.registered() if m.family}):
        members = [m for m in base.registered() if m.family == family and m.version is not None
                   and not m.version.tag]
        newest = max(members, key=lambda m: m.version.numbers if m.version else ())
        name = f"{newest.prefix}-{text}"
        attrs: dict[str, Any] = {
            "name": name, "build": newest.build, "version": MachineVersion("", gate),
            "alias": newest.alias, "is_default": newest.is_default, "deprecated": False,
            "registered": True, "added_in": text, "own_compat": newest.compat_tables(),
            "family": newest.family, "prefix": newest.prefix, "desc": newest.desc,
            "default_kernel_irqchip_split": newest.default_kernel_irqchip_split,
            "default_cpu_type": newest.default_cpu_type,
            "__doc__": f"{name}: the gate of the SEOIB design over QEMU {base.name}.",
        }
        new = type(newest.__name__ + "_gate", (MachineType,), attrs)
        demoted = type(newest.__name__, (newest,), {"alias": None, "is_default": False})
        machines[name] = new
        machines[newest.name] = demoted
        listing.insert(listing.index(newest.name), name)
        added.append(name)
    return list(machines.values()), listing, added


def _overlay_qom(base: Build, design: Design, added: tuple[str, ...]) -> QomTypes:
    qom = base._qom()  # a fresh copy: the base build's own stays as it is
    for name in added:
        like = _like(base, name)
        if like is not None and f"{like}-machine" in qom:
            qom.add_type(f"{name}-machine", like=f"{like}-machine")
    if design.name == OPT_IN:
        qom.add_property("kvm-accel", PropertyInfo(
            "seoib-policy", OPT_IN_QAPI_TYPE, "quirked", True,
            "Suppress EOI Broadcast policy (the RFC's opt-in design): quirked, respected or "
            "not-advertised", "type"))
    return qom


def _like(base: Build, name: str) -> str | None:
    prefix = parse_machine_name(name).prefix
    members = [m for m in base.registered() if m.prefix == prefix and m.version is not None]
    if not members:
        return None
    return max(members, key=lambda m: m.version.numbers if m.version else ()).name


def design_of(build: Build) -> Design:
    """The design a build carries (``none`` for every real build)."""
    return build.design if isinstance(build, DesignBuild) else Design(NONE)


def gated_in(build: Build, machine: type[MachineType]) -> bool:
    """Whether a machine type gets the RFC behaviour under the build's design."""
    if not isinstance(build, DesignBuild) or build.design.name != GATED:
        return build.seoib_aware
    if machine.version is None or machine.version.tag or build.gate is None:
        return True  # microvm and other unversioned types have no compat props to gate by
    return machine.version.numbers >= build.gate
