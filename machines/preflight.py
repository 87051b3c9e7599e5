"""Migration pre-flight: can this VM move to that host?  A verdict, the reasons, the fix.

Every rule is here, each with a stable code, a severity and a fix:

============================  =========  ===================================================
code                          severity   when
============================  =========  ===================================================
machine-type-unknown          blocked    the destination QEMU does not register the type
machine-type-deprecated       warning    the destination marks the type deprecated
alias-not-pinned              warning    the VM was configured with ``pc``/``q35``
destination-config-invalid    blocked    the destination QEMU would reject the configuration
seoib-section-unsupported     blocked    the stream carries ``x86-seoib-state`` and the
                                         destination QEMU has no SEOIB code (design none)
seoib-destination-abort       blocked    the destination runs the RFC's code, which abort()s
                                         on a section it cannot apply
seoib-kernel-api-missing      blocked    the destination kernel lacks the flag the state needs
seoib-irqchip-mismatch        blocked    the stream carries ``x86-seoib-state`` and the
                                         (opt-in) destination does not run a split irqchip
ioapic-version-mismatch       blocked    the destination would build another IOAPIC
compat-drift                  blocked    the machine type resolves a property differently
accelerator-mismatch          blocked    a KVM VM's stream to a destination without KVM (its
                                         ``kvmclock`` section has nowhere to go)
device-state-refused          blocked    a device section the destination's QEMU is known to
                                         refuse (observed: 10.0.13's virtio-net RX ring)
============================  =========  ===================================================

The destination runs the source's configuration unless ``dest_args`` says
otherwise (as a libvirt destination XML can), with the machine type pinned to
the canonical name the source resolved and ``-incoming``.  Its
``seoib-policy`` is left out: an incoming VM takes its state from the stream.
Everything here is pure; the CLI gathers profiles and prints.
"""

from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

from machines.build import Build
from machines.config import VmConfig, configure
from machines.drift import DriftItem, compat_drift
from machines.errors import MachinesError
from machines.hostprofile import HostProfile
from machines.i386.ioapic import Ioapic, ioapic
from machines.i386.seoib import SECTION, KernelCaps, SeoibDecision, SeoibState
from machines.options import AccelOption, QemuOptions
from machines.registry import known_elsewhere
from machines.resolve import Resolver

BLOCKED, WARNING = "blocked", "warning"
QUIRKED_FIX = ("power the VM on with -accel kvm,seoib-policy=quirked (it takes a restart) to keep "
               "it movable to hosts without SEOIB support")


class Reason(NamedTuple):
    code: str
    severity: str
    message: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "fix": self.fix}


class Source(NamedTuple):
    """What the source VM is, as the destinations are judged against it."""

    config: VmConfig
    machine: str
    state: SeoibState | None  # None: no KVM LAPIC
    state_origin: str  # "power-on on KERNEL", "running", "stream"...
    kernel_irqchip: str | None
    ioapic: Ioapic | None
    decision: SeoibDecision | None = None


class Destination(NamedTuple):
    host: str
    verdict: str  # ok | warn | blocked
    reasons: tuple[Reason, ...]


def source_from(config: VmConfig, state: SeoibState | None, state_origin: str,
                decision: SeoibDecision | None = None) -> Source:
    resolver = Resolver(config)
    irqchip = resolver.kernel_irqchip()
    pic = ioapic(resolver) if config.machine.family in ("pc_q35", "pc_piix") else None
    return Source(config, config.machine.name, state, state_origin,
                  str(irqchip.value) if irqchip else None, pic, decision)


def _verdict(host: str, reasons: list[Reason]) -> Destination:
    if any(r.severity == BLOCKED for r in reasons):
        verdict = "blocked"
    elif reasons:
        verdict = "warn"
    else:
        verdict = "ok"
    return Destination(host, verdict, tuple(reasons))


def destination_options(source: Source, dest_args: QemuOptions | None) -> QemuOptions:
    """The destination's configuration: pinned machine type, -incoming, no seoib-policy."""
    opts = dest_args if dest_args is not None else source.config.options
    machine = dict(opts.machine)
    machine["type"] = source.machine  # a migration needs the very same machine type
    accels = tuple(AccelOption(a.name, tuple(p for p in a.props if p[0] != "seoib-policy"),
                               a.text) for a in opts.accels)
    globals_ = tuple(g for g in opts.globals
                     if (g.driver, g.property) != ("kvm-accel", "seoib-policy"))
    return opts._replace(machine=tuple(machine.items()), accels=accels, globals=globals_,
                         incoming="defer", loadvm=None)


class Target(NamedTuple):
    """What the rules read about a destination: its QEMU build and its kernel's flags.

    ``where`` and ``kernel`` only word the messages (" on host-b", "kernel
    linux-6.12 (6.12.0)"); a host class of the fleet leaves them generic.
    """

    build: Build
    caps: KernelCaps
    where: str = ""
    kernel: str = "the destination kernel"


