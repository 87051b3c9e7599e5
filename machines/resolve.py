"""Effective property values, and where each one came from.

QEMU sets a property of a new object in this order (qom/object.c,
hw/core/qdev.c), each step overriding the one before:

1. the type's default (or what the object's instance_init sets);
2. the accelerator's compat properties (``object_compat_props[0]``);
3. the machine type's compat properties, in ``compat_props`` order
   (``object_compat_props[1]``);
4. "sugar" properties that legacy options register
   (``object_compat_props[2]``: ``-machine kernel-irqchip=`` for the KVM
   accelerator);
5. the user's ``-global`` options (and ``-cpu`` features, which QEMU turns
   into globals on the CPU type), in command-line order.

An entry applies when the object's type "is a" the entry's driver (the type
or an ancestor).  For the accelerator object, ``-accel`` options come last.
A virtio PCI proxy's aliased property lives on its backend device, which is
created (with its own steps 1-5) inside the proxy's instance_init; the
proxy's own steps then apply through the alias.
"""

from collections.abc import Iterable
from functools import cache
from typing import NamedTuple

from machines.build import Build
from machines.compat.tables import CompatProp
from machines.config import VmConfig
from machines.errors import PropertyError, UsageError
from machines.machine import MachineType
from machines.options import AccelOption, DeviceOption, GlobalOption
from machines.qom import PropertyInfo, QomTypes
from machines.realize import decided_at_realize, forced_at_realize, left_to_realize
from machines.values import Value, parse_value


class Source(NamedTuple):
    """Where an effective value came from."""

    # default | instance | accel-compat | compat | sugar | global | cpu | accel
    # | machine-default | realize | unset
    kind: str
    detail: str = ""
    table: str | None = None
    entry: int | None = None
    driver: str | None = None
    text: str | None = None

    def describe(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"source": self.kind}
        for key in ("detail", "table", "entry", "driver", "text"):
            value = getattr(self, key)
            if value is not None and value != "":
                out[key] = value
        return out


class Resolved(NamedTuple):
    """One property's effective value with its provenance (last step that set it)."""

    typename: str
    prop: str
    type: str
    value: Value | None
    source: Source
    overridden: tuple[Source, ...] = ()  # earlier steps that set it, oldest first
    realized: Value | None = None  # when QEMU decides at realize: what a plain machine showed
    realize_rule: str | None = None  # when QEMU decides at realize: how

    @property
    def decided_at_realize(self) -> bool:
        return self.realized is not None or self.realize_rule is not None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, **self.source.to_json()}
        if self.decided_at_realize:
            out["decided_at_realize"] = True
        if self.realized is not None:
            out["realized_on_plain_machine"] = self.realized
        if self.realize_rule is not None:
            out["realize_rule"] = self.realize_rule
        return out


def _default_source(info: PropertyInfo) -> Source:
    if info.default_origin == "instance":
        return Source("instance", "value the object sets when created")
    if info.default_origin not in ("type",):
        return Source("default", f"type default (new or changed in QEMU {info.default_origin})")
    return Source("default", "type default")


@cache
def _parse(qapi_type: str, text: str, name: str) -> Value:
    return parse_value(qapi_type, text, name)


# -device options qdev_device_add takes itself instead of setting them as properties.
DEVICE_OPTIONS = ("driver", "bus", "id")
# Every object's QOM type name, which no option may set ("Property 'e1000.type' is not
# writable", QEMU 10.0.2, for -device and -accel alike).
READ_ONLY = "type"


_C_SPACE = " \t\n\v\f\r"  # isspace() in the C locale
_HEX_DIGITS = "0123456789abcdefABCDEF"


def _scan_hex(text: str, pos: int) -> tuple[int, int] | None:
    """glibc ``sscanf``'s ``%x`` at ``pos``: (the ``unsigned int`` it stores, end), or None.

    It skips white space, takes a sign and a ``0x``: a bare ``0x`` is 0 and both characters
    are consumed (scanf cannot put them back, unlike strtoul), then converts as strtoul does
    (a minus negates modulo 2^64, overflow is ULONG_MAX) and keeps the low 32 bits.
    """
    while text[pos:pos + 1] and text[pos] in _C_SPACE:
        pos += 1
    negative = text[pos:pos + 1] == "-"
    if text[pos:pos + 1] in ("+", "-"):
        pos += 1
    digits = ""
    if text[pos:pos + 1] == "0":
        digits, pos = "0", pos + 1
        if text[pos:pos + 1] in ("x", "X"):
            pos += 1
    while text[pos:pos + 1] and text[pos] in _HEX_DIGITS:
        digits, pos = digits + text[pos], pos + 1
    if not digits:
        return None
    number = int(digits, 16)
    if number > 2**64 - 1:
        number = 2**64 - 1
    elif negative:
        number = -number % 2**64
    return number & 0xFFFFFFFF, pos


