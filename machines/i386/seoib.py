"""The SEOIB policy a VM gets at power-on, and which snapshot restores are possible.

Background (details and sources in docs/seoib.md).  With a split irqchip
(userspace IOAPIC, KVM LAPIC) KVM has always advertised Suppress EOI
Broadcast to the guest (LAPIC version register bit 24) while still
broadcasting EOIs to the IOAPIC: the QUIRKED mode.  Linux 7.0 (and 6.18.y,
6.19.y) lets userspace choose instead, with two KVM_CAP_X2APIC_API flags:
ENABLE (bit 2, 0x4: advertise and honour it; split irqchip only) and DISABLE
(bit 3, 0x8: do not advertise it).  Once either is set the VM can switch
between them but never return to QUIRKED.

No QEMU release sets these flags (design ``none``: QUIRKED, no section).
The RFC's designs (``machines/i386/designs.py``) are laid over a build:
``rfc-v2`` and ``gated`` follow the posted code, flaws included
(:func:`_rfc`); ``opt-in`` is the ``kvm-accel`` property ``seoib-policy``
(quirked by default).  Everything here is a pure function of its inputs:
the resolved configuration, a kernel's capabilities, and, for
``-incoming``/``-loadvm``, the state the stream carries.  Each rule that
fires adds a step to the decision's trace.
"""

import enum
from collections.abc import Sequence
from typing import NamedTuple

from machines.i386.ioapic import ioapic
from machines.resolve import Resolver, Source

ENABLE = 0x4  # KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST
DISABLE = 0x8  # KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST
SECTION = "x86-seoib-state"
POLICIES = ("quirked", "respected", "not-advertised")  # the opt-in design's seoib-policy
# What the RFC v2 code prints (read off the RFC's own binary, see docs/seoib.md).
RFC_FALLBACK = "Kernel does not support SEOIB flags; Falling back to QUIRKED lapic SEOIB behavior."
RFC_SET_FAILED = "Failed to set KVM LAPIC SEOIB flags"
RFC_NOT_SPLIT = "SEOIB state is only valid for split irqchip mode."
UNKNOWN_SECTION = (f"Unknown savevm section or instance '{SECTION}' 0. Make sure that your "
                   "current VM setup matches your saved VM setup, including any hotplugged "
                   "devices")
EXPLICIT_SOURCES = ("accel", "global")


class SeoibState(enum.Enum):
    """The state QEMU records and migrates; the value is what the stream carries."""

    QUIRKED = 0
    RESPECTED = 1
    NOT_ADVERTISED = 2

    @property
    def flag(self) -> int:
        return {SeoibState.QUIRKED: 0, SeoibState.RESPECTED: ENABLE,
                SeoibState.NOT_ADVERTISED: DISABLE}[self]

    @property
    def flag_name(self) -> str:
        return {0: "none", ENABLE: "ENABLE_SUPPRESS_EOI_BROADCAST",
                DISABLE: "DISABLE_SUPPRESS_EOI_BROADCAST"}[self.flag]

    @classmethod
    def parse(cls, text: str) -> "SeoibState":
        key = text.strip().upper().replace("-", "_")
        aliases = {"ENABLED": "RESPECTED", "DISABLED": "NOT_ADVERTISED"}
        return cls[aliases.get(key, key)]


class KernelCaps(NamedTuple):
    """What a kernel lets QEMU choose (from a kernel profile)."""

    name: str
    enable: bool
    disable: bool
    system: int | None = None  # KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) on /dev/kvm itself

    def has(self, flag: int) -> bool:
        return {0: True, ENABLE: self.enable, DISABLE: self.disable}[flag]

    @property
    def system_flags(self) -> int:
        if self.system is not None:
            return self.system
        return (ENABLE if self.enable else 0) | (DISABLE if self.disable else 0)


class Step(NamedTuple):
    rule: str
    message: str


