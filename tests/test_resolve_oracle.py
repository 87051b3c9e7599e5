"""What QEMU 10.0.2 itself said, recorded for tests/test_resolve.py and checked live here.

The resolver's tests must run where no QEMU is (the mutation runs deselect the ``qemu``
marker), so what they compare with is recorded in ``tests/fixtures/qemu-10.0.2-resolve.json``:
every property of a few ``-device``s (qom-list, then qom-get of each), what PCI ``addr``
strings become (or that QEMU refuses them), and QEMU's own words for configurations it
refuses.  The test here reads all of it again from the host's QEMU 10.0.2 and requires the
file to equal it, so the recording cannot drift from the binary.  To re-record after a
deliberate change: ``python tests/test_resolve_oracle.py`` (it prints the new file).
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "qemu-10.0.2-resolve.json"
QEMU_VERSION = "10.0.2"
PAUSED = ("-S", "-nodefaults", "-display", "none", "-monitor", "none", "-serial", "none",
          "-qmp", "stdio")

# (QEMU arguments, the -device type, its QOM path)
DEVICES: list[tuple[list[str], str, str]] = [
    (["-M", "pc-i440fx-10.0"], "PIIX3", "/machine/i440fx/pci.0/child[1]"),
    (["-M", "pc-i440fx-2.6", "-device",
      "virtio-net-pci,id=n0,addr=+5,host_mtu=9000,mrg_rxbuf=off"],
     "virtio-net-pci", "/machine/peripheral/n0"),
    (["-M", "pc-q35-4.0", "-device",
      "e1000,id=e0,addr= 0x6.0,init-vet=off,extra_mac_registers=off,mac=52:54:00:12:34:56"],
     "e1000", "/machine/peripheral/e0"),
    # str properties without a default (NULL) read back as ""
    (["-M", "pc-i440fx-10.0", "-device", "virtio-serial-pci", "-device", "virtserialport,id=vp"],
     "virtserialport", "/machine/peripheral/vp"),
]

# PCI addr strings: QEMU's set_pci_devfn reads them with sscanf("%x.%x%n").
ADDRS = ["5", "05.3", "1f.7", "0X1F.07", "0x5", "+5", " 5", "5. 1", "\t5.\n7", "0x", "0x.5",
         "-0", "5.0x", "+0x5.+1", "5.-0", "100000005", "-ffffffffffffffe1",
         "5.", "5 ", "5 .1", "-1", "20", "5.8", "0x0x5", "x5", "", "+", "ffffffffffffffffff05",
         "-20", "5..1",
         # strtoul's edges: -ULONG_MAX is 1, 2^64 and beyond are ULONG_MAX (then 32 bits)
         "-ffffffffffffffff", "-fffffffffffffffe", "ffffffffffffffff", "10000000000000000",
         "-10000000000000000", "10000000000000005", "0.-fffffffffffffff9"]

# Configurations QEMU refuses, with the -device type to resolve (None: none).
REFUSED: list[tuple[list[str], str | None]] = [
    (["-device", "e1000,init_vet=off"], "e1000"),
    (["-device", "virtio-net-pci,host-mtu=9000"], "virtio-net-pci"),
    (["-device", "e1000,bogus=1"], "e1000"),
    (["-device", "e1000,addr=5."], "e1000"),
    (["-device", "e1000,addr=20"], "e1000"),
    (["-device", "e1000,id=e0,addr=0x1f.8"], "e1000"),
    (["-device", "e1000,id=e0,romsize=1,rombar=2,init-vet=maybe"], "e1000"),
    (["-accel", "tcg,seoib-policy=auto"], None),
    (["-accel", "kvm,kernel-irqchip=maybe"], None),
    (["-machine", "q35,kernel-irqchip=bogus", "-accel", "kvm"], None),
    (["-machine", "q35,kvm-shadow-mem=lots", "-accel", "kvm"], None),
    (["-machine", "q35,accel=kvm,kernel-irqchip=bogus"], None),
    (["-machine", "q35,kernel-irqchip=bogus", "-enable-kvm"], None),
    (["-accel", "kvm,kernel-irqchip=maybe", "-accel", "tcg"], None),
    (["-device", "e1000,id=e0,type=x"], "e1000"),
    (["-global", "e1000.type=x"], None),
    # the keyval visitor's words for numbers and sizes
    (["-device", "e1000,romsize=x"], "e1000"),
    (["-device", "e1000,bootindex=99999999999999999999"], "e1000"),
    (["-device", "e1000,romsize=-1"], "e1000"),
    (["-device", "e1000,rombar=99999999999"], "e1000"),
    (["-device", "e1000,x-max-bounce-buffer-size=x"], "e1000"),
    (["-device", "e1000,x-max-bounce-buffer-size=99999999999999999999999"], "e1000"),
    (["-accel", "tcg,type=tcg-accel"], None),
]


# A machine type whose compat list names some driver.property more than once (the later
# entry wins in QEMU), and devices on it whose folded properties qom-get reads back.
FOLD_MACHINE = "pc-i440fx-2.4"
FOLD_ARGS = ["-M", FOLD_MACHINE, "-cpu", "Opteron_G3", "-device", "pci-bridge,chassis_nr=1,id=br",
             "-device", "virtio-balloon-pci,id=vb"]
FOLD_READS = [("/machine/unattached/device[0]", "Opteron_G3-x86_64-cpu", "rdtscp"),
              ("/machine/peripheral/br", "pci-bridge", "shpc"),
              ("/machine/peripheral/vb/virtio-backend", "virtio-balloon-device",
               "qemu-4-0-config-size")]


# -cpu options whose +feat/-feat QEMU applies over everything else (underscores allowed).
CPUS = [("qemu64,+lahf_lm", "lahf-lm"), ("qemu64,-lahf_lm,lahf-lm=on", "lahf-lm"),
        ("qemu64,+x2apic,-x2apic", "x2apic"), ("qemu64,x2apic=off,+x2apic", "x2apic")]


# Under KVM, a built-in CPU model's instance_init follows kernel-irqchip (kvm_default_props).
KVM_CPU = [("on", "x2apic"), ("on", "kvm-msi-ext-dest-id"), ("split", "x2apic"),
           ("split", "kvm-msi-ext-dest-id")]


# A NIC's default MAC follows the order of creation: the same e1000 first, then second.
MAC_ORDER = [["-device", "e1000,id=a"], ["-device", "virtio-net-pci,id=x", "-device", "e1000,id=a"]]


def _with_accel(args: list[str]) -> list[str]:
    """``args``, on TCG unless they choose an accelerator themselves."""
    given = any(a in ("-accel", "-enable-kvm") or "accel=" in a for a in args)
    return args if given else [*args, "-accel", "tcg"]


def _qmp(argv: list[str], args: list[str], commands: list[dict[str, Any]]
         ) -> tuple[list[dict[str, Any]], str]:
    """Start QEMU paused, run ``commands`` over QMP on stdio: (their replies, stderr).

    One command at a time, each answer read before the next is sent, and ``quit`` only
    after the last: QEMU drops monitor output still queued when it quits."""
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(
            [*argv, *_with_accel(args), *PAUSED], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=err, text=True) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        replies: list[dict[str, Any]] = []
        try:
            if not proc.stdout.readline():  # the greeting, or EOF: QEMU refused to start
                return [], _stderr(proc, err)
            for command in [{"execute": "qmp_capabilities"}, *commands]:
                try:
                    proc.stdin.write(json.dumps(command) + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:  # it greeted, then failed to build the machine
                    return replies[1:], _stderr(proc, err)
                while True:
                    line = proc.stdout.readline()
                    if not line:
                        return replies[1:], _stderr(proc, err)
                    reply = json.loads(line)
                    if "return" in reply or "error" in reply:
                        replies.append(reply)
                        break
            proc.stdin.write(json.dumps({"execute": "quit"}) + "\n")
        finally:
            with contextlib.suppress(BrokenPipeError):  # QEMU may be gone already
                proc.stdin.close()
        return replies[1:], _stderr(proc, err)


def _stderr(proc: subprocess.Popen[str], err: Any) -> str:
    proc.wait(timeout=120)
    err.seek(0)
    return str(err.read())


def _error_line(stderr: str) -> str:
    """QEMU's first line that is not a warning, without the program name."""
    for line in stderr.splitlines():
        text = line.split(": ", 1)[1] if line.startswith("qemu-system-x86_64: ") else line
        if text and not text.startswith("warning:"):
            return text
    return ""