def _pci_devfn(text: str, typename: str) -> int:
    """QEMU's PCI ``addr`` property (set_pci_devfn): ``SLOT[.FN]`` in hex -> slot << 3 | fn.

    QEMU reads it with ``sscanf(str, "%x.%x%n")``, else ``"%x%n"``, and refuses anything
    left over, a slot above 0x1f or a function above 7.  So ``+5``, `` 5``, ``5. 1`` and a
    bare ``0x`` are accepted, as the real binaries do.
    """
    slot = _scan_hex(text, 0)
    func = None
    if slot is not None and text[slot[1]:slot[1] + 1] == ".":
        func = _scan_hex(text, slot[1] + 1)
    fn, end = func if func is not None else (0, slot[1] if slot is not None else 0)
    if slot is None or end != len(text) or fn & ~0x7 or slot[0] & ~0x1F:
        raise PropertyError(f"Property '{typename}.addr' doesn't take value '{text}'")
    return slot[0] << 3 | fn


def _device_value(info: PropertyInfo, text: str, typename: str, prop: str, option: str
                  ) -> Value:
    """``prop=text`` of the ``-device`` option ``option``; QEMU's error names the option.

    QEMU reads -device options with its keyval visitor, which parses numbers as -global's
    does but words a failure of the 64-bit step "expects integer", and any failed size
    "expects size" (the narrower range checks are worded alike)."""
    try:
        if prop == "addr" and info.type == "str":
            return _pci_devfn(text, typename)
        return _parse(info.type, text, prop)
    except PropertyError as err:
        words = str(err)
        if info.type == "size":
            words = f"Parameter '{prop}' expects size"
        elif words.endswith(("expects uint64", "expects int64")):
            words = f"Parameter '{prop}' expects integer"
        raise PropertyError(f"{option}: {words}") from None


