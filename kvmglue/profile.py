"""A kernel profile: what one kernel's KVM says about x2APIC and SEOIB.

A profile comes from ``machines probe`` on a real /dev/kvm (origin
``"probe"``), from the simulated kernels shipped with the package
(``"shipped"``, see :mod:`kvmglue.kernels`), or from probing a simulated
kernel on demand (``"simulated"``).  Its JSON form::

    {
     "schema": "machines/kernel-profile/v1",
     "name": "host",
     "origin": "probe",
     "kernel_release": "6.18.44",
     "kvm_api_version": 12,
     "x2apic_api": {"system": 15, "vm": 11, "vm_split_irqchip": 15},
     "supports": {"x2apic_api": true, "split_irqchip": true,
                  "enable_suppress_eoi_broadcast": true,
                  "disable_suppress_eoi_broadcast": true},
     "conformance": [
      {"case": "split-enable", "description": "...", "steps": ["..."],
       "outcome": {"errno": null, "lvr_directed_eoi": true,
                   "lvr_reads": [true], "results": ["ok", "..."]}}
     ]
    }

Readers accept v1, refuse newer versions, ignore unknown fields and name
the path of a field of the wrong type.
"""

import os
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

from kvmglue.constants import X2ApicApi
from machines.errors import DataError, UsageError
from machines.fileio import atomic_write_json
from machines.schema import check_schema, expect, get, load_json

SCHEMA_KIND = "kernel-profile"
SCHEMA_VERSION = 1
SCHEMA = f"machines/{SCHEMA_KIND}/v{SCHEMA_VERSION}"
ORIGINS = ("probe", "shipped", "simulated")
SHIPPED_DIR = os.path.join(os.path.dirname(__file__), "profiles")

T = TypeVar("T")


class Outcome(NamedTuple):
    """What a conformance case observed."""

    #: The first step the kernel refused, as an errno name (``"EINVAL"``).
    errno: str | None
    #: LVR bit 24 at the case's last read of it (None: never read).
    lvr_directed_eoi: bool | None
    #: Every read of LVR bit 24, in order.
    lvr_reads: tuple[bool, ...] = ()
    #: One result per step (see :mod:`kvmglue.conformance`).
    results: tuple[str, ...] = ()


class CaseResult(NamedTuple):
    """One conformance case as run on one kernel."""

    case: str
    description: str
    steps: tuple[str, ...]
    outcome: Outcome


class X2ApicApiAnswers(NamedTuple):
    """KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) where QEMU asks it."""

    system: int
    vm: int
    vm_split_irqchip: int


class Supports(NamedTuple):
    x2apic_api: bool
    split_irqchip: bool
    enable_suppress_eoi_broadcast: bool
    disable_suppress_eoi_broadcast: bool