def _device(argv: list[str], args: list[str], path: str) -> dict[str, Any]:
    listed, _ = _qmp(argv, args, [{"execute": "qom-list", "arguments": {"path": path}}])
    types = {p["name"]: p["type"] for p in listed[0]["return"]}
    readable = sorted(n for n, t in types.items() if not t.startswith(("link<", "child<")))
    values, _ = _qmp(argv, args, [{"execute": "qom-get",
                                   "arguments": {"path": path, "property": n}}
                                  for n in readable])
    got = dict(zip(readable, values, strict=True))
    return {n: {"type": types[n], **({"value": got[n]["return"]} if n in got else {})}
            for n in sorted(types)}


def _addr(argv: list[str], text: str) -> int | None:
    """The devfn QEMU makes of ``addr=text`` (or None when it refuses the text)."""
    args = ["-M", "pc-i440fx-10.0", "-device", f"e1000,addr={text}"]
    replies, stderr = _qmp(argv, args, [{"execute": "qom-get", "arguments": {
        "path": "/machine/peripheral-anon/device[0]", "property": "addr"}}])
    if replies:
        return int(replies[0]["return"])
    line = _error_line(stderr)
    # Parsed, but the slot is the host bridge's or PIIX3's:
    taken = re.search(r"PCI: slot (\d+) function (\d+) not available", line)
    if taken:
        return int(taken[1]) << 3 | int(taken[2])
    taken = re.search(r"can't be populated in function ([0-9a-f]+)\.([0-9a-f]+)$", line)
    if taken:
        return int(taken[1], 16) << 3 | int(taken[2], 16)
    assert "doesn't take value" in line, (text, line)
    return None


