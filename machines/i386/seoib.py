"""The SEOIB policy a VM gets at power-on, and which snapshot restores are possible.

Background (details and sources in docs/seoib.md).  With a split irqchip
(userspace IOAPIC, KVM LAPIC) KVM has always advertised Suppress EOI
Broadcast to the guest (LAPIC version register bit 24) while still
broadcasting EOIs to the IOAPIC: the QUIRKED mode.  Linux 7.0 (and 6.18.y,
6.19.y) lets userspace choose instead, with two KVM_CAP_X2APIC_API flags:
ENABLE (bit 2, 0x4: advertise and honour it; split irqchip only) and DISABLE
(bit 3, 0x8: do not advertise it).  Once either is set the VM can switch
between them but never return to QUIRKED.

The model's QEMU 10.2 chooses with the ``kvm-accel`` property
``seoib-policy`` (auto, quirked, respected, not-advertised); machine types
up to 10.1 get ``quirked`` from ``pc_compat_10_1``.  Everything here is a
pure function of its inputs: the resolved configuration, a kernel's
capabilities, and, for ``-incoming``/``-loadvm``, the state the stream
carries.  Each rule that fires adds a step to the decision's trace.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple

from machines.i386.ioapic import ioapic
from machines.resolve import Resolver, Source

ENABLE = 0x4  # KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST
DISABLE = 0x8  # KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST
SECTION = "x86-seoib-state"
POLICIES = ("auto", "quirked", "respected", "not-advertised")
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
    def parse(cls, text: str) -> SeoibState:
        key = text.strip().upper().replace("-", "_")
        aliases = {"ENABLED": "RESPECTED", "DISABLED": "NOT_ADVERTISED"}
        return cls[aliases.get(key, key)]


class KernelCaps(NamedTuple):
    """What a kernel lets QEMU choose (from a kernel profile)."""

    name: str
    enable: bool
    disable: bool

    def has(self, flag: int) -> bool:
        return {0: True, ENABLE: self.enable, DISABLE: self.disable}[flag]


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
    section = (error is None and state is not None and state is not SeoibState.QUIRKED
               and inputs.seoib_aware)
    if state is not None and error is None and inputs.seoib_aware:
        trace("migration", f"the stream carries {SECTION} ({state.name})" if section else
              f"no {SECTION} section: QUIRKED is what every QEMU assumes without one")
    return SeoibDecision(kernel.name, inputs.policy, inputs.policy_source, state, flags, lvr,
                         suppressed, section, tuple(trace.warnings), tuple(trace.steps), error,
                         deferred)


def _explicit(inputs: SeoibInputs) -> bool:
    return inputs.policy_source is not None and inputs.policy_source.kind in EXPLICIT_SOURCES


def decide(inputs: SeoibInputs, kernel: KernelCaps) -> SeoibDecision:
    """The SEOIB state this configuration gets on this kernel, with the trace."""
    trace = _Trace()
    kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    if inputs.policy is not None and inputs.policy_source is not None:
        trace("policy", f"seoib-policy={inputs.policy} ({inputs.policy_source.describe()})")
    if not inputs.seoib_aware:
        trace("seoib-unaware", f"QEMU {inputs.qemu} has no seoib-policy: it never sets the "
                               "SEOIB flags and cannot load an x86-seoib-state section")
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
                         f"({inputs.stream_state.name})")
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
    policy = inputs.policy or "auto"
    split = inputs.kernel_irqchip == "split"
    if policy == "quirked":
        trace("quirked", "quirked: no flag is set; KVM advertises SEOIB under a split irqchip "
                         "but keeps broadcasting EOIs" if split else
              "quirked: no flag is set")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if not split:  # in-kernel irqchip: the IOAPIC is KVM's, version 0x11, no EOI register
        if policy == "respected":
            return _done(inputs, kernel, trace, None,
                         "seoib-policy=respected needs kernel-irqchip=split: KVM rejects "
                         "ENABLE_SUPPRESS_EOI_BROADCAST with an in-kernel IOAPIC")
        if policy == "not-advertised":
            missing = _needs(kernel, SeoibState.NOT_ADVERTISED)
            if missing:
                return _done(inputs, kernel, trace, None, missing)
            trace("not-advertised", "not-advertised: DISABLE is set (harmless: KVM never "
                                    "advertises SEOIB with an in-kernel IOAPIC)")
            return _done(inputs, kernel, trace, SeoibState.NOT_ADVERTISED)
        trace("auto-in-kernel", "auto with an in-kernel IOAPIC (0x11): KVM never advertises "
                                "SEOIB there, so nothing is set")
        return _done(inputs, kernel, trace, SeoibState.QUIRKED)
    if policy == "auto":
        want = (SeoibState.RESPECTED if inputs.ioapic_version == 0x20
                else SeoibState.NOT_ADVERTISED)
        trace("auto", f"auto with split irqchip and IOAPIC {inputs.ioapic_version:#x}: "
                      f"{want.name} ({want.flag_name})")
        missing = _needs(kernel, want)
        if missing:
            trace.warn("auto-fallback", f"{missing}; keeping the legacy QUIRKED behaviour")
            return _done(inputs, kernel, trace, SeoibState.QUIRKED)
        trace("kernel", f"kernel {kernel.name} supports {want.flag_name}")
        return _done(inputs, kernel, trace, want)
    want = SeoibState.RESPECTED if policy == "respected" else SeoibState.NOT_ADVERTISED
    if want is SeoibState.RESPECTED and inputs.ioapic_version != 0x20:
        return _done(inputs, kernel, trace, None,
                     f"seoib-policy=respected with IOAPIC version {inputs.ioapic_version:#x}: "
                     "that IOAPIC has no EOI register, so a guest that turns on directed EOI "
                     "would never EOI level-triggered interrupts")
    missing = _needs(kernel, want)
    if missing:
        return _done(inputs, kernel, trace, None, missing)
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


def inputs_from(resolver: Resolver, stream_state: SeoibState | None = None) -> SeoibInputs:
    """Gather the decision's inputs from a resolved configuration."""
    config = resolver.config
    irqchip = resolver.kernel_irqchip()
    pic = ioapic(resolver) if config.machine.family in ("pc_q35", "pc_piix") else None
    aware = config.build.seoib_aware
    policy = policy_source = None
    if aware and config.kvm:
        resolved = resolver.resolve("kvm-accel", "seoib-policy")
        policy, policy_source = str(resolved.value), resolved.source
    elif aware:
        for glob in config.options.globals:  # -global kvm-accel... without KVM
            if glob.driver == "kvm-accel" and glob.property == "seoib-policy":
                policy = glob.value
                policy_source = Source("global", f"-global {glob.text}", driver="kvm-accel",
                                       text=glob.value)
    x2apic, x2apic_detail = False, "not KVM"
    if config.kvm:
        cpu = resolver.resolve(config.cpu_type, "x2apic")
        x2apic, x2apic_detail = bool(cpu.value), cpu.source.describe()
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
    )


class RestoreCheck(NamedTuple):
    allowed: bool
    current: SeoibState
    snapshot: SeoibState
    flags: int  # what QEMU sets on restore (0: nothing)
    reason: str
    fix: str | None = None


def check_restore(current: SeoibState, snapshot: SeoibState, kernel: KernelCaps,
                  kernel_irqchip: str = "split") -> RestoreCheck:
    """QMP/HMP loadvm on a running VM: can the kernel's committed mode follow?

    The kernel mode only moves QUIRKED -> ENABLED <-> DISABLED; restoring a
    QUIRKED snapshot into a VM that already set a flag needs a fresh VM.
    """
    if snapshot is current:
        return RestoreCheck(True, current, snapshot, 0, f"both are {current.name}: nothing to set")
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