class SeoibInputs(NamedTuple):
    """Everything the decision reads, already resolved."""

    qemu: str
    seoib_aware: bool
    kvm: bool
    kernel_irqchip: str | None  # on | split | off; None without KVM
    ioapic_version: int
    ioapic_detail: str
    policy: str | None  # None: this QEMU has no seoib-policy
    policy_source: Source | None
    x2apic: bool
    x2apic_detail: str
    incoming: str | None = None  # "-incoming" or "-loadvm" when the state comes from a stream
    stream_state: SeoibState | None = None  # the stream's x86-seoib-state; None: no section
    design: str = "none"  # none | rfc-v2 | gated | opt-in (machines/i386/designs.py)
    machine: str = ""
    gated_in: bool = True  # gated: the machine type is at least the gate
    gate: str = ""  # gated: the gate's version, for the trace
    microvm: bool = False
    x86_cpus_init: bool = True  # the machine creates its CPUs with x86_cpus_init (the RFC's hook)
    # the RFC's IOAPIC lookup: every -global that reaches the ioapic's version, in order
    ioapic_globals: tuple[str, ...] = ()
    ioapic_source_kind: str = "default"  # where QEMU's own resolution took the version


class SeoibDecision(NamedTuple):
    kernel: str
    policy: str | None
    policy_source: Source | None
    state: SeoibState | None  # None: no KVM LAPIC (or decision deferred)
    flags: int
    lvr_directed_eoi: bool
    eoi_broadcast_suppressed: bool
    migration_section: bool
    warnings: tuple[str, ...]
    trace: tuple[Step, ...]
    error: str | None = None
    deferred: bool = False
    aborts: bool = False  # the RFC's code: QEMU calls abort() instead of refusing

    @property
    def refused(self) -> bool:
        return self.error is not None


class _Trace:
    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.warnings: list[str] = []

    def __call__(self, rule: str, message: str) -> None:
        self.steps.append(Step(rule, message))

    def warn(self, rule: str, message: str) -> None:
        self.steps.append(Step(rule, message))
        self.warnings.append(message)


def _guest(inputs: SeoibInputs, flags: int, trace: _Trace) -> tuple[bool, bool]:
    """KVM's LVR rule: bit 24 iff x2APIC in CPUID and (ENABLED, or QUIRKED without
    an in-kernel IOAPIC); suppression is honoured only in the ENABLED mode."""
    if not inputs.kvm or inputs.kernel_irqchip == "off":
        trace("guest", "QEMU's userspace APIC never advertises directed EOI")
        return False, False
    if not inputs.x2apic:
        trace("guest", f"x2APIC is off in the guest CPU ({inputs.x2apic_detail}): "
                       "LVR bit 24 stays clear in every mode")
        return False, False
    mode = "ENABLED" if flags & ENABLE else "DISABLED" if flags & DISABLE else "QUIRKED"
    in_kernel_ioapic = inputs.kernel_irqchip == "on"
    lvr = mode == "ENABLED" or (mode == "QUIRKED" and not in_kernel_ioapic)
    suppressed = lvr and mode == "ENABLED"
    if lvr and suppressed:
        trace("guest", "LVR bit 24 set and honoured: EOI broadcast is suppressed once the guest "
                       "sets SPIV bit 12")
    elif lvr:
        trace("guest", "LVR bit 24 set but not honoured: KVM keeps broadcasting EOIs "
                       "(the legacy quirk)")
    else:
        trace("guest", f"LVR bit 24 clear ({mode.lower()} mode"
                       f"{', in-kernel IOAPIC' if in_kernel_ioapic else ''})")
    return lvr, suppressed


def _done(inputs: SeoibInputs, kernel: KernelCaps, trace: _Trace, state: SeoibState | None,
          error: str | None = None, deferred: bool = False) -> SeoibDecision:
    flags = state.flag if state is not None and error is None else 0
    if error is not None:
        trace("refused", error)
        lvr = suppressed = False
    elif deferred:
        lvr = suppressed = False
    else:
        lvr, suppressed = _guest(inputs, flags, trace)
    # No design sends the section without a split irqchip: with KVM's IOAPIC the guest never
    # sees directed EOI, and a destination starts QUIRKED, which looks the same to it.
    section = (error is None and state is not None and state is not SeoibState.QUIRKED
               and inputs.seoib_aware and inputs.kernel_irqchip == "split")
    if state is not None and error is None and inputs.seoib_aware:
        if section:
            trace("migration", f"the stream carries {SECTION} ({state.name})")
        elif state is SeoibState.QUIRKED:
            trace("migration", f"no {SECTION} section: QUIRKED is what every QEMU assumes "
                               "without one")
        else:
            trace("migration", f"no {SECTION} section: it is only sent with a split irqchip")
    return SeoibDecision(kernel.name, inputs.policy, inputs.policy_source, state, flags, lvr,
                         suppressed, section, tuple(trace.warnings), tuple(trace.steps), error,
                         deferred)