class Resolver:
    """Resolve properties of any QOM type for one VM configuration."""

    def __init__(self, config: VmConfig) -> None:
        self.config = config
        self.build: Build = config.build
        self.qom: QomTypes = config.build.qom
        self._compat = config.machine.compat_props()
        self._accel_compat = config.build.accel_compat.get(config.accel, ())

    # -- the steps, for one object of type ``owner``
    def _steps(self, owner: str, prop: str) -> Iterable[tuple[str, Source]]:
        ancestry = set(self.qom.ancestry(owner))
        for i, p in enumerate(self._accel_compat):
            if p.property == prop and p.driver in ancestry:
                yield p.value, Source("accel-compat", f"{self.config.accel} accelerator", None, i,
                                      p.driver, p.value)
        for cp in self._matching_compat(owner, prop, ancestry):
            yield cp.value, Source("compat", f"{cp.table}[{cp.entry}] {cp.prop}", cp.table,
                                   cp.entry, cp.driver, cp.value)
        for glob in self._sugar():
            if glob.property == prop and glob.driver in ancestry:
                yield glob.value, Source("sugar", glob.text, driver=glob.driver, text=glob.value)
        for glob in self.config.options.globals:
            if glob.property == prop and glob.driver in ancestry and self._global_applies(owner):
                yield glob.value, Source("global", f"-global {glob.text}", driver=glob.driver,
                                         text=glob.value)
        cpu = self.config.options.cpu
        if cpu is not None and self.config.cpu_type in ancestry:
            for name, value in cpu.props:
                if name == prop:
                    yield value, Source("cpu", f"-cpu {cpu.text}", driver=self.config.cpu_type,
                                        text=value)

    def _accel_instance_defaults(self, owner: str) -> dict[str, tuple[str, str]]:
        """What the accelerator's CPU instance_init sets before any global."""
        if self.config.kvm and self.qom.is_a(owner, "x86_64-cpu"):
            from machines.i386.cpu import kvm_instance_defaults

            irqchip = self.kernel_irqchip()
            return kvm_instance_defaults(owner, str(irqchip.value) if irqchip else None)
        return {}

    def _matching_compat(self, owner: str, prop: str, ancestry: set[str]) -> list[CompatProp]:
        return [cp for cp in _by_property(self.config.machine).get(prop, ())
                if cp.driver in ancestry
                and not (cp.prop.optional and prop not in self.qom.properties(owner))]

    def _global_applies(self, owner: str) -> bool:
        # -global reaches devices; the accelerator only in builds that give it that.
        return self.qom.is_a(owner, "device") or (
            self.build.globals_reach_accel and self.qom.is_a(owner, "accel"))

    def _sugar(self) -> list[GlobalOption]:
        """Properties legacy -machine keys register for the accelerator."""
        out = []
        opts = self.config.options
        for key in ("kernel-irqchip", "kvm-shadow-mem"):
            value = opts.machine_opt(key)
            if value is not None:
                out.append(GlobalOption("kvm-accel", key, value, f"-machine {key}={value}"))
        return out

    # -- public
    def resolve(self, typename: str, prop: str, device: DeviceOption | None = None
                ) -> Resolved:
        """``typename.prop``; with ``device``, for that ``-device`` (its own options last)."""
        props = self.qom.properties(typename)
        info = props.get(prop)
        if info is None:
            raise PropertyError(f"Property '{typename}.{prop}' not found")
        owner = self.qom.property_owner(typename, prop)
        history: list[Source] = []
        value: Value | None = info.default if info.has_default else None
        source = _default_source(info) if info.has_default else Source("unset", "no default")
        accel_default = self._accel_instance_defaults(owner).get(prop)
        if accel_default is not None:
            history.append(source)
            value = _parse(info.type, accel_default[0], prop)
            source = Source("accel-default", accel_default[1], text=accel_default[0])
        owners = [owner] if owner == typename else [owner, typename]
        for obj in owners:
            for text, step in self._steps(obj, prop):
                try:
                    parsed = _parse(info.type, text, prop)
                except PropertyError as err:
                    raise PropertyError(f"can't apply global {step.driver}.{prop}={text}: {err}") \
                        from None
                history.append(source)
                value, source = parsed, step
        given = self._accel_given() if typename == self.accel_type else None
        if given is not None:
            for name, text in given.props:
                if name == prop:
                    parsed = _parse(info.type, text, prop)
                    history.append(source)
                    value, source = parsed, Source("accel", given.text, text=text)
        cpu = self.config.options.cpu
        if cpu is not None and typename == self.config.cpu_type:
            # +feat/-feat are applied when the CPU is realized, over everything
            # else ("-x2apic,x2apic=on" leaves x2apic off); minus goes last.
            for flags, flag_value in ((cpu.plus, True), (cpu.minus, False)):
                if prop in {f.replace("_", "-") for f in flags}:
                    history.append(source)
                    value = flag_value
                    source = Source("cpu", f"-cpu {cpu.text}", driver=typename,
                                    text=("+" if flag_value else "-") + prop)
        if device is not None:
            # qdev_device_add sets the -device's own options after the globals.
            for name, text in device.props:
                if name == prop:  # as given: QEMU does not turn '_' into '-' here
                    history.append(source)
                    value = _device_value(info, text, typename, prop, device.text)
                    source = Source("device", device.text, driver=typename, text=text)
        forced = forced_at_realize(self.qom, typename, prop)
        if forced is not None:
            history.append(source)
            value, source = forced[0], Source("realize", forced[1])  # type: ignore[assignment]
        elif value is None and info.type in ("str", "string"):
            value = ""  # a NULL string property reads back as "" over QMP
        unset = source.kind in ("default", "instance")
        realized = info.realized if unset else None
        rule = decided_at_realize(self.qom, typename, prop) if unset else None
        if rule is None and left_to_realize(prop, value):
            rule = "an unspecified vector count (0xFFFFFFFF): realize works it out"
        return Resolved(typename, prop, info.type, value, source, tuple(history), realized, rule)

    def device(self, typename: str, device: DeviceOption | None = None
               ) -> dict[str, Resolved]:
        """Every property of ``typename`` (of that ``-device``, if given), sorted by name."""
        if typename not in self.qom:
            raise UsageError(f"unknown QOM type '{typename}' in QEMU {self.build.name}")
        if typename in self.qom.abstract:
            raise UsageError(f"'{typename}' is an abstract type; name a concrete one")
        props = self.qom.properties(typename)
        if device is not None:
            for name, _ in device.props:
                if name == READ_ONLY:
                    raise PropertyError(f"{device.text}: Property '{typename}.{name}' is not "
                                        "writable")
                if name not in DEVICE_OPTIONS and name not in props:
                    raise PropertyError(f"{device.text}: Property '{typename}.{name}' not found")
        return {name: self.resolve(typename, name, device) for name in sorted(props)
                if not props[name].type.startswith(("link<", "child<"))}

    def compat_effective(self) -> dict[tuple[str, str], Resolved]:
        """The machine type's compat props folded: the last word per driver.property.

        This depends on the machine type alone, so it is computed once per
        machine class and shared (the values are immutable).
        """
        machine = self.config.machine
        cached: dict[tuple[str, str], Resolved] | None = vars(machine).get("_folded")
        if cached is None:
            cached = _fold_compat(machine, self.qom)
            type.__setattr__(machine, "_folded", cached)
        return dict(cached)

    # -- the accelerator object
    @property
    def accel_type(self) -> str:
        return f"{self.config.accel}-accel"

    def _accel_given(self) -> AccelOption | None:
        """The ``-accel`` option that names the accelerator in use, if one does."""
        return next((a for a in self.config.options.accels if a.name == self.config.accel), None)

    def kernel_irqchip(self) -> Resolved | None:
        """KVM's effective kernel-irqchip; the machine type's default when unset.

        ``kernel-irqchip`` has no getter and no default: kvm_init() turns
        "unset" into ``split`` when the machine class says
        ``default_kernel_irqchip_split`` (only pc-q35-4.0), else ``on``.
        None when the accelerator is not KVM.
        """
        if not self.config.kvm:
            return None
        resolved = self.resolve("kvm-accel", "kernel-irqchip")
        if resolved.value is not None:
            return resolved
        split = bool(self.config.machine.default_kernel_irqchip_split)
        return Resolved("kvm-accel", "kernel-irqchip", resolved.type, "split" if split else "on",
                        Source("machine-default",
                               f"{self.config.machine.name} default_kernel_irqchip_split="
                               f"{'true' if split else 'false'}"))

    def check_accel(self) -> None:
        """Fail as QEMU would on the accelerator's options: unknown properties, bad values.

        Only what the command line sets can be wrong (compat data is checked
        against QEMU), so only those properties are resolved.
        """
        props = self.qom.properties(self.accel_type) if self.accel_type in self.qom else {}
        given = self._accel_given()
        if given is not None:
            for name, text in given.props:
                info = props.get(name)
                if name == READ_ONLY:
                    raise PropertyError(f"{given.text}: Property '{self.accel_type}.{name}' "
                                        "is not writable")
                if info is None:
                    raise PropertyError(f"{given.text}: Property '{self.accel_type}.{name}' "
                                        "not found")
                try:
                    _parse(info.type, text, name)
                except PropertyError as err:
                    raise PropertyError(f"{given.text}: {err}") from None
        # QEMU names the -accel option it was applying; an accelerator that -machine accel=
        # or -enable-kvm chose has none ("can't apply global kvm-accel...", QEMU 10.0.2).
        where = f"{given.text}: " if given is not None else ""
        touched = {g.property for g in (*self._sugar(), *self.config.options.globals)}
        for name in sorted(touched & props.keys()):
            try:
                self.resolve(self.accel_type, name)
            except PropertyError as err:
                raise PropertyError(f"{where}{err}") from None

    def accel(self) -> dict[str, Resolved]:
        """Every property of the accelerator, after :meth:`check_accel`."""
        self.check_accel()
        props = self.qom.properties(self.accel_type) if self.accel_type in self.qom else {}
        return {name: self.resolve(self.accel_type, name) for name in sorted(props)}


def _by_property(machine: type[MachineType]) -> dict[str, list[CompatProp]]:
    """The machine type's compat props by property name, in order (kept on the class)."""
    cached: dict[str, list[CompatProp]] | None = vars(machine).get("_by_property")
    if cached is None:
        cached = {}
        for cp in machine.compat_props():
            cached.setdefault(cp.property, []).append(cp)
        type.__setattr__(machine, "_by_property", cached)
    return cached


def _fold_compat(machine: type[MachineType], qom: QomTypes) -> dict[tuple[str, str], Resolved]:
    out: dict[tuple[str, str], Resolved] = {}
    for cp in machine.compat_props():
        key = (cp.driver, cp.property)
        info = qom.properties(cp.driver).get(cp.property) if cp.driver in qom else None
        qapi_type = info.type if info else "str"
        value = _parse(qapi_type, cp.value, cp.property) if info else cp.value
        prior = out.get(key)
        out[key] = Resolved(cp.driver, cp.property, qapi_type, value,
                            Source("compat", f"{cp.table}[{cp.entry}] {cp.prop}", cp.table,
                                   cp.entry, cp.driver, cp.value),
                            (*prior.overridden, prior.source) if prior else ())
    return out
