"""The Python API for orchestrators (issue 18): ``from machines import ...``.

Every function here answers what its command answers (``resolve_config``:
``machines resolve``; ``judge_preflight``: ``machines preflight``;
``judge_fleet``: ``machines preflight --fleet``), with
the same JSON (``to_json()`` of a result equals the command's ``--json``
output), in typed, frozen results.  Nothing here prints or exits: a question
that cannot be answered raises :class:`machines.errors.MachinesError` (its
``exit_code`` is the CLI's), and an answer that is "no" (a VM QEMU would refuse,
a blocked destination) is a result that says so.  See ``docs/api.md``.
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from machines.build import Build

__all__ = [
    "DestinationVerdict", "FleetResult", "Preflight", "Reason", "Resolution", "SeoibAnswer",
    "build_names", "decide_seoib", "judge_fleet", "judge_preflight", "load_build",
    "resolve_config", "write_host_profile",
]

QemuArgs = Sequence[str] | str


def _argv(qemu_args: QemuArgs | None) -> list[str]:
    """QEMU arguments as a list; a string is split as a shell would (no program name)."""
    if qemu_args is None:
        return []
    if isinstance(qemu_args, str):
        import shlex

        return shlex.split(qemu_args)
    return list(qemu_args)


def build_names() -> list[str]:
    """The shipped builds, as ``--release`` names them (model releases, then real builds)."""
    from machines.registry import build_names as names

    return names()


def load_build(release: str | None = None, seoib: str | None = None) -> Build:
    """A QEMU build: a shipped name (``"10.2"``, ``"10.0.2"``), ``"BUILD+DESIGN"`` or the
    path of a ``machines import`` file, optionally with a SEOIB design laid over it."""
    from machines.registry import get_build

    build = get_build(release)
    if seoib is not None:
        from machines.i386.designs import overlay, parse_design

        build = overlay(build, parse_design(seoib))
    return build


@dataclass(frozen=True)
class SeoibAnswer:
    """The SEOIB decision for one kernel."""

    kernel: str
    state: str | None  # QUIRKED, RESPECTED, NOT_ADVERTISED; None: no KVM LAPIC
    refused: bool  # QEMU would refuse to power on (or abort: see ``aborts``)
    aborts: bool
    error: str | None
    migration_section: bool  # the VM's stream carries x86-seoib-state
    _json: Mapping[str, Any] = field(repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self._json))


@dataclass(frozen=True)
class Resolution:
    """A configuration resolved: what ``machines resolve --json`` says."""

    qemu: str  # the build's name
    machine: str  # the machine type, aliases resolved
    machine_as_given: str | None
    accel: str
    kernel_irqchip: str | None
    ioapic_version: int | None
    devices: Mapping[str, Mapping[str, Any]]  # device -> property -> effective value
    seoib: tuple[SeoibAnswer, ...]  # one per kernel judged (empty without a KVM LAPIC)
    _json: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def refused(self) -> bool:
        """QEMU would not power this VM on (under at least one kernel judged)."""
        return any(a.refused for a in self.seoib)

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self._json))


def resolve_config(qemu_args: QemuArgs | None = None, *, devices: Iterable[str] = (),
            release: str | None = None, seoib: str | None = None, kernel: str | None = None,
            cmdline: str | None = None, stream_state: str | None = None) -> Resolution:
    """Resolve a QEMU configuration, as ``machines resolve [QEMU ARGS] --device TYPE...``.

    ``kernel`` is ``"host"``, a shipped kernel profile or a profile file (default: this
    host's, else every shipped one); ``cmdline`` a whole pasted QEMU command line instead
    of ``qemu_args``.
    """
    from machines import report
    from machines.cli import _resolve

    args = SimpleNamespace(device=list(devices), release=release, seoib=seoib,
                           cmdline=cmdline, kernel=kernel, stream_state=stream_state,
                           json=True)
    resolver, devs, pic, decisions = _resolve(args, _argv(qemu_args))
    doc = report.resolve_json(resolver, devs, pic, decisions)
    answers = tuple(_answer(d, report.seoib_json(d)) for d in decisions)
    irqchip = doc["accel"]["kernel_irqchip"]
    return Resolution(
        qemu=resolver.config.build.name, machine=doc["machine"],
        machine_as_given=doc["machine_as_given"], accel=doc["accel"]["name"],
        kernel_irqchip=None if irqchip is None else str(irqchip["value"]),
        ioapic_version=None if pic is None else pic.version,
        devices={t: {p: r.value for p, r in props.items()} for t, props in devs.items()},
        seoib=answers if any(d.state is not None or d.error for d in decisions) else (),
        _json=json.loads(json.dumps(doc)))


def _answer(decision: Any, doc: Mapping[str, Any]) -> SeoibAnswer:
    return SeoibAnswer(
        kernel=decision.kernel, state=decision.state.name if decision.state else None,
        refused=decision.refused, aborts=decision.aborts, error=decision.error,
        migration_section=decision.migration_section, _json=json.loads(json.dumps(doc)))


def decide_seoib(qemu_args: QemuArgs | None = None, *, release: str | None = None,
                 seoib: str | None = None, kernel: str | None = None,
                 stream_state: str | None = None) -> tuple[SeoibAnswer, ...]:
    """The SEOIB state a VM gets at power-on (or on -incoming), per kernel judged; empty
    when the VM has no KVM LAPIC (TCG, or kernel-irqchip=off)."""
    return resolve_config(qemu_args, release=release, seoib=seoib, kernel=kernel,
                   stream_state=stream_state).seoib


@dataclass(frozen=True)
class Reason:
    code: str  # stable: machine-type-unknown, seoib-section-unsupported, ... (README)
    severity: str  # blocked | warning | info
    message: str
    fix: str | None


@dataclass(frozen=True)
class DestinationVerdict:
    host: str
    verdict: str  # ok | warn | blocked
    reasons: tuple[Reason, ...]


@dataclass(frozen=True)
class Preflight:
    """A VM judged against destinations: what ``machines preflight --json`` says."""

    machine: str
    qemu: str
    seoib_state: str | None
    destinations: tuple[DestinationVerdict, ...]
    exit_code: int  # the CLI's: 0 all ok, 1 warnings only, 3 something blocked
    _json: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """No destination is blocked (warnings allowed)."""
        return self.exit_code != 3

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self._json))


def judge_preflight(qemu_args: QemuArgs | None = None, *, dest: Iterable[str],
              release: str | None = None, seoib: str | None = None,
              source_host: str | None = None, cmdline: str | None = None,
              libvirt: str | os.PathLike[str] | None = None, domain: str | None = None,
              connect: str | None = None, qmp: str | None = None,
              state: str | os.PathLike[str] | None = None, source_state: str | None = None,
              dest_args: str | None = None) -> Preflight:
    """Can this VM migrate to those hosts?  As ``machines preflight --dest HOST...``.

    The VM is ``qemu_args``, or ``cmdline``, a libvirt XML file (``libvirt``), a libvirt
    domain by name (``domain``, on ``connect``, default ``qemu:///system``), a running
    QEMU's QMP socket (``qmp``) or a saved state (``state``).  A host is a host-profile
    file or ``KERNEL/QEMU[+DESIGN]`` (``"linux-6.12/10.2"``).
    """
    from machines.cli import _preflight
    from machines.preflight import exit_code

    args = SimpleNamespace(
        dest=list(dest), dest_args=dest_args, source_host=source_host, release=release,
        seoib=seoib, cmdline=cmdline, libvirt=None if libvirt is None else os.fspath(libvirt),
        qmp=qmp, connect=connect, domain=domain, source_state=source_state,
        state=None if state is None else os.fspath(state), json=True, fleet=None, hosts=None,
        output=None, command="preflight")
    doc, results = _preflight(args, _argv(qemu_args))
    doc = json.loads(json.dumps(doc))
    source = doc["source"]
    return Preflight(
        machine=source["machine"], qemu=source["qemu"],
        seoib_state=(source.get("seoib") or {}).get("state"),
        destinations=tuple(DestinationVerdict(d["host"], d["verdict"], tuple(
            Reason(r["code"], r["severity"], r["message"], r.get("fix"))
            for r in d["reasons"])) for d in doc["destinations"]),
        exit_code=exit_code(results), _json=doc)


@dataclass(frozen=True)
class FleetResult:
    """Every VM of a fleet against every host: ``machines preflight --fleet --hosts``."""

    lines: tuple[Mapping[str, Any], ...]  # the JSON lines, header first
    summary: Mapping[str, int]

    def to_json(self) -> list[dict[str, Any]]:
        """The CLI's JSON lines, as a list (its last item is ``{"summary": ...}``)."""
        return [copy.deepcopy(dict(x)) for x in self.lines] + [{"summary": dict(self.summary)}]

    def to_jsonl(self) -> str:
        return "".join(json.dumps(x) + "\n" for x in self.to_json())


def judge_fleet(vms: str | os.PathLike[str], hosts: str | os.PathLike[str]) -> FleetResult:
    """Judge a fleet (a ``VMS.jsonl`` file, one VM per line) against the host profiles
    in a directory."""
    from machines.fleet import FleetRun, read_hosts

    run = FleetRun(read_hosts(os.fspath(hosts)))
    run.read(os.fspath(vms))  # every line checked before any judging
    out = io.BytesIO()
    totals = run.write(out)
    lines = tuple(json.loads(line) for line in out.getvalue().splitlines() if line.strip())
    return FleetResult(lines, dict(totals))


def write_host_profile(spec: str, path: str | os.PathLike[str], *, name: str | None = None
                       ) -> None:
    """Write the host profile of ``KERNEL/QEMU[+DESIGN]`` (``"linux-7.0/10.2"``) to ``path``,
    named ``name`` (default: the spec), e.g. to fill a ``fleet`` hosts directory."""
    from machines.fileio import atomic_write_json
    from machines.hostprofile import from_spec, host_profile_json

    host = from_spec(spec)
    atomic_write_json(path, host_profile_json(name or host.name, host.kernel, host.qemu))