def _explicit(inputs: SeoibInputs) -> bool:
    return inputs.policy_source is not None and inputs.policy_source.kind in EXPLICIT_SOURCES


def decide(inputs: SeoibInputs, kernel: KernelCaps) -> SeoibDecision:
    """The SEOIB state this configuration gets on this kernel, with the trace."""
    if inputs.design in ("rfc-v2", "gated"):
        return _rfc(inputs, kernel)
    trace = _Trace()
    kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    if inputs.policy is not None and inputs.policy_source is not None:
        trace("policy", f"seoib-policy={inputs.policy} ({inputs.policy_source.describe()})")
    if not inputs.seoib_aware:
        trace("seoib-unaware", f"QEMU {inputs.qemu} has no SEOIB code (design none): it never "
                               "sets the SEOIB flags and cannot load an x86-seoib-state section")
    if not kvm_lapic:
        why = "without KVM" if not inputs.kvm else "with kernel-irqchip=off"
        trace("no-kvm-lapic", f"runs {why}: KVM's LAPIC is not used, there is no SEOIB state")
        if inputs.policy in ("respected", "not-advertised") and _explicit(inputs):
            return _done(inputs, kernel, trace, None,
                         f"seoib-policy={inputs.policy} needs KVM's in-kernel LAPIC "
                         f"(kernel-irqchip=on or split), but this VM runs {why}")
        if inputs.incoming and inputs.stream_state not in (None, SeoibState.QUIRKED):
            return _done(inputs, kernel, trace, None,
                         f"the stream's {SECTION} is {inputs.stream_state.name}, but this "
                         f"VM runs {why}: only QUIRKED can be loaded")
        return _done(inputs, kernel, trace, None)
    trace("kvm-lapic", f"KVM LAPIC with kernel-irqchip={inputs.kernel_irqchip}"
                       f" ({'in-kernel' if inputs.kernel_irqchip == 'on' else 'userspace'} "
                       f"IOAPIC, {inputs.ioapic_detail})")
    if not inputs.seoib_aware:
        if inputs.incoming and inputs.stream_state is not None:
            return _done(inputs, kernel, trace, None,
                         f"QEMU {inputs.qemu} cannot load the stream's {SECTION} section "
                         f"({inputs.stream_state.name}): {UNKNOWN_SECTION}")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if inputs.incoming:
        return _from_stream(inputs, kernel, trace)
    return _at_power_on(inputs, kernel, trace)


def _needs(kernel: KernelCaps, state: SeoibState) -> str | None:
    if kernel.has(state.flag):
        return None
    return (f"kernel {kernel.name} lacks KVM_X2APIC_API {state.flag_name} "
            f"(bit {state.flag.bit_length() - 1}), which {state.name} needs")


def _at_power_on(inputs: SeoibInputs, kernel: KernelCaps, trace: _Trace) -> SeoibDecision:
    """The opt-in design: the user's seoib-policy, default quirked; no IOAPIC lookup."""
    policy = inputs.policy or "quirked"
    split = inputs.kernel_irqchip == "split"
    if policy == "quirked":
        trace("quirked", "quirked: no flag is set; KVM advertises SEOIB under a split irqchip "
                         "but keeps broadcasting EOIs" if split else
              "quirked: no flag is set")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    want = SeoibState.RESPECTED if policy == "respected" else SeoibState.NOT_ADVERTISED
    if want is SeoibState.RESPECTED and not split:
        return _done(inputs, kernel, trace, None,
                     "seoib-policy=respected needs kernel-irqchip=split: KVM rejects "
                     "ENABLE_SUPPRESS_EOI_BROADCAST with an in-kernel IOAPIC")
    missing = _needs(kernel, want)
    if missing:
        return _done(inputs, kernel, trace, None, missing)
    if want is SeoibState.RESPECTED and inputs.ioapic_version != 0x20:
        trace.warn("no-ioapic-lookup",
                   f"seoib-policy=respected with IOAPIC version {inputs.ioapic_version:#x}: the "
                   "opt-in design does not look at the IOAPIC; that one has no EOI register, so "
                   "a guest that turns on directed EOI never EOIs level-triggered interrupts")
    if not split:
        trace(policy, f"{policy}: {want.flag_name} is set (harmless: KVM never advertises SEOIB "
                      "with an in-kernel IOAPIC)")
    else:
        trace(policy, f"{policy}: {want.flag_name} is set")
    return _done(inputs, kernel, trace, want)


