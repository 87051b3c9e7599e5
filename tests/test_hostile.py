"""Hostile input: every reader gives a result or a typed error, never a crash.

Property-based (hypothesis).  The default run tries a few hundred inputs per
reader; ``tox -e fuzz`` runs the same tests with the ``fuzz`` profile
(100,000 inputs each, see conftest.py) and the counts go to the README.

"A typed error" is a :class:`~machines.errors.MachinesError`: the CLI prints
it as one line and exits with its code (2 for bad input, 3 for a QEMU that
misbehaves).  Anything else escaping is a bug these tests exist to find.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import streamenc
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from kvmglue.profile import KernelProfile, shipped
from machines import libvirt
from machines.cli import main
from machines.compat.importer import assemble, describe, parse_machine_help
from machines.errors import DataError, EnvironmentUnavailable, MachinesError, UsageError
from machines.hostprofile import from_json as host_from_json
from machines.hostprofile import host_profile_json
from machines.options import parse_args, parse_cpu, parse_global, split_command_line
from machines.qmp import QemuSession, QmpCommandError
from machines.savevm import read_saved_state
from machines.schema import load_json
from machines.values import format_value, parse_value

QUIET = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                        HealthCheck.function_scoped_fixture])

# -- building blocks ---------------------------------------------------------

# Text that looks like what operators paste: QEMU's separators and escapes,
# numbers in every base, and the odd control or non-ASCII character.
ATOMS = st.sampled_from([
    ",", ",,", "=", "=on", "=off", ".", "-", "+", "0x", "0X11", "0x20", "021", "08", "-1",
    "18446744073709551616", "9223372036854775808", " ", "\t", "\n", "\x00", "é", "\U0001f4a5",
    "kvm", "tcg", "split", "on", "off", "auto", "q35", "pc", "pc-q35-10.0", "pc-i440fx-2.4",
    "ioapic", "version", "kernel-irqchip", "seoib-policy", "respected", "accel", "type",
    "driver", "property", "value", "help", "?", "'", '"', "\\", "K", "M", "G", "T", "E",
])
TEXT = st.one_of(st.text(max_size=40), st.lists(ATOMS, max_size=12).map("".join))
OPTION_NAMES = st.sampled_from([
    "-M", "-machine", "-accel", "-global", "-cpu", "-enable-kvm", "-incoming", "-loadvm",
    "-device", "-m", "-smp", "-S", "-nodefaults", "--machine", "-machine", "-no-such-option",
    "-chardev", "-mon", "-qmp",
])
ARGV = st.lists(st.one_of(OPTION_NAMES, TEXT), max_size=10)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                               max_size=5),
    max_leaves=25,
)


def typed_error_or_result(call: Callable[[], Any], allowed: type[BaseException] = UsageError
                          ) -> Any:
    try:
        return call()
    except allowed as err:
        text = str(err)
        assert text and "\n" not in text, repr(text)  # the CLI shows it as one line
        return err


# -- values and options -------------------------------------------------------

QAPI_TYPES = st.sampled_from(["bool", "size", "uint8", "uint16", "uint32", "uint64", "int8",
                              "int16", "int32", "int64", "int", "str", "OnOffAuto",
                              "OnOffSplit", "SeoibPolicy", "on|off|split", "link<ioapic>"])


@QUIET
@given(QAPI_TYPES, TEXT)
def test_value_parser(qapi_type: str, text: str) -> None:
    value = typed_error_or_result(lambda: parse_value(qapi_type, text, "prop"))
    if not isinstance(value, UsageError):
        # What QEMU would print reads back as the same value.
        assert parse_value(qapi_type, format_value(value), "prop") == value


@QUIET
@given(st.sampled_from(["-machine", "-M", "-accel", "-global", "-cpu", "-device", "-incoming"]),
       TEXT)
def test_keyval_and_qemuopts_option_arguments(option: str, text: str) -> None:
    """Each option's argument through its own parser (keyval or QemuOpts)."""
    typed_error_or_result(lambda: parse_args([option, text]))
    typed_error_or_result(lambda: parse_global(text))
    typed_error_or_result(lambda: parse_cpu(text))


@QUIET
@given(ARGV)
def test_option_parser(argv: list[str]) -> None:
    typed_error_or_result(lambda: parse_args(argv))


