"""QEMU's command-line grammars: keyval, QemuOpts, -global, -cpu, pasted lines."""

from __future__ import annotations

import pytest

from machines.errors import OptionError, UsageError
from machines.options import (
    keyval_parse,
    opts_parse,
    parse_args,
    parse_cpu,
    parse_global,
    split_command_line,
)


def test_keyval_implied_type_and_escapes() -> None:
    assert keyval_parse("q35,kernel-irqchip=split", "type") == [
        ("type", "q35"), ("kernel-irqchip", "split")]
    assert keyval_parse("type=q35,id=a,,b", "type") == [("type", "q35"), ("id", "a,b")]
    assert keyval_parse("q35,x.y=1", "type") == [("type", "q35"), ("x.y", "1")]


@pytest.mark.parametrize(("arg", "message"), [
    ("q35,foo", "Expected '=' after parameter 'foo'"),
    ("q35,,x", "Invalid parameter ''"),
    ("=q35", "Invalid parameter ''"),
    ("q35,=x", "Invalid parameter ''"),
    ("q35,1a=b", "Invalid parameter '1a'"),
    ("type=q35,pc", "Expected '=' after parameter 'pc'"),
    ("q35," + "a" * 130 + "=1", "Parameter '" + "a" * 130 + "' is too long"),
])
def test_keyval_errors(arg: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        keyval_parse(arg, "type")
    assert str(err.value) == message


def test_keyval_later_keys_replace_earlier() -> None:
    opts = parse_args(["-machine", "q35,usb=on,usb=off", "-M", "kernel_irqchip=split"])
    assert opts.machine_opt("usb") == "off"
    assert opts.machine_opt("kernel-irqchip") == "split"  # keys are dashified
    assert opts.machine_opt("type") == "q35"


def test_opts_implied_name_flags_and_escapes() -> None:
    pairs, warnings = opts_parse("kvm,kernel-irqchip=split,nothing,x=a,,b", "accel")
    assert pairs == [("accel", "kvm"), ("kernel-irqchip", "split"), ("thing", "off"),
                     ("x", "a,b")]
    assert warnings == ["short-form boolean option 'nothing' deprecated"]
    pairs, _ = opts_parse("accel=tcg", "accel")
    assert pairs == [("accel", "tcg")]


def test_global_short_form_keeps_commas_in_value() -> None:
    g = parse_global("ioapic.version=0x11,foo")
    assert (g.driver, g.property, g.value) == ("ioapic", "version", "0x11,foo")
    g = parse_global("kvm-accel.seoib-policy=quirked")
    assert (g.driver, g.property, g.value) == ("kvm-accel", "seoib-policy", "quirked")


def test_global_long_form() -> None:
    g = parse_global("driver=ioapic,property=version,value=0x11")
    assert (g.driver, g.property, g.value) == ("ioapic", "version", "0x11")
    with pytest.raises(OptionError, match="options 'driver', 'property', and 'value' are required"):
        parse_global("driver=ioapic,property=version")
    with pytest.raises(OptionError, match="Invalid parameter 'bogus'"):
        parse_global("driver=ioapic,property=version,value=1,bogus=2")


def test_cpu_features_as_qemus_featurestr() -> None:
    cpu = parse_cpu("Skylake-Server,+x2apic,-pku,l3_cache=off,vmx,tsc-freq=2G")
    assert cpu.model == "Skylake-Server"
    assert cpu.plus == ("x2apic",)
    assert cpu.minus == ("pku",)
    assert cpu.props == (("l3-cache", "off"), ("vmx", "on"), ("tsc-frequency", "2G"))


def test_parse_args_records_everything_relevant() -> None:
    opts = parse_args(["-name", "guest", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                       "-global", "ioapic.version=0x11", "-cpu", "host,-x2apic",
                       "-incoming", "defer", "-loadvm", "snap1", "-S", "-nodefaults",
                       "--enable-kvm", "disk.img", "-device", "e1000,id=n0"])
    assert opts.accels[0].name == "kvm"
    assert opts.accels[0].props == (("kernel-irqchip", "split"),)
    assert opts.globals[0].value == "0x11"
    assert opts.cpu is not None and opts.cpu.minus == ("x2apic",)
    assert opts.incoming == "defer" and opts.loadvm == "snap1"
    assert opts.machine_opt("accel") == "kvm"
    assert opts.devices[0].driver == "e1000"


def test_parse_args_errors_are_qemus() -> None:
    with pytest.raises(UsageError, match=r"^-bogus: invalid option$"):
        parse_args(["-bogus"])
    with pytest.raises(UsageError, match=r"^-machine: requires an argument$"):
        parse_args(["-machine"])
    with pytest.raises(OptionError, match=r"^-M q35,foo: Expected '=' after parameter 'foo'$"):
        parse_args(["-M", "q35,foo"])
    with pytest.raises(OptionError, match="help is not available"):
        parse_args(["-machine", "help"])


LIBVIRT_LOG = """\
2026-11-20 10:01:02.123+0000: starting up libvirt version: 9.0.0, qemu version: 10.0.2
LC_ALL=C \\
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin \\
HOME=/var/lib/libvirt/qemu/domain-1-win11 \\
/usr/bin/qemu-system-x86_64 \\
-name guest=win11,debug-threads=on \\
-S \\
-machine pc-q35-10.0,usb=off,vmport=off,dump-guest-core=off \\
-accel kvm,kernel-irqchip=split \\
-cpu host,migratable=on,hv-time=on \\
-global ICH9-LPC.disable_s3=1 \\
-msg timestamp=on
"""


def test_split_command_line_from_a_libvirt_log() -> None:
    binary, args = split_command_line(LIBVIRT_LOG)
    assert binary == "/usr/bin/qemu-system-x86_64"
    assert args[:3] == ["-name", "guest=win11,debug-threads=on", "-S"]
    opts = parse_args(args, binary)
    assert opts.machine_opt("type") == "pc-q35-10.0"
    assert opts.accels[0].props == (("kernel-irqchip", "split"),)


def test_split_command_line_rejects_unbalanced_quotes() -> None:
    with pytest.raises(UsageError, match="cannot split"):
        split_command_line("qemu-system-x86_64 -name 'oops")


def test_repeated_machine_options_merge_like_qemus_keyval() -> None:
    """The same spelling again replaces; two spellings of one key conflict (keyval_dashify)."""
    opts = parse_args(["-machine", "pc-q35-10.0,kernel_irqchip=split", "-machine",
                       "kernel_irqchip=on"])
    assert opts.machine == (("type", "pc-q35-10.0"), ("kernel-irqchip", "on"))
    for args in (["-machine", "q35,kernel_irqchip=split", "-machine", "kernel-irqchip=on"],
                 ["-machine", "q35,kernel-irqchip=split,kernel_irqchip=on"]):
        with pytest.raises(UsageError) as err:
            parse_args(args)
        assert str(err.value) == "Conflict between 'kernel_irqchip' and 'kernel-irqchip'"