def _from_stream(inputs: SeoibInputs, kernel: KernelCaps, trace: _Trace) -> SeoibDecision:
    trace("deferred", f"{inputs.incoming}: the state comes from the stream, whatever the "
                      "policy; flags are set after the section loads and before the LAPIC "
                      "state does")
    if inputs.stream_state is None:
        trace("stream", f"no {SECTION} section known yet: QUIRKED unless the stream says "
                        "otherwise")
        state = SeoibState.QUIRKED
    else:
        state = inputs.stream_state
        trace("stream", f"the stream's {SECTION} is {state.name}")
    if state is not SeoibState.QUIRKED and inputs.kernel_irqchip != "split":
        return _done(inputs, kernel, trace, None,
                     f"the stream's {SECTION} is {state.name}, but this VM runs with "
                     f"kernel-irqchip={inputs.kernel_irqchip}: only QUIRKED is possible "
                     "without a split irqchip")
    missing = _needs(kernel, state)
    if missing:
        return _done(inputs, kernel, trace, None, f"cannot load the stream: {missing}")
    return _done(inputs, kernel, trace, state)


def _rfc_ioapic(inputs: SeoibInputs, trace: _Trace) -> int:
    """The RFC's IOAPIC version: qdev_find_global_prop, the first matching -global wins."""
    values = [_int(v) for v in inputs.ioapic_globals]
    if not values:
        version = 0x20
        trace("ioapic", "no -global sets the IOAPIC version: the RFC assumes 0x20")
    else:
        version = values[0] if values[0] is not None else 0x20
        trace("ioapic", f"IOAPIC version {version:#x} from the first -global "
                        f"ioapic.version={inputs.ioapic_globals[0]} (qdev_find_global_prop)")
    if len(values) > 1:
        trace.warn("rfc-first-global",
                   f"-global ioapic.version is given {len(values)} times: the RFC reads the "
                   f"first ({inputs.ioapic_globals[0]}), QEMU's IOAPIC takes the last "
                   f"({inputs.ioapic_globals[-1]})")
    if inputs.kernel_irqchip == "split" and version != inputs.ioapic_version:
        hidden = (" (machine compat properties are invisible to qdev_find_global_prop)"
                  if inputs.ioapic_source_kind == "compat" else "")
        trace.warn("rfc-ioapic-mismatch",
                   f"the RFC decides from IOAPIC version {version:#x}, but QEMU builds version "
                   f"{inputs.ioapic_version:#x} ({inputs.ioapic_detail}){hidden}")
    return version


def _int(text: str) -> int | None:
    """A -global value as QEMU parses a uint8 (base 0: 0x11, 17, 021)."""
    from machines.errors import MachinesError
    from machines.values import parse_value

    try:
        value = parse_value("uint8", text, "version")
    except MachinesError:
        return None
    return value if isinstance(value, int) else None