def target_of(dest: HostProfile) -> Target:
    caps = KernelCaps(dest.kernel.name, dest.kernel.has_enable_flag, dest.kernel.has_disable_flag,
                      dest.kernel.x2apic_api.system)
    return Target(dest.build, caps, f" on {dest.name}",
                  f"kernel {dest.kernel.name} ({dest.kernel.kernel_release}) on {dest.name}")


def judge(source: Source, dest: HostProfile, dest_args: QemuOptions | None = None
          ) -> Destination:
    """One destination's verdict, with every reason that applies."""
    return _verdict(dest.name, judge_target(source, target_of(dest), dest_args))


def judge_target(source: Source, target: Target, dest_args: QemuOptions | None = None
                 ) -> list[Reason]:
    """Every reason against moving ``source`` to ``target`` (empty: it can go)."""
    before, irqchip, after, final = target_static(source, target.build, target.where, dest_args)
    if final:
        return list(before)
    return [*before, *_seoib(source, target, irqchip), *after]


class Static(NamedTuple):
    """The reasons that do not depend on the VM's SEOIB state or the destination's kernel."""

    before: tuple[Reason, ...]  # ahead of the SEOIB reasons
    irqchip: str | None  # the destination's kernel-irqchip
    after: tuple[Reason, ...]
    final: bool  # no SEOIB reasons: the machine type is unknown or the destination refuses


def target_static(source: Source, build: Build, where: str = "",
                  dest_args: QemuOptions | None = None,
                  dest_opts: QemuOptions | None = None) -> Static:
    """What :func:`judge_target` finds from the source's configuration and the destination's
    build alone (a fleet computes it once per configuration and build, and passes
    ``dest_opts``, the destination's options, once per configuration)."""
    config = source.config
    before: tuple[Reason, ...] = ()
    if config.alias_used:
        before = (_alias_reason(config.machine_as_given, config.build.name, source.machine),)
    machine = build.find(source.machine)
    if machine is None:
        return Static((*before, _unknown_reason(build, source.machine, config.machine.family,
                                                where, _unsupported(source, build, dest_args))),
                      None, (), True)
    if machine.deprecated:
        before = (*before, _deprecated_reason(build, machine.name))
    if dest_opts is None:
        dest_opts = destination_options(source, dest_args)
    dest_side = _destination_side(build, dest_opts)
    if isinstance(dest_side, str):
        return Static((*before, _refused_reason(build, where, dest_side)), None, (), True)
    dest_ioapic, dest_irqchip = dest_side
    if config.kvm and dest_irqchip is None:
        before = (*before, _accelerator_reason(build, where))
    before = (*before, *_known_refusals(source, build, where))
    after: tuple[Reason, ...] = ()
    if source.ioapic and dest_ioapic and (source.ioapic.version, source.ioapic.type) != \
            (dest_ioapic.version, dest_ioapic.type):
        after = (_ioapic_reason(source.ioapic, dest_ioapic),)
    drift = _drift_reason(machine.name, config.build, build)
    if drift is not None:
        after = (*after, drift)
    return Static(before, dest_irqchip, after, False)


# The reasons of target_static, each made once per what its words depend on: a fleet
# asks for the same ones for thousands of (configuration, build) pairs.

@cache
def _alias_reason(given: str, source_build: str, machine: str) -> Reason:
    return Reason(
        "alias-not-pinned", WARNING,
        f"the VM was configured with '{given}', which QEMU {source_build} resolved to "
        f"{machine}; another QEMU resolves it to its own newest type",
        f"use '{machine}' in the VM's definition so that every host builds the same machine")


@cache
def _unknown_reason(build: Build, machine: str, family: str | None, where: str,
                    qemu_says: str) -> Reason:
    note = known_elsewhere(machine)
    nearest = _nearest(build, machine, family)
    return Reason(
        "machine-type-unknown", BLOCKED,
        f"QEMU {build.name}{where} does not know {machine}"
        + (f" ({note})" if note else "")
        + (f"; its closest is {nearest[0]}" if nearest else "")
        + f"; it refuses to start: \"{qemu_says}\"",
        "keep the VM on hosts whose QEMU has this machine type, or move it to a type the "
        "destination knows with a cold restart" + (f" (e.g. {nearest[0]})" if nearest else ""))


@cache
def _accelerator_reason(build: Build, where: str) -> Reason:
    from machines.dialect import unknown_section

    return Reason(
        "accelerator-mismatch", BLOCKED,
        f"the VM runs under KVM and the destination would run without it: its stream "
        f"carries a kvmclock section, which QEMU {build.name}{where} refuses with "
        f"\"{unknown_section(build.version, 'kvmclock')}\"",
        "run the destination with -accel kvm, as the source")


