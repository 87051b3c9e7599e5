"""A VM configuration: parsed QEMU options checked against one QEMU build.

:func:`configure` does what QEMU does between parsing its command line and
creating devices: pick the machine type (aliases, the default), pick the
accelerator (``-accel``, legacy ``-machine accel=``, ``-enable-kvm``, or the
program's default), and check ``-machine`` properties, ``-global`` and
``-cpu`` against the build's types, failing with QEMU's own words.
"""

from typing import NamedTuple

from machines.build import Build
from machines.errors import OptionError, PropertyError, UsageError
from machines.machine import MachineType
from machines.options import CpuOption, GlobalOption, QemuOptions
from machines.registry import known_elsewhere
from machines.values import parse_value

# -machine keys that QEMU consumes itself instead of setting them on the machine.
LEGACY_MACHINE_KEYS = ("type", "accel", "kernel-irqchip", "kvm-shadow-mem", "igd-passthru",
                       "memory-backend")
# AccelClass.name, which QEMU's "falling back to" line names.
ACCEL_NAMES = {"kvm": "KVM", "tcg": "tcg", "xen": "Xen", "qtest": "QTest", "hvf": "HVF"}


class VmConfig(NamedTuple):
    """What QEMU would build: machine type, accelerator, options; nothing resolved yet."""

    build: Build
    machine: type[MachineType]
    machine_as_given: str | None
    accel: str
    accel_source: str
    cpu_type: str
    options: QemuOptions
    warnings: tuple[str, ...] = ()

    @property
    def kvm(self) -> bool:
        return self.accel == "kvm"

    @property
    def alias_used(self) -> bool:
        return self.machine_as_given is not None and self.machine_as_given != self.machine.name


def _pick_accel(build: Build, opts: QemuOptions, warnings: list[str]) -> tuple[str, str]:
    """configure_accelerators: the first accelerator the build has, in the order given.

    An accelerator the build does not have (accel_find: no ``NAME-accel`` type) is an
    error line; QEMU goes on to the next one and, when one is found, says it fell back
    to it.  When none is found, QEMU exits with those lines (the first is the error).
    """
    legacy = opts.machine_opt("accel")
    if opts.accels and legacy is not None:
        raise UsageError('The -accel and "-machine accel=" options are incompatible')
    if opts.accels:
        tried = [(a.name, a.text, f"{a.text}: ") for a in opts.accels]
    elif legacy is not None:
        # g_strsplit: an empty string has no names at all
        tried = [(name, f"-machine accel={legacy}", "") for name in legacy.split(":") if legacy]
    else:
        # QEMU's default: "kvm:tcg" when the program name ends in "kvm", else "tcg:kvm".
        program = (opts.binary or "qemu-system-x86_64").rsplit("/", 1)[-1]
        if program.endswith("kvm"):
            return "kvm", f"default of {program} (kvm:tcg)"
        return "tcg", f"default of {program} (tcg:kvm)"
    found = [t for t in tried if f"{t[0]}-accel" in build.qom]  # accel_find
    # -accel options are tried in turn up to the first that works; the names of
    # -machine accel= are all checked first, then the valid ones tried.
    upto = tried.index(found[0]) if found and opts.accels else len(tried)
    failed = [f"{where}invalid accelerator {name}" for name, _, where in tried[:upto]
              if f"{name}-accel" not in build.qom]
    if not found:
        raise UsageError(failed[0] if failed else "no accelerator found")
    warnings += failed
    if failed:
        warnings.append(f"falling back to {ACCEL_NAMES.get(found[0][0], found[0][0])}")
    return found[0][0], found[0][1]