def _rfc(inputs: SeoibInputs, kernel: KernelCaps) -> SeoibDecision:
    """The RFC v2 code as posted (``rfc-v2``), or with a machine-type gate (``gated``)."""
    trace = _Trace()
    gated = inputs.design == "gated"
    trace("design", "design gated: the RFC v2 code for machine types from " + inputs.gate
          + " on" if gated else "design rfc-v2: the RFC v2 code as posted (no machine-type gate, "
          "no user setting)")
    split = inputs.kvm and inputs.kernel_irqchip == "split"
    kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    # x86_seoib_post_load runs whenever the section loads, -incoming or -loadvm alike: it
    # abort()s without KVM's split irqchip and when the kernel cannot take the flag
    loaded = inputs.stream_state if inputs.incoming is not None else None
    section = loaded is not None
    if not kvm_lapic:
        why = "not KVM" if not inputs.kvm else "kernel-irqchip=off"
        trace("no-kvm-lapic", f"{why}: the RFC code does nothing, there is no SEOIB state")
        if section:
            return _abort(inputs, kernel, trace, RFC_NOT_SPLIT,
                          f"loading {SECTION} without a split irqchip")
        return _done(inputs, kernel, trace, None)
    trace("kvm-lapic", f"KVM LAPIC with kernel-irqchip={inputs.kernel_irqchip}")
    if not inputs.x86_cpus_init:
        trace("no-x86-cpus-init", f"machine {inputs.machine} does not create its CPUs with "
                                  "x86_cpus_init: the RFC code never runs, no flag is set")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if inputs.incoming == "-incoming":
        trace("deferred", "-incoming: the RFC sets nothing at power-on; only a loaded "
                          f"{SECTION} sets the flags")
        if inputs.stream_state is None:
            trace("stream", f"no {SECTION} section: no flag is set, the VM stays QUIRKED")
            return _done(inputs, kernel, trace, SeoibState.QUIRKED)
        if not split:
            return _abort(inputs, kernel, trace, RFC_NOT_SPLIT,
                          f"loading {SECTION} ({inputs.stream_state.name}) without a split "
                          "irqchip")
        return _rfc_set(inputs, kernel, trace, inputs.stream_state, "the stream's " + SECTION)
    if not split:
        trace("in-kernel", "kernel-irqchip=on: the RFC code only acts with a split irqchip; no "
                           "flag is set")
        if loaded is not None:  # -loadvm: then the snapshot's section loads
            return _abort(inputs, kernel, trace, RFC_NOT_SPLIT,
                          f"loading the snapshot's {SECTION} ({loaded.name}) without a split "
                          "irqchip")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if gated and not inputs.gated_in:
        trace("gate", f"{inputs.machine} is older than the gate {inputs.gate}: the legacy "
                      "QUIRKED behaviour, no flag is set")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if inputs.microvm:
        trace.warn("rfc-microvm", "microvm is included: the RFC code runs from x86_cpus_init, "
                                  "which microvm calls too")
    system = kernel.system_flags
    if system & (ENABLE | DISABLE) != ENABLE | DISABLE:
        trace("kernel-check", f"KVM_CHECK_EXTENSION(KVM_CAP_X2APIC_API) on /dev/kvm is "
                              f"{system:#x}: the RFC needs both SEOIB bits (0xc)")
        trace.warn("rfc-fallback", RFC_FALLBACK)
        if loaded is not None:  # -loadvm: then the snapshot's section loads
            return _rfc_set(inputs, kernel, trace, loaded, "the snapshot's " + SECTION)
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    version = _rfc_ioapic(inputs, trace)
    state = SeoibState.RESPECTED if version >= 0x20 else SeoibState.NOT_ADVERTISED
    if inputs.incoming == "-loadvm":  # a power-on first, then the snapshot loads
        if not kernel.has(state.flag):
            return _rfc_set(inputs, kernel, trace, state, f"IOAPIC {version:#x}")
        trace("set-state", f"kvm_lapic_seoib_set_state state={state.value} (power-on, IOAPIC "
                           f"{version:#x})")
        if inputs.stream_state is not None:
            return _rfc_set(inputs, kernel, trace, inputs.stream_state, "the snapshot's " + SECTION)
        trace.warn("rfc-loadvm-silent", f"-loadvm of a snapshot without {SECTION}: the VM "
                                        f"keeps its power-on state {state.name}, silently")
        return _done(inputs, kernel, trace, state)
    return _rfc_set(inputs, kernel, trace, state, f"IOAPIC {version:#x}")