def _refusal(argv: list[str], args: list[str]) -> str:
    _, stderr = _qmp(argv, args, [])
    return _error_line(stderr)


def _fold(argv: list[str]) -> dict[str, Any]:
    """query-machines' compat list of FOLD_MACHINE, the QOM type of each property it names
    (None: this QEMU has no such class), and what qom-get reads on FOLD_ARGS' devices."""
    listed, _ = _qmp(argv, [], [{"execute": "query-machines",
                                 "arguments": {"compat-props": True}}])
    (machine,) = [m for m in listed[0]["return"] if m["name"] == FOLD_MACHINE]
    props = [[p["qom-type"], p["property"], p["value"]] for p in machine["compat-props"]]
    drivers = sorted({d for d, _, _ in props})
    classes, _ = _qmp(argv, [], [{"execute": "qom-list-properties",
                                  "arguments": {"typename": d}} for d in drivers])
    types: dict[str, dict[str, str] | None] = {}
    for driver, reply in zip(drivers, classes, strict=True):
        named = {p for d, p, _ in props if d == driver}
        types[driver] = None if "error" in reply else {
            p["name"]: p["type"] for p in reply["return"] if p["name"] in named}
    reads, _ = _qmp(argv, FOLD_ARGS, [{"execute": "qom-get", "arguments": {
        "path": path, "property": prop}} for path, _, prop in FOLD_READS])
    return {"machine": FOLD_MACHINE, "compat_props": props, "types": types, "args": FOLD_ARGS,
            "read": [[driver, prop, reply["return"]]
                     for (_, driver, prop), reply in zip(FOLD_READS, reads, strict=True)]}