@cache
def _deprecated_reason(build: Build, machine: str) -> Reason:
    return Reason(
        "machine-type-deprecated", WARNING,
        f"QEMU {build.name} marks {machine} deprecated (machine types are withdrawn "
        "6 years after their release)",
        "plan a move to a newer machine type at the VM's next cold restart")


@cache
def _refused_reason(build: Build, where: str, refusal: str) -> Reason:
    return Reason(
        "destination-config-invalid", BLOCKED,
        f"QEMU {build.name}{where} would refuse the configuration: {refusal}",
        "fix the destination's configuration (--dest-args) so that its QEMU accepts it")


@cache
def _ioapic_reason(source: Ioapic, dest: Ioapic) -> Reason:
    return Reason(
        "ioapic-version-mismatch", BLOCKED,
        f"the source's IOAPIC is {source.type} version {source.version:#x}, "
        f"the destination would build {dest.type} version {dest.version:#x}",
        "configure the destination like the source: same kernel-irqchip mode and "
        f"-global ioapic.version={source.version:#x}")


@cache
def _drift_reason(machine: str, source: Build, build: Build) -> Reason | None:
    drift = _drift(machine, source, build)
    if not drift:
        return None
    lacking = [d for d in drift if d.destination.origin.startswith("behaviour")]
    fix = ("migrate to a QEMU build that resolves this machine type the same way"
           + (f" (QEMU {build.name} has no property for "
              f"{', '.join(d.property for d in lacking)}: a later point release does)"
              if lacking else ", or pin the listed properties on the destination with "
              "-global to the source's values"))
    return Reason(
        "compat-drift", BLOCKED,
        f"{machine} differs between QEMU {source.name} and QEMU {build.name}: "
        + "; ".join(d.describe(source.name, build.name) for d in drift), fix)


def _unsupported(source: Source, build: Build, dest_args: QemuOptions | None) -> str:
    from machines.dialect import unsupported_machine

    opts = dest_args if dest_args is not None else source.config.options
    where = opts.machine_type_text
    # The destination's option names the type as given when it named the source's type (the
    # implied first key or type=, as QEMU 5.2 quotes it whole); else (an alias, no -machine
    # at all) the destination is started with the pinned type.
    fields = where.split(maxsplit=1)[-1].split(",") if where else []
    named = fields[:1] + [f.removeprefix("type=") for f in fields if f.startswith("type=")]
    if source.machine not in named:
        where = f"-machine {source.machine}"
    return unsupported_machine(build.version, source.machine, where)


# Device state a destination refuses although both builds have the device and the machine
# type, found by real migrations (python -m machines.migoracle): (source builds, the oldest
# destination version that refuses, device types, QEMU's line, why).  Debian's 10.0.13 gives
# virtio-net's RX queue a 1024-entry ring whatever rx_queue_size says (10.0.2, 10.2.0 and 11.1.3
# give 256); 11.1.3 checks a loaded ring against the one it allocated (10.2.0 does not; 11.0 is
# not observed and assumed to check).
KNOWN_REFUSALS: tuple[tuple[frozenset[str], tuple[int, int], tuple[str, ...], str, str], ...] = (
    (frozenset({"10.0.13"}), (11, 0), ("virtio-net-pci", "virtio-net-pci-non-transitional",
                                        "virtio-net-pci-transitional", "virtio-net-device"),
     "VQ 0 vring.num 1024 exceeds allocated max 256",
     "QEMU 10.0.13 gives virtio-net's RX queue a 1024-entry ring (rx_queue_size 256 "
     "notwithstanding), more than the destination allocates"),
)


def _known_refusals(source: Source, build: Build, where: str) -> list[Reason]:
    reasons = []
    drivers = {d.driver for d in source.config.options.devices}
    for builds, since, devices, line, why in KNOWN_REFUSALS:
        found = sorted(drivers & set(devices))
        if source.config.build.name in builds and tuple(build.version[:2]) >= since and found:
            reasons.append(Reason(
                "device-state-refused", BLOCKED,
                f"{why}: QEMU {build.name}{where} refuses {found[0]}'s state with "
                f"\"{line}\"",
                "move the VM to a build that loads it (10.2 does), or restart it on another "
                "source build first"))
    return reasons


@cache
def _destination_side(build: Build, opts: QemuOptions) -> tuple[Ioapic | None, str | None] | str:
    """The destination's IOAPIC and irqchip for a configuration, or QEMU's refusal.

    Depends on the build and the options alone, so a fleet computes it once
    per (build, configuration).
    """
    try:
        config = configure(build, opts)
        resolver = Resolver(config)
        resolver.check_accel()
        pic = ioapic(resolver) if config.machine.family in ("pc_q35", "pc_piix") else None
    except MachinesError as err:
        return str(err)
    irqchip = resolver.kernel_irqchip()
    return pic, (str(irqchip.value) if irqchip else None)