def _rfc_set(inputs: SeoibInputs, kernel: KernelCaps, trace: _Trace, state: SeoibState,
             why: str) -> SeoibDecision:
    if not kernel.has(state.flag):
        trace("set-state-failed", f"kvm_lapic_seoib_set_state_failed state={state.value} "
                                  f"supported={kernel.system_flags:#x} required={state.flag:#x}")
        return _abort(inputs, kernel, trace, RFC_SET_FAILED, f"setting {state.flag_name}")
    trace("set-state", f"kvm_lapic_seoib_set_state state={state.value} ({state.name} from "
                       f"{why}: {state.flag_name})")
    return _done(inputs, kernel, trace, state)


def _abort(inputs: SeoibInputs, kernel: KernelCaps, trace: _Trace, message: str, what: str
           ) -> SeoibDecision:
    trace.warn("rfc-abort", f"QEMU prints \"{message}\" and calls abort() when {what}: the "
                            "QEMU process crashes (SIGABRT)")
    return _done(inputs, kernel, trace, None, f"QEMU aborts: {message}")._replace(aborts=True)


def inputs_from(resolver: Resolver, stream_state: SeoibState | None = None) -> SeoibInputs:
    """Gather the decision's inputs from a resolved configuration."""
    config = resolver.config
    irqchip = resolver.kernel_irqchip()
    pic = ioapic(resolver) if config.machine.family in ("pc_q35", "pc_piix") else None
    from machines.i386.designs import GATED, OPT_IN, design_of, gated_in

    build = config.build
    design = design_of(build)
    aware = build.seoib_aware
    policy = policy_source = None
    if design.name == OPT_IN and config.kvm:
        resolved = resolver.resolve("kvm-accel", "seoib-policy")
        policy, policy_source = str(resolved.value), resolved.source
    elif design.name == OPT_IN:
        for glob in config.options.globals:  # -global kvm-accel... without KVM
            if glob.driver == "kvm-accel" and glob.property == "seoib-policy":
                policy = glob.value
                policy_source = Source("global", f"-global {glob.text}", driver="kvm-accel",
                                       text=glob.value)
    x2apic, x2apic_detail = False, "not KVM"
    if config.kvm:
        cpu = resolver.resolve(config.cpu_type, "x2apic")
        x2apic, x2apic_detail = bool(cpu.value), cpu.source.describe()
    qom = build.qom
    ioapic_types = set(qom.ancestry("ioapic")) if "ioapic" in qom else {"ioapic"}
    incoming = ("-incoming" if config.options.incoming is not None else
                "-loadvm" if config.options.loadvm is not None else None)
    return SeoibInputs(
        qemu=config.build.name,
        seoib_aware=aware,
        kvm=config.kvm,
        kernel_irqchip=str(irqchip.value) if irqchip is not None else None,
        ioapic_version=pic.version if pic else 0x20,
        ioapic_detail=(f"version {pic.version:#x} from {pic.source.describe()}" if pic
                       else "no IOAPIC"),
        policy=policy,
        policy_source=policy_source,
        x2apic=x2apic,
        x2apic_detail=x2apic_detail,
        incoming=incoming,
        stream_state=stream_state,
        design=design.name,
        machine=config.machine.name,
        gated_in=gated_in(build, config.machine),
        gate=(".".join(map(str, getattr(build, "gate", None) or ()))
              if design.name == GATED else ""),
        microvm=config.machine.name == "microvm",
        x86_cpus_init=(config.machine.family in ("pc_q35", "pc_piix")
                       or config.machine.name in ("microvm", "isapc")),
        ioapic_globals=tuple(g.value for g in config.options.globals
                             if g.property == "version" and g.driver in ioapic_types),
        ioapic_source_kind=pic.source.kind if pic else "default",
    )


class RestoreCheck(NamedTuple):
    allowed: bool
    current: SeoibState
    snapshot: SeoibState
    flags: int  # what QEMU sets on restore (0: nothing)
    reason: str
    fix: str | None = None
    warning: str | None = None  # allowed, but not what the snapshot had (rfc-v2)
    aborts: bool = False  # the RFC's code calls abort(): the QEMU process is gone