class KernelProfile(NamedTuple):
    name: str
    origin: str
    kernel_release: str
    kvm_api_version: int
    x2apic_api: X2ApicApiAnswers
    supports: Supports
    conformance: tuple[CaseResult, ...] = ()

    @property
    def has_enable_flag(self) -> bool:
        """KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST is there to ask for."""
        return self.supports.enable_suppress_eoi_broadcast

    @property
    def has_disable_flag(self) -> bool:
        """KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST is there to ask for."""
        return self.supports.disable_suppress_eoi_broadcast

    @property
    def system_flags(self) -> X2ApicApi:
        return X2ApicApi(self.x2apic_api.system)

    def case(self, case_id: str) -> CaseResult | None:
        return next((c for c in self.conformance if c.case == case_id), None)

    def directed_eoi(self, case_id: str) -> bool | None:
        """LVR bit 24 at the end of conformance case ``case_id`` (None: unknown)."""
        found = self.case(case_id)
        return None if found is None else found.outcome.lvr_directed_eoi

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "name": self.name,
            "origin": self.origin,
            "kernel_release": self.kernel_release,
            "kvm_api_version": self.kvm_api_version,
            "x2apic_api": self.x2apic_api._asdict(),
            "supports": self.supports._asdict(),
            "conformance": [
                {
                    "case": c.case,
                    "description": c.description,
                    "steps": list(c.steps),
                    "outcome": {
                        "errno": c.outcome.errno,
                        "lvr_directed_eoi": c.outcome.lvr_directed_eoi,
                        "lvr_reads": list(c.outcome.lvr_reads),
                        "results": list(c.outcome.results),
                    },
                }
                for c in self.conformance
            ],
        }

    @classmethod
    def from_json(cls, doc: Any, where: str = "kernel profile") -> "KernelProfile":
        check_schema(doc, SCHEMA_KIND, SCHEMA_VERSION, where)
        origin = get(doc, "origin", str, where)
        if origin not in ORIGINS:
            raise DataError(f"{where}: field origin must be one of {', '.join(ORIGINS)}, "
                            f"not {origin!r}")
        cases = get(doc, "conformance", list, where, [])
        conformance = tuple(_case_from_json(c, f"conformance[{i}]", where)
                            for i, c in enumerate(cases))
        seen: set[str] = set()
        for i, result in enumerate(conformance):
            if result.case in seen:
                raise DataError(f"{where}: field conformance[{i}].case repeats "
                                f"{result.case!r}")
            seen.add(result.case)
        return cls(
            name=get(doc, "name", str, where),
            origin=origin,
            kernel_release=get(doc, "kernel_release", str, where),
            kvm_api_version=get(doc, "kvm_api_version", int, where),
            x2apic_api=X2ApicApiAnswers(
                system=get(doc, "x2apic_api.system", int, where),
                vm=get(doc, "x2apic_api.vm", int, where),
                vm_split_irqchip=get(doc, "x2apic_api.vm_split_irqchip", int, where),
            ),
            supports=Supports(**{
                field: get(doc, f"supports.{field}", bool, where)
                for field in Supports._fields
            }),
            conformance=conformance,
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the profile; a failure leaves any previous file intact."""
        atomic_write_json(path, self.to_json())


def _case_from_json(doc: Any, path: str, where: str) -> CaseResult:
    expect(doc, dict, path, where)
    outcome = _field(doc, "outcome", dict, path, where)
    return CaseResult(
        case=_field(doc, "case", str, path, where),
        description=_field(doc, "description", str, path, where, ""),
        steps=_strings(_field(doc, "steps", list, path, where, []), f"{path}.steps", where),
        outcome=Outcome(
            errno=_nullable(outcome.get("errno"), str, f"{path}.outcome.errno", where),
            lvr_directed_eoi=_nullable(outcome.get("lvr_directed_eoi"), bool,
                                       f"{path}.outcome.lvr_directed_eoi", where),
            lvr_reads=tuple(
                expect(v, bool, f"{path}.outcome.lvr_reads[{i}]", where)
                for i, v in enumerate(_field(outcome, "lvr_reads", list, f"{path}.outcome",
                                             where, []))
            ),
            results=_strings(_field(outcome, "results", list, f"{path}.outcome", where, []),
                             f"{path}.outcome.results", where),
        ),
    )


def _field(doc: Mapping[str, Any], key: str, kind: type[Any], path: str, where: str,
           default: Any = ...) -> Any:
    if key not in doc:
        if default is ...:
            raise DataError(f"{where}: missing field {path}.{key}")
        return default
    return expect(doc[key], kind, f"{path}.{key}", where)


def _nullable(value: Any, kind: type[T], path: str, where: str) -> T | None:
    return None if value is None else expect(value, kind, path, where)


def _strings(values: list[Any], path: str, where: str) -> tuple[str, ...]:
    return tuple(expect(v, str, f"{path}[{i}]", where) for i, v in enumerate(values))


def load(path: str | os.PathLike[str]) -> KernelProfile:
    """Read a profile file (raises :class:`machines.errors.DataError`)."""
    where = f"kernel profile {os.fspath(path)}"
    return KernelProfile.from_json(load_json(path, "kernel profile"), where)


def shipped_names() -> tuple[str, ...]:
    """The profiles that come with the package, sorted by name."""
    return tuple(sorted(f.removesuffix(".json") for f in os.listdir(SHIPPED_DIR)
                        if f.endswith(".json")))


def shipped(name: str) -> KernelProfile:
    """A shipped profile by name (``"linux-6.12"``)."""
    names = shipped_names()
    if name not in names:
        raise UsageError(unknown_name_message("kernel profile", name, names))
    from machines.compat.packed import load_shipped  # its packed twin needs no json import

    path = os.path.join(SHIPPED_DIR, f"{name}.json")
    return KernelProfile.from_json(load_shipped(path, "kernel profile"), f"kernel profile {path}")


def unknown_name_message(what: str, name: str, names: tuple[str, ...]) -> str:
    import difflib  # only for the message

    hint = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    message = f"unknown {what} {name!r}"
    if hint:
        return message + "; did you mean " + ", ".join(repr(h) for h in hint) + "?"
    return message + f" (known: {', '.join(names)})"