@QUIET
@given(st.one_of(TEXT, ARGV.map(" ".join), st.text(max_size=200)))
def test_command_line_splitter(text: str) -> None:
    result = typed_error_or_result(lambda: split_command_line(text))
    if not isinstance(result, UsageError):
        binary, args = result
        typed_error_or_result(lambda: parse_args(args, binary))


def _cli(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as done:  # argparse's --help, as the process would exit
            code = done.code if isinstance(done.code, int) else 0
    return code, err.getvalue()


@QUIET
@given(ARGV)
def test_resolve_command_on_hostile_arguments(argv: list[str]) -> None:
    """Through the CLI: exit 0, 1 (QEMU would refuse) or 2, and one stderr line."""
    code, err = _cli(["resolve", "--kernel", "linux-7.0", *argv])
    assert code in (0, 1, 2), (code, err)
    if code:
        assert err.count("\n") == 1 and err.startswith("machines: "), err


# -- profiles and data files --------------------------------------------------

KERNEL_DOC = shipped("linux-7.0").to_json()


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _mutated(doc: dict[str, Any]) -> st.SearchStrategy[tuple[dict[str, Any], bool]]:
    """(a copy of ``doc`` with one change, whether the change only adds a field)."""
    paths = [p for p in _paths(doc) if p]

    @st.composite
    def build(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
        new = copy.deepcopy(doc)
        path = draw(st.sampled_from(paths))
        parent = new
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" and isinstance(parent, dict):
            name = draw(st.text(min_size=1, max_size=10))
            assume(name not in parent)
            parent[name] = draw(JSON)
            return new, True
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
        return new, False

    return build()


@QUIET
@given(_mutated(KERNEL_DOC))
def test_kernel_profile_loading(case: tuple[dict[str, Any], bool]) -> None:
    doc, only_added = case
    result = typed_error_or_result(lambda: KernelProfile.from_json(doc, "p.json"), DataError)
    if only_added:  # unknown extra fields are tolerated
        assert isinstance(result, KernelProfile), result
    elif isinstance(result, DataError):
        assert str(result).startswith("p.json: "), result  # names where


HOST_DOC = host_profile_json("h1", shipped("linux-6.12"), {"release": "10.2"})


@QUIET
@given(_mutated(HOST_DOC))
def test_host_profile_loading(case: tuple[dict[str, Any], bool]) -> None:
    doc, only_added = case
    result = typed_error_or_result(lambda: host_from_json(doc, "h.json"), DataError)
    if only_added:
        assert not isinstance(result, DataError), result
    if isinstance(result, DataError):  # a changed profile is refused naming the file
        assert str(result).startswith("h.json: "), result
        return
    # or it loads as what it says: saved again and reloaded, the same host
    again = host_from_json(host_profile_json(result.name, result.kernel, result.qemu), "again")
    assert (again.name, again.build.name, again.kernel.to_json()) == \
        (result.name, result.build.name, result.kernel.to_json())
    assert result.name == doc["name"] and result.kernel.to_json()["kernel_release"] == \
        doc["kernel"]["kernel_release"]


@QUIET
@given(JSON)
def test_profile_loading_from_any_json(doc: Any) -> None:
    typed_error_or_result(lambda: KernelProfile.from_json(doc, "p.json"), DataError)
    typed_error_or_result(lambda: host_from_json(doc, "h.json"), DataError)


@QUIET
@given(st.binary(max_size=300))
def test_any_bytes_as_a_profile_file(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("p")) / "profile.json"
    path.write_bytes(data)
    doc = typed_error_or_result(lambda: load_json(path, "kernel profile"), DataError)
    if not isinstance(doc, DataError):
        typed_error_or_result(lambda: KernelProfile.from_json(doc, str(path)), DataError)


def test_newer_schema_is_refused_by_name() -> None:
    doc = dict(KERNEL_DOC, schema="machines/kernel-profile/v2")
    err = typed_error_or_result(lambda: KernelProfile.from_json(doc, "p.json"), DataError)
    assert isinstance(err, DataError)
    assert "newer than this tool understands" in str(err)


def test_wrong_type_is_rejected_naming_the_path() -> None:
    doc = copy.deepcopy(KERNEL_DOC)
    doc["x2apic_api"]["vm"] = "eleven"
    err = typed_error_or_result(lambda: KernelProfile.from_json(doc, "p.json"), DataError)
    assert isinstance(err, DataError) and "x2apic_api.vm" in str(err)


# -- libvirt domain XML --------------------------------------------------------

NAME = st.sampled_from(["domain", "os", "type", "features", "ioapic", "cpu", "feature",
                        "devices", "emulator", "qemu:commandline", "qemu:arg", "model", "x"])
ATTR = st.sampled_from(["type", "machine", "driver", "mode", "name", "policy", "value"])


@st.composite
def _element(draw: st.DrawFn, depth: int = 0) -> str:
    name = draw(NAME)
    attrs = "".join(f' {a}="{_escape(draw(TEXT))}"' for a in draw(st.lists(ATTR, max_size=3,
                                                                           unique=True)))
    kids = "" if depth > 3 else "".join(draw(st.lists(_element(depth + 1), max_size=3)))
    text = _escape(draw(st.one_of(st.just(""), TEXT)))
    return f"<{name}{attrs}>{text}{kids}</{name}>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


DOMAIN = _element().map(
    lambda body: '<domain type="kvm" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">'
    + body + "</domain>")
HOSTILE_PROLOGUES = st.sampled_from([
    "", '<?xml version="1.0"?>',
    '<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>',
    '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE d SYSTEM "http://example.invalid/d.dtd">',
])


@QUIET
@given(HOSTILE_PROLOGUES, DOMAIN)
def test_libvirt_reader_on_generated_domains(prologue: str, body: str) -> None:
    result = typed_error_or_result(lambda: libvirt.parse_domain(prologue + body), DataError)
    if "<!DOCTYPE" in prologue:
        assert isinstance(result, DataError) and "refused" in str(result)
    elif not isinstance(result, DataError):
        _, args = result
        typed_error_or_result(lambda: parse_args(args))


@QUIET
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)))
def test_libvirt_reader_on_any_bytes(data: bytes | str) -> None:
    typed_error_or_result(lambda: libvirt.parse_domain(data), DataError)