def check_restore(current: SeoibState, snapshot: SeoibState, kernel: KernelCaps,
                  kernel_irqchip: str = "split", design: str = "opt-in") -> RestoreCheck:
    """QMP/HMP loadvm on a running VM: can the kernel's committed mode follow?

    The kernel mode only moves QUIRKED -> ENABLED <-> DISABLED.  ``opt-in``
    refuses what the kernel cannot do; the RFC's code (``rfc-v2``,
    ``gated``) ignores a snapshot without the section and abort()s when a
    flag cannot be set; a QEMU without SEOIB code (``none``) knows no section.
    """
    if design == "none":
        if current is not SeoibState.QUIRKED:
            raise ValueError("a VM of a QEMU without SEOIB code is always QUIRKED")
        if snapshot is SeoibState.QUIRKED:
            return RestoreCheck(True, current, snapshot, 0, "no section, nothing to set")
        return RestoreCheck(False, current, snapshot, 0,
                            f"the snapshot carries {SECTION}, which this QEMU cannot load: "
                            f"{UNKNOWN_SECTION}",
                            "restore it with a QEMU that has the SEOIB design that saved it")
    if snapshot is current:
        return RestoreCheck(True, current, snapshot, 0, f"both are {current.name}: nothing to set")
    if design in ("rfc-v2", "gated"):
        if snapshot is SeoibState.QUIRKED:
            return RestoreCheck(
                True, current, snapshot, 0,
                f"the snapshot has no {SECTION}: the RFC code sets nothing, so the VM keeps "
                f"{current.name}", "restart QEMU with -loadvm (a new VM starts QUIRKED)",
                f"the snapshot was QUIRKED but the VM goes on {current.name}, silently")
        if kernel_irqchip != "split":
            return RestoreCheck(False, current, snapshot, 0,
                                f"QEMU prints \"{RFC_NOT_SPLIT}\" and calls abort(): the VM "
                                "is lost", "restore it on a VM started with kernel-irqchip=split",
                                aborts=True)
        if not kernel.has(snapshot.flag):
            return RestoreCheck(False, current, snapshot, 0,
                                f"kernel {kernel.name} lacks {snapshot.flag_name}: QEMU prints "
                                f"\"{RFC_SET_FAILED}\" and calls abort(): the VM is lost",
                                "restore it on a host whose kernel has the SEOIB API (Linux "
                                "7.0, 6.18.y, 6.19.y)", aborts=True)
        return RestoreCheck(True, current, snapshot, snapshot.flag,
                            f"kvm_lapic_seoib_set_state state={snapshot.value}: "
                            f"{snapshot.flag_name} is set")
    if snapshot is SeoibState.QUIRKED:
        return RestoreCheck(
            False, current, snapshot, 0,
            f"the VM's kernel mode is already {current.name} and KVM never returns to the "
            "legacy QUIRKED mode once a flag is set",
            "restart QEMU with -loadvm (a new VM starts QUIRKED and loads the snapshot's state)")
    if snapshot is SeoibState.RESPECTED and kernel_irqchip != "split":
        return RestoreCheck(False, current, snapshot, 0,
                            "RESPECTED needs a split irqchip; this VM's IOAPIC is in the kernel",
                            "restore it on a VM started with kernel-irqchip=split")
    if not kernel.has(snapshot.flag):
        return RestoreCheck(False, current, snapshot, 0,
                            f"kernel {kernel.name} lacks {snapshot.flag_name}",
                            "restore it on a host whose kernel has the SEOIB API (Linux 7.0, "
                            "6.18.y, 6.19.y)")
    how = ("the first flag leaves QUIRKED for good" if current is SeoibState.QUIRKED
           else "ENABLED and DISABLED switch freely; the last call wins")
    return RestoreCheck(True, current, snapshot, snapshot.flag,
                        f"{snapshot.flag_name} is set ({how}); the guest sees it when the "
                        "snapshot's LAPIC state is loaded")


def kernel_caps(name: str, enable: bool, disable: bool) -> KernelCaps:
    return KernelCaps(name, enable, disable)


def all_refused(decisions: Sequence[SeoibDecision]) -> bool:
    return bool(decisions) and all(d.refused for d in decisions)
