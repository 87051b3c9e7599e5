"""A real libvirt (issue 18): domains defined, started paused and destroyed, judged by name.

Needs a libvirt that answers at MACHINES_LIBVIRT_URI (default qemu:///system), as
.ci/install-libvirt starts it; skips without one, fails under MACHINES_REQUIRE_LIBVIRT=1.
Every domain is named ``machines-test-PID-N``, has no disk and no guest OS, starts
paused, and is destroyed and undefined when its test ends, passed or not.  Every
virsh call has a timeout, so a hung libvirt fails the test instead of hanging it.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from machines.cli import main
from machines.registry import get_build

TIMEOUT = 60
_names = itertools.count(1)


def _virsh(uri: str, *args: str, check: bool = True) -> str:
    done = subprocess.run(["virsh", "-q", "-c", uri, *args], capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _domain_xml(name: str, machine: str, ioapic: str | None = "qemu") -> str:
    kind = "kvm" if os.path.exists("/dev/kvm") else "qemu"
    features = f"<features><acpi/><ioapic driver='{ioapic}'/></features>" if ioapic else ""
    return (f"<domain type='{kind}'><name>{name}</name><memory unit='MiB'>64</memory>"
            f"<vcpu>1</vcpu><os><type arch='x86_64' machine='{machine}'>hvm</type></os>"
            f"{features}<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
            "</devices></domain>")


class Domains:
    """Defines domains and removes every one of them at the end."""

    def __init__(self, uri: str, tmp: Path) -> None:
        self.uri, self.tmp, self.names = uri, tmp, []

    def define(self, machine: str = "pc-q35-10.0", ioapic: str | None = "qemu",
               start: bool = False) -> str:
        name = f"machines-test-{os.getpid()}-{next(_names)}"
        path = self.tmp / f"{name}.xml"
        path.write_text(_domain_xml(name, machine, ioapic))
        self.names.append(name)
        _virsh(self.uri, "define", str(path))
        if start:
            _virsh(self.uri, "start", "--paused", name)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            _virsh(self.uri, "destroy", name, check=False)
            _virsh(self.uri, "undefine", name, check=False)


@pytest.fixture
def domains(libvirt_uri: str, tmp_path: Path) -> Iterator[Domains]:
    made = Domains(libvirt_uri, tmp_path)
    try:
        yield made
    finally:
        made.cleanup()
        left = _virsh(libvirt_uri, "list", "--all", "--name")
        assert not set(made.names) & set(left.split()), "a test domain was left behind"


def _preflight(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["preflight", *argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _judgement(doc: dict[str, Any]) -> dict[str, Any]:
    """The pre-flight answer without the words that say how the source was read."""
    source = {k: v for k, v in doc["source"].items() if k not in ("described_by", "qemu_why")}
    seoib = dict(source.pop("seoib"))
    seoib.pop("origin", None)
    return {"source": source, "seoib": seoib, "destinations": doc["destinations"]}


def test_inactive_domain_is_judged_as_its_xml(domains: Domains, capsys: Any,
                                              tmp_path: Path) -> None:
    name = domains.define("q35")  # libvirt stores the alias as the type it stands for
    code, by_name = _preflight(capsys, "--connect", domains.uri, "--domain", name,
                               "--dest", "linux-6.12/10.2", "--dest", "linux-7.0/10.0.2")
    xml = tmp_path / "dumped.xml"
    xml.write_text(_virsh(domains.uri, "dumpxml", name))
    code_file, by_file = _preflight(capsys, "--libvirt", str(xml), "--release", "10.0.2",
                                    "--dest", "linux-6.12/10.2", "--dest", "linux-7.0/10.0.2")
    assert code == code_file
    assert by_name["source"]["machine"] == "pc-q35-10.0"
    assert by_name["source"]["qemu"] == "10.0.2"
    assert "(shut off)" in by_name["source"]["described_by"]
    assert _judgement(by_name) == _judgement(by_file)


def test_running_domain_is_read_over_the_monitor_passthrough(domains: Domains,
                                                              capsys: Any) -> None:
    name = domains.define("pc-q35-10.0", ioapic="qemu", start=True)
    assert _virsh(domains.uri, "domstate", name).strip() == "paused"
    code, doc = _preflight(capsys, "--connect", domains.uri, "--domain", name,
                           "--dest", "linux-6.12/10.2", "--dest", "linux-7.0/10.0.2")
    source = doc["source"]
    assert "(paused)" in source["described_by"]
    assert "monitor passthrough" in source["described_by"]
    assert source["qemu_why"] == "the version the domain's running QEMU reports"
    assert (source["machine"], source["qemu"]) == ("pc-q35-10.0", "10.0.2")
    if source["accel"] == "kvm":
        assert source["kernel_irqchip"] == "split"
        assert source["seoib"]["state"] == "QUIRKED"
        assert "running on QEMU 10.0.2" in source["seoib"]["origin"]
    assert source["ioapic"] == {"type": "ioapic", "version": 0x20}
    assert code == 0


def test_running_i440fx_with_kernel_irqchip(domains: Domains, capsys: Any) -> None:
    name = domains.define("pc-i440fx-7.2", ioapic="kvm", start=True)
    code, doc = _preflight(capsys, "--connect", domains.uri, "--domain", name,
                           "--dest", "linux-6.12/10.2")
    source = doc["source"]
    assert source["machine"] == "pc-i440fx-7.2"
    if source["accel"] == "kvm":
        assert source["kernel_irqchip"] == "on"
        assert source["ioapic"]["type"] == "kvm-ioapic"
    assert code in (0, 1) and [d["host"] for d in doc["destinations"]] == ["linux-6.12/10.2"]


def test_unknown_domain_is_one_line(libvirt_uri: str, capsys: Any) -> None:
    code = main(["preflight", "--connect", libvirt_uri, "--domain", "machines-no-such-domain",
                 "--dest", "linux-6.12/10.2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "machines-no-such-domain" in err


def test_connect_needs_a_domain(capsys: Any) -> None:
    assert main(["preflight", "--connect", "qemu:///system", "--dest", "linux-6.12/10.2",
                 "-M", "q35"]) == 2
    assert "--domain" in capsys.readouterr().err


def test_probe_connect_describes_the_host_by_its_libvirt(domains: Domains, capsys: Any,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "host.json"
    assert main(["probe", "--connect", domains.uri, "--simulate", "linux-7.0", "--name",
                 "via-libvirt", "-o", str(path)]) == 0
    doc = json.loads(path.read_text())
    info = doc["libvirt"]
    assert doc["qemu"] == {"release": info["qemu_version"]} == {"release": "10.0.2"}
    assert info["emulator"] and info["libvirt_version"]
    names = {m["name"] for m in info["machines"] if "canonical" not in m}
    # Every versioned type libvirt reports is one the shipped 10.0.2 build registers.
    listing = set(get_build("10.0.2").listing)
    assert names and names <= listing | {"none"}, names - listing
    aliases = {m["name"]: m["canonical"] for m in info["machines"] if "canonical" in m}
    assert aliases["q35"].startswith("pc-q35-") and aliases["pc"].startswith("pc-i440fx-")
    # The profile describes a destination.
    name = domains.define("pc-q35-10.0")
    code, out = _preflight(capsys, "--connect", domains.uri, "--domain", name,
                           "--dest", str(path))
    assert code == 0 and out["destinations"][0]["host"] == "via-libvirt"


def test_unreachable_libvirt_is_one_line_exit_3(libvirt_uri: str, capsys: Any) -> None:
    uri = "qemu+unix:///system?socket=/nonexistent/libvirt-sock"
    assert main(["preflight", "--connect", uri, "--domain", "x", "--dest", "a/10.2"]) == 3
    assert main(["probe", "--simulate", "linux-7.0", "--connect", uri]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "failed to connect" in err.lower()


def test_completion_offers_the_domains(domains: Domains) -> None:
    from machines.completion import candidates

    name = domains.define("pc-q35-10.0")
    found = candidates(5, ["machines", "preflight", "--connect", domains.uri, "--domain",
                           "machines-test-"])
    assert name in found