# -- QMP replies (what the importer reads from a QEMU) --------------------------

COMMANDS = ("query-version", "query-machines", "qom-list-types", "device-list-properties",
            "qom-list-properties")


def _plausible(command: str) -> st.SearchStrategy[Any]:
    """Replies shaped like QEMU's, with hostile values inside."""
    name = st.one_of(st.sampled_from(["pc-q35-10.0", "device", "ioapic", "object", "machine",
                                      "accel", "kvm-accel", "x86_64-cpu"]), st.text(max_size=8))
    if command == "query-version":
        return st.fixed_dictionaries({"qemu": st.fixed_dictionaries(
            {"major": JSON, "minor": JSON, "micro": JSON}), "package": JSON})
    if command == "query-machines":
        prop = st.fixed_dictionaries({"qom-type": name, "property": name, "value": JSON})
        return st.lists(st.fixed_dictionaries({"name": name}, optional={
            "compat-props": st.one_of(JSON, st.lists(prop, max_size=3)),
            "default-cpu-type": JSON, "alias": JSON}), max_size=4)
    if command == "qom-list-types":
        return st.lists(st.fixed_dictionaries({"name": name}, optional={
            "parent": st.one_of(name, JSON), "abstract": JSON}), max_size=8)
    return st.lists(st.fixed_dictionaries({"name": name}, optional={
        "type": JSON, "default-value": JSON, "description": JSON}), max_size=4)


class _Replies:
    """Stands where a QemuProcess would: answers each command from a table."""

    def __init__(self, replies: dict[str, Any]) -> None:
        self.replies = replies

    async def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        reply = self.replies.get(command)
        if reply is _FAILS:  # a fresh error each time, as from a real peer
            raise QmpCommandError(command, "nope", "GenericError")
        return reply


_FAILS = object()  # stands for a QMP error reply


REPLIES = st.fixed_dictionaries({c: st.one_of(JSON, _plausible(c), _plausible(c),
                                              st.just(_FAILS))
                                 for c in COMMANDS})


@QUIET
@given(REPLIES, st.text(max_size=300))
def test_importer_on_hostile_qmp_replies(replies: dict[str, Any], help_text: str) -> None:
    session = QemuSession(_Replies(replies))  # type: ignore[arg-type]
    raw = typed_error_or_result(lambda: asyncio.run(describe(session)),
                                (EnvironmentUnavailable, QmpCommandError))
    listing = typed_error_or_result(lambda: parse_machine_help(help_text))
    if isinstance(raw, MachinesError) or isinstance(listing, MachinesError):
        return
    doc = typed_error_or_result(lambda: assemble("qemu", listing, raw),
                                (EnvironmentUnavailable, DataError))
    if not isinstance(doc, MachinesError):
        json.dumps(doc)  # what would be written is JSON