def configure(build: Build, opts: QemuOptions,
              machine: type[MachineType] | None = None) -> VmConfig:
    """Check ``opts`` against ``build`` the way QEMU would before creating devices.

    ``machine`` skips the lookup: reports describe types a build knows but no
    longer registers through it.
    """
    warnings = list(opts.warnings)
    given = opts.machine_opt("type")
    if machine is not None:
        given = machine.name
    elif given is None:
        machine = build.default_machine
        if machine is None:
            raise UsageError(f"QEMU {build.name} has no default machine type; give -machine")
    else:
        from machines.naming import foreign_machine

        arch = foreign_machine(given)
        if arch is not None and build.find(given) is None:
            raise UsageError(f"machine type '{given}' is not an x86 machine type ({arch}): "
                             "only x86 is modelled")
        machine = build.lookup(given, known_elsewhere)
    qom = build.qom
    machine_type = f"{machine.name}-machine"
    machine_props = qom.properties(machine_type) if machine_type in qom else {}
    for key, value in opts.machine:
        if key in LEGACY_MACHINE_KEYS:
            continue
        # a.b=...: member b of the property a; '--vendor.com-name' is one (downstream) name
        prop, nested, _ = (key, "", "") if key.startswith("--") else key.partition(".")
        info = machine_props.get(prop)
        if info is None:
            raise PropertyError(f"Property '{machine_type}.{prop}' not found")
        if not nested:  # a list or struct's members are not checked (open)
            parse_value(info.type, value, key)
    accel, accel_source = _pick_accel(build, opts, warnings)
    cpu_type = _cpu_type(build, opts.cpu, machine)
    if opts.cpu is not None:
        _check_cpu_features(build, opts.cpu, cpu_type)
    for glob in opts.globals:
        _check_global(build, glob, accel, warnings)
    for device in opts.devices:
        if device.driver not in qom or not qom.is_a(device.driver, "device") \
                or device.driver in qom.abstract:
            where, _, arg = device.text.partition(" ")
            raise OptionError(where, arg, f"'{device.driver}' is not a valid device model name")
    return VmConfig(build, machine, given, accel, accel_source, cpu_type, opts, tuple(warnings))


def _cpu_type(build: Build, cpu: CpuOption | None, machine: type[MachineType]) -> str:
    if cpu is None:
        return machine.default_cpu_type or "qemu64-x86_64-cpu"
    typename = f"{cpu.model}-x86_64-cpu"
    if typename not in build.qom or build.qom.abstract.__contains__(typename):
        raise UsageError(f"unable to find CPU model '{cpu.model}'")
    return typename


def _check_cpu_features(build: Build, cpu: CpuOption, cpu_type: str) -> None:
    """-cpu features become globals on the CPU type; +feat/-feat are set at realize."""
    props = build.qom.properties(cpu_type)
    for name, value in cpu.props:
        _check_global(build, GlobalOption(cpu_type, name, value, cpu.text), "", [])
    for feat in (*cpu.plus, *cpu.minus):
        if feat.replace("_", "-") not in props:
            raise PropertyError(f"Property '{cpu_type}.{feat}' not found")


def _check_global(build: Build, glob: GlobalOption, accel: str, warnings: list[str]) -> None:
    qom = build.qom
    if glob.driver not in qom:
        warnings.append(f"global {glob.driver}.{glob.property} has invalid class name")
        return
    if not qom.is_a(glob.driver, "device") and not (
        build.globals_reach_accel and qom.is_a(glob.driver, "accel")
    ):
        # QEMU applies -global only to devices; anything else is never used.
        warnings.append(f"global {glob.driver}.{glob.property} has invalid class name")
        return
    info = qom.find_property(glob.driver, glob.property)
    prefix = f"can't apply global {glob.driver}.{glob.property}={glob.value}: "
    if glob.property == "type":  # every object's QOM type name, which nothing may set
        raise PropertyError(prefix + f"Property '{glob.driver}.type' is not writable")
    if info is None:
        raise PropertyError(prefix + f"Property '{glob.driver}.{glob.property}' not found")
    try:
        parse_value(info.type, glob.value, glob.property)
    except PropertyError as err:
        raise PropertyError(prefix + str(err)) from None