def record_kvm(argv: list[str]) -> list[list[Any]]:
    """qom-get of KVM_CPU's properties on a KVM guest's CPU (needs /dev/kvm)."""
    def one(mode: str, prop: str) -> Any:
        replies, stderr = _qmp(argv, ["-M", "pc-q35-10.0", "-cpu", "qemu64", "-accel",
                                      f"kvm,kernel-irqchip={mode}"], [{"execute": "qom-get",
                               "arguments": {"path": "/machine/unattached/device[0]",
                                             "property": prop}}])
        assert replies, stderr
        return replies[0]["return"]

    return [[mode, prop, one(mode, prop)] for mode, prop in KVM_CPU]


def record(argv: list[str]) -> dict[str, Any]:
    """Everything the fixture holds, read from the QEMU that ``argv`` starts."""
    with ThreadPoolExecutor(4) as pool:
        devices = list(pool.map(lambda d: _device(argv, d[0], d[2]), DEVICES))
        addrs = list(pool.map(lambda t: _addr(argv, t), ADDRS))
        refused = list(pool.map(lambda r: _refusal(argv, r[0]), REFUSED))
        fold = pool.submit(_fold, argv).result()
        macs = list(pool.map(lambda a: _qmp(argv, ["-M", "pc-i440fx-10.0", *a], [
            {"execute": "qom-get", "arguments": {"path": "/machine/peripheral/a",
                                                 "property": "mac"}}])[0][0]["return"],
                             MAC_ORDER))
        accels = _qmp(argv, [], [{"execute": "qom-list-properties", "arguments": {
            "typename": t}} for t in ("tcg-accel", "kvm-accel")])[0]
        cpus = list(pool.map(lambda c: _qmp(argv, ["-M", "pc-i440fx-10.0", "-cpu", c[0]], [
            {"execute": "qom-get", "arguments": {"path": "/machine/unattached/device[0]",
                                                 "property": c[1]}}])[0][0]["return"], CPUS))
    return {
        "qemu": QEMU_VERSION,
        "devices": [{"args": a, "type": t, "path": p, "properties": props}
                    for (a, t, p), props in zip(DEVICES, devices, strict=True)],
        "addr": [[t, v] for t, v in zip(ADDRS, addrs, strict=True)],
        "refused": [{"args": a, "device": d, "qemu_says": says}
                    for (a, d), says in zip(REFUSED, refused, strict=True)],
        "fold": fold,
        "cpu": [[c, p, v] for (c, p), v in zip(CPUS, cpus, strict=True)],
        "mac_order": [[a, mac] for a, mac in zip(MAC_ORDER, macs, strict=True)],
        "accel": {t: sorted(p["name"] for p in reply["return"])
                  for t, reply in zip(("tcg-accel", "kvm-accel"), accels, strict=True)},
    }


@pytest.mark.qemu
@pytest.mark.kvm
def test_the_kvm_recording_is_what_qemu_10_0_2_says(real_kvm: object) -> None:
    from conftest import zoo_command

    live = record_kvm(zoo_command(QEMU_VERSION).resolved())
    assert live == json.loads(FIXTURE.read_text())["kvm_cpu"]


@pytest.mark.qemu
def test_the_recording_is_what_qemu_10_0_2_says() -> None:
    from conftest import HOST_BUILD, zoo_command

    assert HOST_BUILD == QEMU_VERSION
    argv = zoo_command(QEMU_VERSION).resolved()
    live = record(argv)
    recorded = json.loads(FIXTURE.read_text())
    for key in ("devices", "addr", "refused", "fold", "cpu", "accel", "mac_order"):
        assert live[key] == recorded[key], key


if __name__ == "__main__":
    json.dump({**record(["qemu-system-x86_64"]), "kvm_cpu": record_kvm(["qemu-system-x86_64"])},
              sys.stdout, indent=1)
    sys.stdout.write("\n")