# -- saved state / migration streams ---------------------------------------------

STREAMS = [streamenc.encode(seoib=s) for s in (None, 0, 1, 2)] + [
    streamenc.encode(machine=None, footers=False), streamenc.encode(description=False)]


@st.composite
def _damaged_stream(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(STREAMS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "delete", "json"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        else:  # rewrite a number inside the JSON description
            text = bytes(data)
            where = text.rfind(b'"size": ')
            end = text.find(b"}", where)
            if where > 0 and end > 0:
                number = str(draw(st.integers(-(2**40), 2**64))).encode()
                data[where + 8:end] = number
    return bytes(data)


@QUIET
@given(st.one_of(_damaged_stream(), st.binary(max_size=200),
                 st.binary(max_size=64).map(lambda b: b"QEVM\0\0\0\3" + b)))
def test_saved_state_reader(tmp_path_factory: Any, data: bytes) -> None:
    path = Path(tmp_path_factory.mktemp("s")) / "state.mig"
    path.write_bytes(data)
    result = typed_error_or_result(lambda: read_saved_state(str(path)), DataError)
    if isinstance(result, DataError):
        assert str(path) in str(result)
    else:
        assert all(0 <= s.offset < len(data) for s in result.sections)


# -- fleet VM lists ------------------------------------------------------------------

VM_LINE = st.fixed_dictionaries({"id": st.one_of(st.text(max_size=6), JSON),
                                 "machine": st.one_of(st.sampled_from(["pc-q35-10.2", "q35",
                                                                       "pc-i440fx-2.4"]), JSON)},
                                optional={k: st.one_of(TEXT, JSON) for k in
                                          ("qemu", "irqchip", "ioapic", "policy", "state",
                                           "source_host")}).map(json.dumps)


@QUIET
@given(st.lists(st.one_of(VM_LINE, TEXT, JSON.map(json.dumps)), max_size=6),
       st.binary(max_size=8))
def test_fleet_reader(tmp_path_factory: Any, lines: list[str], tail: bytes) -> None:
    from machines.fleet import read_vms

    path = Path(tmp_path_factory.mktemp("f")) / "vms.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n" + tail)
    result = typed_error_or_result(lambda: list(read_vms(str(path))), DataError)
    if isinstance(result, DataError):
        assert str(path) in str(result)


@QUIET
@given(st.lists(st.one_of(VM_LINE, TEXT, JSON.map(json.dumps)), max_size=6),
       st.binary(max_size=8))
def test_fleet_run_reader(tmp_path_factory: Any, lines: list[str], tail: bytes) -> None:
    """The fast reader of preflight --fleet (a memo of the fields as written) refuses
    what the field checks refuse: 1 and true, 17 and 17.0 are equal keys, not equal VMs."""
    from machines.fleet import FleetRun, Vm, _vm_from

    directory = Path(tmp_path_factory.mktemp("f"))
    path = directory / "vms.jsonl"
    seen = ['{"id": "seen", "machine": "pc-q35-10.2", "ioapic": 17, "qemu": "10.2"}']
    path.write_bytes("\n".join(seen + lines).encode() + b"\n" + tail)
    run = FleetRun([])
    result = typed_error_or_result(lambda: run.read(str(path)), DataError)
    if isinstance(result, DataError):
        assert str(path) in str(result)
        return
    checked: list[Vm] = []
    for number, line in enumerate(path.read_bytes().decode().splitlines(), 1):
        if line.strip():
            checked.append(_vm_from(json.loads(line), number, str(path)))  # no error either
    assert run.ids == [vm.id for vm in checked]


def test_a_vm_split_over_two_lines_is_refused(tmp_path: Path) -> None:
    from machines.fleet import read_vms

    path = tmp_path / "vms.jsonl"
    path.write_text('{"id": "a", "machine": "pc-q35-10.2", "x": [1\n'
                    '2]}, {"id": "b", "machine": "pc-q35-10.2"}\n')
    err = typed_error_or_result(lambda: list(read_vms(str(path))), DataError)
    assert isinstance(err, DataError) and f"{path}:1: not JSON" in str(err)
