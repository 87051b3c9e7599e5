"""QEMU's command-line grammars: keyval, QemuOpts, -global, -cpu, pasted lines."""

from __future__ import annotations

import pytest

from machines.errors import OptionError, UsageError
from machines.options import (
    check_id,
    keyval_parse,
    opts_id,
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


# -- pasted command lines (shlex, POSIX rules, no comments) -----------------------------------

@pytest.mark.parametrize(("text", "binary", "args"), [
    ("/usr/bin/qemu-system-x86_64 -name 'a b' -loadvm #snap",
     "/usr/bin/qemu-system-x86_64", ["-name", "a b", "-loadvm", "#snap"]),
    ("LC_ALL=C lang=en_US -machine q35 \\\n-accel kvm", None,
     ["-machine", "q35", "-accel", "kvm"]),
    ("A=1 B=2 C=3 -S", None, ["-S"]),
    ("_X=1 -S a=b", None, ["-S", "a=b"]),  # only leading assignments are dropped
    ("-S", None, ["-S"]),
    ("1A=2 -S", None, ["1A=2", "-S"]),  # not a shell variable name
])
def test_split_command_line(text: str, binary: str | None, args: list[str]) -> None:
    assert split_command_line(text) == (binary, args)


@pytest.mark.parametrize(("text", "message"), [
    ("", "the command line is empty: give the QEMU command line to judge"),
    ("  \\\n ", "the command line is empty: give the QEMU command line to judge"),
    ("A=1 B=2", "the command line has only environment assignments, no QEMU arguments"),
])
def test_split_command_line_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        split_command_line(text)
    assert str(err.value) == message


@pytest.mark.parametrize("binary", ["/usr/bin/qemu-system-aarch64", "qemu-system-arm",
                                    "/opt/q/bin/qemu-system-i386x"])
def test_only_x86_programs_are_modelled(binary: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_args(["-S"], binary)
    program = binary.rsplit("/", 1)[-1]
    assert str(err.value) == (f"{program}: only x86 is modelled (qemu-system-x86_64, "
                              "qemu-system-i386)")


@pytest.mark.parametrize("binary", [None, "/usr/bin/qemu-system-x86_64", "qemu-system-i386",
                                    "/usr/libexec/qemu-kvm", "/usr/bin/kvm", "/x/y"])
def test_x86_and_unknown_programs_are_read(binary: str | None) -> None:
    assert parse_args(["-S"], binary).binary == binary


def test_each_option_keeps_its_text() -> None:
    opts = parse_args(["-cpu", "host,+x2apic", "-global", "ioapic.version=0x11",
                       "-global", "driver=ioapic,property=version,value=0x20",
                       "-device", "e1000,id=n0", "-accel", "tcg", "-M", "q35"])
    assert opts.cpu is not None and opts.cpu.text == "host,+x2apic"
    assert [g.text for g in opts.globals] == ["ioapic.version=0x11",
                                              "driver=ioapic,property=version,value=0x20"]
    assert [(g.driver, g.property, g.value) for g in opts.globals] == [
        ("ioapic", "version", "0x11"), ("ioapic", "version", "0x20")]
    assert opts.devices[0].text == "-device e1000,id=n0"
    assert opts.devices[0].props == (("id", "n0"),)
    assert opts.accels[0].text == "-accel tcg"
    assert (opts.machine_text, opts.machine_type_text) == ("-M q35", "-M q35")
    assert parse_args(["-M", "usb=on"]).machine_type_text == ""  # no type named
    # several -machine options are merged; messages quote them all, in order
    opts = parse_args(["-M", "usb=on", "-machine", "q35", "-M", "vmport=off"])
    assert opts.machine_text == "-M usb=on -machine q35 -M vmport=off"
    assert opts.machine_type_text == "-machine q35"


def test_device_json_form() -> None:
    opts = parse_args(["-device", '{"driver": "virtio-net-pci", "mq": true, "id": "n,0", '
                       '"vectors": 4}'])
    device = opts.devices[0]
    assert device.driver == "virtio-net-pci"
    # a JSON string is the value itself; anything else keeps its JSON spelling
    assert device.props == (("mq", "true"), ("id", "n,0"), ("vectors", "4"))
    assert device.text.startswith("-device {")


@pytest.mark.parametrize(("arg", "message"), [
    ('{"driver": "e1000"', "JSON parse error, "),
    ('{"driver": "e1000", "driver": "e1000"}', "JSON parse error, duplicate key"),
    ('{"id": "a"}', "Parameter 'driver' is missing"),
    ('{"driver": null}', "Parameter 'driver' is missing"),
    ("id=a", "Parameter 'driver' is missing"),
    ("e1000,id=1", "Parameter 'id' expects an identifier"),
])
def test_device_errors(arg: str, message: str) -> None:
    with pytest.raises(OptionError) as err:
        parse_args(["-device", arg])
    assert str(err.value).startswith(f"-device {arg}: {message}")


HELP_TEXT = "help is not available here; see 'machines list' and 'machines show'"


@pytest.mark.parametrize("args", [
    ["-device", "help"], ["-device", "?"], ["-device", "e1000,help"], ["-device", "e1000,?=1"],
    ["-device", "driver=help"], ["-accel", "help"], ["-accel", "?"], ["-accel", "x=1"],
    ["-accel", "kvm,accel=help"], ["-machine", "help"], ["-machine", "q35,?"], ["-cpu", "help"],
    ["-cpu", "?"],
])
def test_help_is_refused_with_a_pointer(args: list[str]) -> None:
    with pytest.raises(OptionError) as err:
        parse_args(args)
    assert str(err.value) == f"{args[0]} {args[1]}: {HELP_TEXT}"


def test_help_in_a_long_form_global() -> None:
    with pytest.raises(OptionError) as err:
        parse_args(["-global", "driver=a,help"])
    assert str(err.value) == ("-global driver=a,help: help is not available here; "
                              "see 'machines show'")
    # a flag named help is help only in a group that describes its options (not -accel)
    assert parse_args(["-accel", "tcg,help"]).accels[0].props == (("help", "on"),)
    # 'nohelp' is the option 'help' set to off: not help, and not a -global option
    # (QEMU 10.0.2: "Invalid parameter 'help'", after its short-form warning)
    with pytest.raises(OptionError) as err:
        parse_args(["-global", "driver=a,nohelp,property=p,value=v"])
    assert str(err.value).endswith(": Invalid parameter 'help'")


def test_qemuopts_ids() -> None:
    """opts_parse_id and qemu_opts_create (checked on QEMU 10.0.2 in test_rules.py)."""
    assert opts_id("e1000,id=a,id=b") == "a"
    assert opts_id("e1000,,id=x") == "x"  # read with no implied key: 'e1000' is a flag
    assert opts_id("e1000,romfile=a,,id=x") is None  # inside a value
    assert opts_id("e1000,id") == "on"
    assert opts_id("e1000,noid") == "off"
    assert opts_id("id=a,,b") == "a,b"
    assert opts_id("e1000") is None
    ids: dict[str, set[str]] = {}
    for good in ("a", "Z", "a.b-c_d9"):
        check_id(good, ids, "device")
    check_id(None, ids, "device")
    check_id("a", ids, "accel")  # another group
    assert ids == {"device": {"a", "Z", "a.b-c_d9"}, "accel": {"a"}}
    for bad in ("", "1a", "_a", "-a", "a,b", "a b", "é", "a\n", "aé"):
        with pytest.raises(ValueError) as err:
            check_id(bad, ids, "device")
        assert str(err.value) == "Parameter 'id' expects an identifier"
    with pytest.raises(ValueError) as err:
        check_id("a", ids, "accel")
    assert str(err.value) == "Duplicate ID 'a' for accel"


def test_warnings_of_every_option_are_kept() -> None:
    opts = parse_args(["-accel", "tcg,a", "-device", "e1000,b", "-accel", "kvm,noc",
                       "-device", "e1000,d"])
    assert opts.warnings == (
        "-accel tcg,a: short-form boolean option 'a' deprecated",
        "-device e1000,b: short-form boolean option 'b' deprecated",
        "-accel kvm,noc: short-form boolean option 'noc' deprecated",
        "-device e1000,d: short-form boolean option 'd' deprecated")


def test_opts_parse_leaves_id_out_and_checks_a_description() -> None:
    assert opts_parse("e1000,id=a,x=1", "driver") == ([("driver", "e1000"), ("x", "1")], [])
    assert opts_parse("driver=a,property=b,value=c,id=g", None, ("driver", "property",
                                                                 "value"))[0] == [
        ("driver", "a"), ("property", "b"), ("value", "c")]
    with pytest.raises(ValueError) as err:
        opts_parse("driver=a,bogus=1,help", None, ("driver",))
    assert str(err.value) == "Invalid parameter 'bogus'"  # before the help that follows
    # no description: a flag named help is an option; no warning for it (is_help)
    assert opts_parse("tcg,help,?", "accel") == ([("accel", "tcg"), ("help", "on"),
                                                  ("?", "on")], [])
    assert opts_parse(",x", "accel") == ([("accel", ""), ("x", "on")],
                                         ["short-form boolean option 'x' deprecated"])
    assert opts_parse("a,,", None) == ([("a", "on"), ("", "on")],
                                       ["short-form boolean option 'a' deprecated",
                                        "short-form boolean option '' deprecated"])


def test_dashify_renames_top_level_keys_only() -> None:
    """keyval_dashify (system/vl.c) works on the top-level dictionary: a member keeps its name."""
    opts = parse_args(["-machine", "q35,a_b.c_d=1,__com.x_y.z_w=2,e_f=3"])
    assert opts.machine == (("type", "q35"), ("a-b.c_d", "1"), ("--com.x-y.z_w", "2"),
                            ("e-f", "3"))
    for args, message in [
        (["-machine", "q35,a_b.x=1,a-b.y=2"], "Conflict between 'a_b' and 'a-b'"),
        (["-machine", "q35,a-b.x=1", "-machine", "a_b=2"], "Conflict between 'a_b' and 'a-b'"),
    ]:
        with pytest.raises(UsageError) as err:
            parse_args(args)
        assert str(err.value) == message
    assert parse_args(["-machine", "q35,a.b_c=1,a.b-c=2"]).machine[1:] == (
        ("a.b_c", "1"), ("a.b-c", "2"))


def test_global_long_form_alone() -> None:
    """parse_global with its defaults: the option is -global, and an id is checked alone."""
    with pytest.raises(OptionError) as err:
        parse_global("driver=a")
    assert str(err.value) == ("-global driver=a: options 'driver', 'property', and 'value' "
                              "are required")
    g = parse_global("driver=a,property=b,value=c,id=x")
    assert (g.driver, g.property, g.value) == ("a", "b", "c")
    assert parse_args(["-device", "e1000"]).devices[0].props == ()  # no id, no id prop


def test_bare_words_are_disk_images() -> None:
    """system/vl.c: a word not starting with '-' is an image; '-' and '--' are options
    named '' (QEMU 10.0.2: "-: invalid option", checked in test_rules.py; "--: invalid
    option" too, which the CLI cannot pass on: argparse takes '--' for itself)."""
    opts = parse_args(["disk.img", "-M", "q35", "other.img"])
    assert opts.machine_opt("type") == "q35"
    for token in ("-", "--"):
        with pytest.raises(UsageError) as err:
            parse_args(["disk.img", token])
        assert str(err.value) == f"{token}: invalid option"