@cache
def _nearest(build: Build, machine: str, family: str | None) -> tuple[str, ...]:
    from machines.naming import closest_names

    close = [m.name for m in build.registered() if m.family == family]
    return closest_names(machine, close, 1)


@cache
def _drift(machine: str, source: Build, destination: Build) -> tuple[DriftItem, ...]:
    return tuple(compat_drift(machine, source, destination))


def _quirked_fix(source: Source) -> str:
    """How this VM gets back to QUIRKED (no section), by the design its QEMU runs."""
    from machines.i386.designs import GATED, OPT_IN, design_of

    design = design_of(source.config.build).name
    if design == OPT_IN:
        return QUIRKED_FIX
    if design == GATED:
        return ("power the VM on with a machine type older than the gate (a cold restart) to "
                "keep it movable to hosts without SEOIB support")
    return ("the posted code has no setting: only a power-on without a split irqchip "
            "(kernel-irqchip=on) or on a QEMU without the RFC keeps the VM QUIRKED")


def _seoib(source: Source, target: Target, irqchip: str | None) -> list[Reason]:
    from machines.i386.designs import GATED, NONE, RFC_V2, design_of
    from machines.i386.seoib import RFC_NOT_SPLIT, RFC_SET_FAILED

    state = source.state
    if state is None or state is SeoibState.QUIRKED or source.kernel_irqchip != "split":
        return []  # no section is sent: the destination starts QUIRKED, as the VM was
    fix = _quirked_fix(source)
    design = design_of(target.build).name
    reasons = []
    if design == NONE:
        from machines.dialect import unknown_section

        reasons.append(Reason(
            "seoib-section-unsupported", BLOCKED,
            f"the VM's SEOIB state is {state.name}, so its stream carries {SECTION}, which "
            f"QEMU {target.build.name}{target.where} cannot load: it refuses the stream with "
            f"\"{unknown_section(target.build.version, SECTION)}\"",
            f"{fix}, or upgrade the destination to a QEMU with the same SEOIB design"))
        return reasons
    if design in (RFC_V2, GATED):
        if irqchip != "split":
            how = "without KVM" if irqchip is None else f"kernel-irqchip={irqchip}"
            reasons.append(Reason(
                "seoib-destination-abort", BLOCKED,
                f"the VM's stream carries {SECTION} ({state.name}) and the destination would run "
                f"{how}: QEMU {target.build.name}{target.where} prints \"{RFC_NOT_SPLIT}\" "
                "and calls abort(): the destination QEMU crashes",
                "configure the destination with kernel-irqchip=split (libvirt: "
                "<ioapic driver='qemu'/>), as the source"))
        elif not target.caps.has(state.flag):
            reasons.append(Reason(
                "seoib-destination-abort", BLOCKED,
                f"the VM's SEOIB state is {state.name}, which needs KVM_X2APIC_API "
                f"{state.flag_name}; {target.kernel} lacks it, so QEMU {target.build.name} "
                f"prints \"{RFC_SET_FAILED}\" and calls abort(): the destination QEMU crashes",
                f"{fix}, or choose a destination whose kernel has the SEOIB API "
                "(Linux 7.0, 6.18.y, 6.19.y)"))
        return reasons
    if not target.caps.has(state.flag):
        reasons.append(Reason(
            "seoib-kernel-api-missing", BLOCKED,
            f"the VM's SEOIB state is {state.name}, which needs KVM_X2APIC_API "
            f"{state.flag_name}; {target.kernel} lacks it",
            f"{fix}, or choose a destination whose kernel has the SEOIB API "
            "(Linux 7.0, 6.18.y, 6.19.y)"))
    if irqchip != "split":
        reasons.append(Reason(
            "seoib-irqchip-mismatch", BLOCKED,
            f"the VM's SEOIB state is {state.name}, which needs a split irqchip, but the "
            "destination would run "
            + ("without KVM" if irqchip is None else f"kernel-irqchip={irqchip}"),
            "configure the destination with kernel-irqchip=split (libvirt: "
            "<ioapic driver='qemu'/>), as the source"))
    return reasons


def judge_all(source: Source, destinations: Sequence[HostProfile],
              dest_args: QemuOptions | None = None) -> list[Destination]:
    return [judge(source, d, dest_args) for d in destinations]


def exit_code(results: Sequence[Destination]) -> int:
    """nova-manage style: 0 all ok, 1 warnings only, 3 something blocked."""
    if any(r.verdict == "blocked" for r in results):
        return 3
    if any(r.verdict == "warn" for r in results):
        return 1
    return 0
