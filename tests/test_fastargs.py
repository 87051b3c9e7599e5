"""The argparse-free reading of resolve/preflight options equals argparse's (issue 18)."""

from __future__ import annotations

import pytest

from machines.cli import _parser, _split_qemu_args
from machines.fastargs import OPTIONS, parse_ours


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_tables_name_every_option_of_the_parser(command: str) -> None:
    parser = _parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    options = {o for a in sub._actions for o in a.option_strings} - {"-h", "--help"}
    assert options == set(OPTIONS[command])
    dests = {a.dest for a in sub._actions if a.option_strings} - {"help"}
    assert dests == {d for d, _ in OPTIONS[command].values()}


CORPUS = [
    ("resolve", ["-M", "pc-q35-10.0", "--device", "ioapic"]),
    ("resolve", ["--device", "ioapic", "--device=virtio-net-pci", "--json", "-M", "q35"]),
    ("resolve", ["--release", "10.2", "--build", "7.2", "--seoib", "rfc-v2", "-M", "q35"]),
    ("resolve", ["--cmdline", "qemu-system-x86_64 -M q35", "--kernel=linux-7.0"]),
    ("resolve", ["--stream-state", "QUIRKED", "-M", "q35", "-incoming", "defer"]),
    ("resolve", []),
    ("preflight", ["--dest", "linux-6.12/10.2", "--dest=linux-7.0/10.2", "-M", "q35"]),
    ("preflight", ["--libvirt", "vm.xml", "--dest", "h.json", "--json", "--release", "10.2"]),
    ("preflight", ["--connect", "qemu:///system", "--domain", "vm1", "--dest", "x/10.2"]),
    ("preflight", ["--fleet", "vms.jsonl", "--hosts", "hosts", "-o", "out.jsonl"]),
    ("preflight", ["--qmp", "/tmp/s", "--source-state", "RESPECTED", "--dest", "a/10.2",
                   "--dest-args", "-M q35", "--source-host", "linux-7.0/10.2"]),
    ("preflight", ["--state", "vm.state", "--seoib", "gated", "--output=x", "--dest", "a"]),
]


@pytest.mark.parametrize(("command", "argv"), CORPUS)
def test_same_namespace_as_argparse(command: str, argv: list[str]) -> None:
    ours, _ = _split_qemu_args(command, argv)
    fast = parse_ours(command, ours)
    assert fast is not None
    slow = vars(_parser(command).parse_args([command, *ours]))
    slow.pop("func")
    assert vars(fast) == slow


@pytest.mark.parametrize(("command", "ours"), [
    ("resolve", ["--help"]), ("resolve", ["--dev", "ioapic"]), ("resolve", ["--device"]),
    ("resolve", ["--device", "--json"]), ("resolve", ["--json=1"]),
    ("preflight", ["-o=x"]), ("preflight", ["-h"]), ("seoib-designs", ["--fleet", "x"]),
])
def test_anything_else_goes_to_argparse(command: str, ours: list[str]) -> None:
    assert parse_ours(command, ours) is None
