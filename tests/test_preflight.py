"""Migration pre-flight: each rule, positive and negative; sources of every kind."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from kvmglue.profile import shipped
from machines.cli import main
from machines.config import configure
from machines.errors import DataError
from machines.hostprofile import HostProfile, from_spec
from machines.i386.seoib import SeoibState
from machines.kernels import caps
from machines.libvirt import parse_domain, read_domain
from machines.options import parse_args
from machines.preflight import Destination, exit_code, judge, source_from
from machines.registry import get_build

FIXTURES = Path(__file__).parent / "fixtures" / "libvirt"
R, Q, N = SeoibState.RESPECTED, SeoibState.QUIRKED, SeoibState.NOT_ADVERTISED


def verdict(args: str, dest: str, state: SeoibState | None = R, release: str = "10.2",
            dest_args: str | None = None) -> Destination:
    config = configure(get_build(release), parse_args(args.split()))
    source = source_from(config, state, "test")
    return judge(source, from_spec(dest), parse_args(dest_args.split()) if dest_args else None)


def codes(d: Destination) -> list[str]:
    return [r.code for r in d.reasons]


SPLIT = "-accel kvm,kernel-irqchip=split"


def test_machine_type_unknown() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.0.2", state=Q)
    assert codes(d) == ["machine-type-unknown"] and d.verdict == "blocked"
    assert "closest is pc-q35-10.0" in d.reasons[0].message
    d = verdict(f"-M pc-q35-5.0 {SPLIT}", "linux-7.0/10.2", state=Q, release="10.0")
    assert "machine-type-unknown" not in codes(d)


def test_machine_type_unknown_quotes_the_line_each_build_prints() -> None:
    # as the real builds print it (docs/migration-oracle.md)
    d = verdict(f"-M pc-q35-7.2 {SPLIT}", "linux-7.0/5.2", state=Q, release="7.2")
    assert '"-M pc-q35-7.2: unsupported machine type"' in d.reasons[0].message
    d = verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/7.2", state=Q, release="10.0.2")
    assert '"unsupported machine type"' in d.reasons[0].message
    d = verdict(f"-M pc-q35-11.1 {SPLIT}", "linux-7.0/10.0.13", state=Q, release="11.1.3")
    assert '"unsupported machine type: "pc-q35-11.1""' in d.reasons[0].message


def test_accelerator_mismatch_quotes_kvmclock_in_each_builds_words() -> None:
    d = verdict("-M pc-q35-7.2 -accel kvm", "linux-7.0/10.0.2", state=Q, release="7.2",
                dest_args="-M pc-q35-7.2 -accel tcg")
    assert "accelerator-mismatch" in codes(d) and d.verdict == "blocked"
    assert ("\"Unknown savevm section or instance 'kvmclock' 0. Make sure that your current "
            "VM setup matches your saved VM setup, including any hotplugged devices\"") in \
        d.reasons[codes(d).index("accelerator-mismatch")].message
    d = verdict("-M pc-q35-7.2 -accel kvm", "linux-7.0/11.1.3", state=Q, release="7.2",
                dest_args="-M pc-q35-7.2 -accel tcg")
    assert ("\"load of migration failed: Invalid argument: Unknown section or instance "
            "'kvmclock' 0.") in d.reasons[codes(d).index("accelerator-mismatch")].message
    # TCG both sides, KVM both sides: no such reason
    assert "accelerator-mismatch" not in codes(verdict("-M pc-q35-7.2 -accel tcg",
                                                       "linux-7.0/10.0.2", None, "7.2"))
    assert "accelerator-mismatch" not in codes(verdict("-M pc-q35-7.2 -accel kvm",
                                                       "linux-7.0/10.0.2", Q, "7.2"))


def test_device_state_refused_virtio_net_from_10_0_13() -> None:
    net = "-device virtio-net-pci,romfile="
    d = verdict(f"-M pc-q35-10.0 -accel kvm {net}", "linux-7.0/11.1.3", Q, "10.0.13")
    assert codes(d) == ["device-state-refused"]
    assert '"VQ 0 vring.num 1024 exceeds allocated max 256"' in d.reasons[0].message
    # 10.2 loads it, 10.0.2's ring is 256, no virtio-net no problem
    assert codes(verdict(f"-M pc-q35-10.0 -accel kvm {net}", "linux-7.0/10.2", Q,
                         "10.0.13")) == []
    assert codes(verdict(f"-M pc-q35-10.0 -accel kvm {net}", "linux-7.0/11.1.3", Q,
                         "10.0.2")) == []
    assert codes(verdict("-M pc-q35-10.0 -accel kvm", "linux-7.0/11.1.3", Q, "10.0.13")) == []


def test_machine_type_unknown_says_when_it_was_removed() -> None:
    d = verdict(f"-M pc-q35-4.1 {SPLIT}", "linux-7.0/10.2", state=Q, release="10.0")
    assert codes(d) == ["machine-type-unknown"]
    assert "not available since QEMU 10.1" in d.reasons[0].message


def test_machine_type_deprecated() -> None:
    d = verdict(f"-M pc-q35-7.2 {SPLIT}", "linux-7.0/10.2", state=Q)
    assert codes(d) == ["machine-type-deprecated"] and d.verdict == "warn"
    d = verdict(f"-M pc-q35-7.2 {SPLIT}", "linux-7.0/10.1", state=Q, release="10.1")
    assert "machine-type-deprecated" not in codes(d)


def test_alias_not_pinned() -> None:
    d = verdict(f"-M q35 {SPLIT}", "linux-7.0/10.2", state=Q)
    assert codes(d) == ["alias-not-pinned"] and "pc-q35-10.2" in d.reasons[0].fix
    assert codes(verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2", state=Q)) == []


def test_seoib_section_unsupported() -> None:
    d = verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/10.0.2", state=R, release="10.2+opt-in")
    assert codes(d) == ["seoib-section-unsupported"]
    assert "seoib-policy=quirked" in d.reasons[0].fix
    # QEMU's own refusal is quoted
    assert "Unknown savevm section or instance 'x86-seoib-state' 0" in d.reasons[0].message
    d = verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/10.2", state=R, release="10.2+rfc-v2")
    assert codes(d) == ["seoib-section-unsupported"] and "no setting" in d.reasons[0].fix
    assert codes(verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/10.0.2", state=Q)) == []


def test_no_section_without_a_split_irqchip() -> None:
    # opt-in's not-advertised with KVM's IOAPIC sets DISABLE but sends no section: an
    # identical host, or one without the SEOIB code, takes the VM.
    for dest in ("linux-7.0/10.2+opt-in", "linux-7.0/10.2", "linux-6.12/10.2+rfc-v2"):
        d = verdict("-M pc-q35-10.2 -accel kvm,seoib-policy=not-advertised", dest, state=N,
                    release="10.2+opt-in")
        assert codes(d) == [], dest


def test_seoib_kernel_api_missing() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-6.12/10.2+opt-in", state=R,
                release="10.2+opt-in")
    assert codes(d) == ["seoib-kernel-api-missing"]
    assert "restart" in d.reasons[0].fix
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-6.12/10.2+opt-in", state=N)
    assert "DISABLE_SUPPRESS_EOI_BROADCAST" in d.reasons[0].message
    assert codes(verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-6.18.y-seoib/10.2+opt-in",
                         state=R)) == []


def test_seoib_destination_abort_is_a_crash_not_a_refusal() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-6.12/10.2+rfc-v2", state=R,
                release="10.2+rfc-v2")
    assert codes(d) == ["seoib-destination-abort"] and d.verdict == "blocked"
    assert "Failed to set KVM LAPIC SEOIB flags" in d.reasons[0].message
    assert "crashes" in d.reasons[0].message
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2+gated", state=R,
                release="10.2+rfc-v2", dest_args="-accel kvm")
    assert "seoib-destination-abort" in codes(d)
    assert "SEOIB state is only valid for split irqchip mode." in d.reasons[0].message
    assert codes(verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2+rfc-v2", state=R)) == []


def test_seoib_irqchip_mismatch() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2+opt-in", state=N,
                dest_args="-accel kvm -global ioapic.version=0x11")
    assert "seoib-irqchip-mismatch" in codes(d)
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2+opt-in", state=N,
                dest_args=f"{SPLIT}")
    assert "seoib-irqchip-mismatch" not in codes(d)


def test_ioapic_version_mismatch() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2", state=Q,
                dest_args=f"{SPLIT} -global ioapic.version=0x11")
    assert codes(d) == ["ioapic-version-mismatch"]
    assert "0x20" in d.reasons[0].message and "0x11" in d.reasons[0].message
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2", state=Q, dest_args="-accel kvm")
    assert codes(d) == ["ioapic-version-mismatch"]  # ioapic 0x20 vs KVM's kvm-ioapic 0x11
    assert codes(verdict(f"-M pc-q35-10.2 {SPLIT} -global ioapic.version=0x11",
                         "linux-7.0/10.2", state=Q)) == []


def test_compat_drift_point_release() -> None:
    d = verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/10.1.2", state=Q, release="10.1")
    assert codes(d) == ["compat-drift"]
    message = d.reasons[0].message
    assert "x86_64-cpu.x-arch-cap-always-on" in message
    assert "x86_64-cpu.x-pdcm-on-even-without-pmu" in message
    assert "pc_compat_10_0[2]" in message
    assert codes(verdict(f"-M pc-q35-10.1 {SPLIT}", "linux-7.0/10.1.2", state=Q,
                         release="10.1")) == []
    assert codes(verdict(f"-M pc-q35-10.0 {SPLIT}", "linux-7.0/10.2", state=Q,
                         release="10.0.2")) == []


def test_destination_config_invalid() -> None:
    d = verdict(f"-M pc-q35-10.2 {SPLIT}", "linux-7.0/10.2", state=Q,
                dest_args=f"{SPLIT} -global ioapic.version=0x13")
    assert codes(d) == ["destination-config-invalid"]


def test_destination_drops_seoib_policy_the_stream_decides() -> None:
    d = verdict(f"-M pc-q35-10.0 {SPLIT},seoib-policy=quirked", "linux-6.12/10.0.2", state=Q)
    assert codes(d) == []


def test_exit_codes() -> None:
    ok = Destination("a", "ok", ())
    warn = Destination("b", "warn", ())
    blocked = Destination("c", "blocked", ())
    assert exit_code([ok]) == 0 and exit_code([ok, warn]) == 1
    assert exit_code([warn, blocked]) == 3


def test_host_spec_errors() -> None:
    from machines.errors import UsageError

    with pytest.raises(UsageError, match=r"unknown QEMU build '9\.1'"):
        from_spec("linux-7.0/9.1")
    with pytest.raises(UsageError, match=r"unknown kernel profile 'linux-3\.10'"):
        from_spec("linux-3.10/10.2")
    with pytest.raises(UsageError, match="KERNEL/QEMU"):
        from_spec("nonsense")
    with pytest.raises(UsageError, match="unknown SEOIB design 'rfc-v3'"):
        from_spec("linux-7.0/10.2+rfc-v3")
    host = from_spec("linux-7.0/10.2+gated:11.2")
    assert host.build.name == "10.2+gated:11.2" and host.qemu == {"release": "10.2",
                                                                  "seoib": "gated:11.2"}


# -- libvirt


def test_libvirt_domain_mapping() -> None:
    binary, args = read_domain(FIXTURES / "respected-by-global.xml")
    assert binary == "/usr/bin/qemu-system-x86_64"
    assert args == ["-machine", "pc-q35-10.0,kernel_irqchip=split", "-accel", "kvm",
                    "-cpu", "Skylake-Server,x2apic=off,pcid=on",
                    "-global", "kvm-accel.seoib-policy=respected"]


@pytest.mark.parametrize("xml", [
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
    "<domain type='kvm'><name>&b;</name></domain>",
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    "<domain type='kvm'><name>&x;</name></domain>",
    '<?xml version="1.0"?><!DOCTYPE d SYSTEM "http://example.invalid/d.dtd">'
    "<domain type='kvm'/>",
])
def test_libvirt_hostile_xml_is_refused(xml: str) -> None:
    with pytest.raises(DataError, match="refused"):
        parse_domain(xml)


@pytest.mark.parametrize(("xml", "message"), [
    ("<domain type='kvm'><os>", "not well-formed"),
    ("<network/>", "not <domain>"),
    ("<domain type='xen'/>", "not a QEMU/KVM domain"),
    ("<domain type='kvm'><features><ioapic driver='x'/></features></domain>", "ioapic"),
])
def test_libvirt_bad_documents(xml: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_domain(xml)


def _run(capsys: Any, *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def _reasons(doc: dict[str, Any]) -> dict[str, list[str]]:
    return {d["host"]: [r["code"] for r in d["reasons"]] for d in doc["destinations"]}


def test_libvirt_source_gives_the_verdict_of_its_command_line(capsys: Any) -> None:
    dests = ["--dest", "linux-7.0/10.0.2", "--dest", "linux-6.12/10.2+rfc-v2",
             "--source-host", "linux-7.0/10.2+rfc-v2", "--json"]
    code_xml, from_xml = _run(capsys, "preflight", "--libvirt",
                              str(FIXTURES / "respected-by-global.xml"), *dests)
    _, args = read_domain(FIXTURES / "respected-by-global.xml")
    code_args, from_args = _run(capsys, "preflight", *dests, "--", *args)
    assert code_xml == code_args == 3
    assert from_xml["destinations"] == from_args["destinations"]
    assert _reasons(from_xml) == {"linux-7.0/10.0.2": ["seoib-section-unsupported"],
                                  "linux-6.12/10.2+rfc-v2": ["seoib-destination-abort"]}
    code, doc = _run(capsys, "preflight", "--libvirt", str(FIXTURES / "win11-split.xml"),
                     "--dest", "linux-7.0/10.2+rfc-v2", "--source-host",
                     "linux-7.0/10.2+rfc-v2", "--json")
    assert code == 0 and doc["source"]["seoib"]["state"] == "RESPECTED"


def test_cli_json_shape_and_one_line_errors(capsys: Any) -> None:
    code, doc = _run(capsys, "preflight", "-M", "q35", "-accel", "kvm,kernel-irqchip=split",
                     "--source-host", "linux-7.0/10.2", "--dest", "linux-7.0/10.2", "--json")
    assert code == 1 and doc["schema"] == "machines/preflight/v1"
    dest = doc["destinations"][0]
    assert dest["verdict"] == "warn"
    assert set(dest["reasons"][0]) == {"code", "severity", "message", "fix"}
    assert doc["source"]["machine"] == "pc-q35-10.2"
    for argv, needle in [
        (["preflight", "-M", "q35"], "at least one --dest"),
        (["preflight", "--dest", "bogus", "-M", "q35"], "KERNEL/QEMU"),
        (["preflight", "--dest", "linux-7.0/10.2", "--cmdline", "qemu-system-x86_64",
          "-M", "q35"], "describe the source VM once"),
        (["preflight", "--dest", "linux-7.0/10.2", "--source-host", "linux-6.12/10.2+opt-in",
          "-M", "q35", "-accel", "kvm,kernel-irqchip=split,seoib-policy=respected"],
         "would not power on"),
        (["preflight", "--dest", "linux-7.0/10.2", "--seoib", "rfc-v3", "-M", "q35"],
         "unknown SEOIB design"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err


# -- end to end on this machine: real kernel as source, real QEMU 10.0.2 as a destination


@pytest.fixture(scope="module")
def real_host(qemu_binary: str, real_kvm: Any, tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("hosts") / "here.json"
    assert main(["probe", "--qemu", qemu_binary, "--name", "here", "-o", str(path)]) == 0
    return path


@pytest.mark.qemu
@pytest.mark.kvm
def test_end_to_end_with_the_real_kernel_and_qemu(real_host: Path, capsys: Any) -> None:
    here = str(real_host)
    capsys.readouterr()
    old_kernel = "linux-6.12/10.2+rfc-v2"
    # pc-q35-10.2, split irqchip, rfc-v2, powered on here: RESPECTED (this kernel has the API).
    code, doc = _run(capsys, "preflight", "-M", "pc-q35-10.2", "-accel",
                     "kvm,kernel-irqchip=split", "--seoib", "rfc-v2", "--dest", old_kernel,
                     "--dest", here, "--json")
    assert doc["source"]["kernel"] == "host" and doc["source"]["seoib"]["state"] == "RESPECTED"
    assert code == 3
    assert _reasons(doc) == {old_kernel: ["seoib-destination-abort"],
                             "here": ["machine-type-unknown"]}
    # pc-q35-10.0 under rfc-v2: only the section blocks QEMU 10.0.2.
    code, doc = _run(capsys, "preflight", "-M", "pc-q35-10.0", "-accel",
                     "kvm,kernel-irqchip=split", "--seoib", "rfc-v2", "--dest", here, "--json")
    assert code == 3 and _reasons(doc) == {"here": ["seoib-section-unsupported"]}
    # The same VM on a real build (design none), or with KVM's IOAPIC under rfc-v2: QUIRKED.
    for extra in ([], ["--seoib", "rfc-v2"]):
        irqchip = "kvm" if extra else "kvm,kernel-irqchip=split"
        code, doc = _run(capsys, "preflight", "-M", "pc-q35-10.0", "-accel", irqchip, *extra,
                         "--dest", here, "--dest", old_kernel, "--json")
        assert code == 0 and _reasons(doc) == {"here": [], old_kernel: []}
        assert doc["source"]["seoib"]["state"] == "QUIRKED"
    # opt-in leaves every VM QUIRKED unless asked.
    code, doc = _run(capsys, "preflight", "-M", "pc-q35-10.2", "-accel",
                     "kvm,kernel-irqchip=split", "--seoib", "opt-in", "--dest",
                     "linux-6.12/10.2+opt-in", "--json")
    assert code == 0 and doc["source"]["seoib"]["state"] == "QUIRKED"


@pytest.mark.qemu
def test_live_qmp_source_gives_the_verdict_of_its_command_line(qemu_binary: str,
                                                               capsys: Any) -> None:
    from machines.kernels import host_usable

    kvm = host_usable()
    accel = "kvm,kernel-irqchip=split" if kvm else "tcg"
    args = ["-machine", "pc-q35-9.2", "-accel", accel, "-cpu", "qemu64"]
    dests = ["--dest", "linux-7.0/10.2", "--dest", "linux-6.12/10.1",
             "--source-host", "linux-7.0/10.0.2", "--json"]
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qmp.sock")
        proc = subprocess.Popen([qemu_binary, *args, "-S", "-nodefaults", "-display", "none",
                                 "-qmp", f"unix:{sock},server=on,wait=off"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60  # a busy two-core machine starts QEMU slowly
            while not os.path.exists(sock) and proc.poll() is None and \
                    time.monotonic() < deadline:
                time.sleep(0.025)
            assert os.path.exists(sock), f"QEMU made no QMP socket (exit {proc.poll()})"
            code_live, live = _run(capsys, "preflight", "--qmp", sock, *dests)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    code_args, from_args = _run(capsys, "preflight", *dests, "--", *args)
    assert code_live == code_args
    assert live["destinations"] == from_args["destinations"]
    assert live["source"]["machine"] == "pc-q35-9.2"
    assert live["source"]["kernel_irqchip"] == ("split" if kvm else None)
    assert live["source"]["ioapic"] == {"type": "ioapic", "version": 0x20}
    assert live["source"]["described_by"].startswith("the running QEMU 10.0.2")


def test_host_profile_names_its_design(tmp_path: Path) -> None:
    from machines.hostprofile import load, save

    profile = HostProfile("h1", shipped("linux-7.0"), get_build("10.1+rfc-v2"),
                          {"release": "10.1", "seoib": "rfc-v2"})
    save(profile, tmp_path / "h1.json")
    back = load(tmp_path / "h1.json")
    assert back.build.name == "10.1+rfc-v2" and back.build.seoib_aware
    doc = json.loads((tmp_path / "h1.json").read_text())
    doc["qemu"]["seoib"] = "sometimes"
    (tmp_path / "h2.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"field qemu\.seoib: unknown SEOIB design 'sometimes'"):
        load(tmp_path / "h2.json")


def test_host_profile_file_round_trip(tmp_path: Path) -> None:
    from machines.hostprofile import load, save

    profile = HostProfile("h1", shipped("linux-7.0"), get_build("10.1"), {"release": "10.1"})
    save(profile, tmp_path / "h1.json")
    back = load(tmp_path / "h1.json")
    assert (back.name, back.kernel.name, back.build.name) == ("h1", "linux-7.0", "10.1")
    doc = json.loads((tmp_path / "h1.json").read_text())
    doc["schema"] = "machines/host-profile/v2"
    (tmp_path / "h2.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="newer than this tool"):
        load(tmp_path / "h2.json")



def test_preflight_without_a_source_vm_is_a_usage_error(capsys: Any) -> None:
    assert main(["preflight", "--dest", "linux-7.0/10.2"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "no source VM" in err


def test_tcg_source_wording_and_no_source_state(capsys: Any) -> None:
    assert main(["preflight", "--dest", "linux-7.0/10.2", "-M", "pc-q35-10.2",
                 "-accel", "tcg"]) == 0
    out = capsys.readouterr().out
    assert "SEOIB none (no KVM LAPIC)," in out and out.count("no KVM LAPIC") == 1
    assert main(["preflight", "--dest", "linux-7.0/10.2", "--source-state", "RESPECTED",
                 "-M", "pc-q35-10.2", "-accel", "tcg"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "runs without KVM, so it has no KVM LAPIC" in err


def _preflight_qmp(capsys: Any, sock: str) -> tuple[int, str, float]:
    start = time.monotonic()
    code = main(["preflight", "--dest", "linux-7.0/10.2", "--qmp", sock])
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    return code, err, time.monotonic() - start


def test_qmp_socket_problems_each_have_their_line_and_code(capsys: Any, tmp_path: Path) -> None:
    import socket
    import threading

    code, err, _ = _preflight_qmp(capsys, str(tmp_path / "missing.sock"))
    assert code == 2 and "No such file or directory" in err
    (tmp_path / "plain").write_text("x")
    code, err, _ = _preflight_qmp(capsys, str(tmp_path / "plain"))
    assert code == 2 and "not a socket" in err
    with socket.socket(socket.AF_UNIX) as dead:  # bound, never listening: refused
        dead.bind(str(tmp_path / "refused.sock"))
    code, err, _ = _preflight_qmp(capsys, str(tmp_path / "refused.sock"))
    assert code == 4 and "connection refused" in err
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "garbage.sock"))
        server.listen(1)

        def greet_badly() -> None:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"SSH-2.0-hello\r\n")
                conn.recv(1)

        thread = threading.Thread(target=greet_badly)
        thread.start()
        code, err, _ = _preflight_qmp(capsys, str(tmp_path / "garbage.sock"))
        thread.join(timeout=10)
    assert code == 4 and "not a QMP monitor" in err and "SSH-2.0-hello" in err


@pytest.mark.qemu
def test_qmp_monitor_held_by_another_client_fails_fast(qemu_binary: str, capsys: Any,
                                                       tmp_path: Path) -> None:
    import socket

    sock = str(tmp_path / "qmp.sock")
    proc = subprocess.Popen([qemu_binary, "-machine", "none", "-S", "-nodefaults", "-display",
                             "none", "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with socket.socket(socket.AF_UNIX) as holder:  # as libvirtd holds its VMs' monitors
            for _ in range(400):
                try:
                    holder.connect(sock)
                    break
                except OSError:
                    time.sleep(0.025)
            assert holder.recv(7) == b'{"QMP":'
            code, err, took = _preflight_qmp(capsys, sock)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert code == 4 and took < 8
    assert "held by another client" in err and "virsh qemu-monitor-command" in err


# -- every reason in full: code, severity, message and fix, word for word ----------------
#
# The sentences are the tool's own (they are what a user reads), except the lines quoted from
# QEMU, which are written here as the real builds print them (the migration and RFC oracles
# check those against the binaries): a changed word in any of them fails here.

UNKNOWN_10_0 = ("Unknown savevm section or instance '{}' 0. Make sure that your current VM "
                "setup matches your saved VM setup, including any hotplugged devices")
UNKNOWN_10_2 = "load of migration failed: Invalid argument: " + UNKNOWN_10_0.replace(
    "savevm section", "section")
SPLIT_FIX = ("configure the destination with kernel-irqchip=split (libvirt: "
             "<ioapic driver='qemu'/>), as the source")
NEW_KERNEL = "or choose a destination whose kernel has the SEOIB API (Linux 7.0, 6.18.y, 6.19.y)"
QUIRKED_BY_DESIGN = {
    "opt-in": "power the VM on with -accel kvm,seoib-policy=quirked (it takes a restart) to "
              "keep it movable to hosts without SEOIB support",
    "gated": "power the VM on with a machine type older than the gate (a cold restart) to keep "
             "it movable to hosts without SEOIB support",
    "rfc-v2": "the posted code has no setting: only a power-on without a split irqchip "
              "(kernel-irqchip=on) or on a QEMU without the RFC keeps the VM QUIRKED",
}
PIC_20_VS_KVM = ("ioapic-version-mismatch", "blocked",
                 "the source's IOAPIC is ioapic version 0x20, the destination would build "
                 "kvm-ioapic version 0x11",
                 "configure the destination like the source: same kernel-irqchip mode and "
                 "-global ioapic.version=0x20")
KVMCLOCK_10_2 = ("accelerator-mismatch", "blocked",
                 "the VM runs under KVM and the destination would run without it: its stream "
                 "carries a kvmclock section, which QEMU {} on linux-7.0/{} refuses with "
                 f"\"{UNKNOWN_10_2.format('kvmclock')}\"",
                 "run the destination with -accel kvm, as the source")

FULL_REASONS: list[tuple[str, str, SeoibState | None, str, str | None,
                         list[tuple[str, str, str, str]]]] = [
    # (source build, source args, state, destination, --dest-args, reasons)
    *((f"10.2+{design}", f"-M pc-q35-10.0 {SPLIT}", R, "linux-7.0/10.0.2", None, [(
        "seoib-section-unsupported", "blocked",
        "the VM's SEOIB state is RESPECTED, so its stream carries x86-seoib-state, which QEMU "
        "10.0.2 on linux-7.0/10.0.2 cannot load: it refuses the stream with "
        f"\"{UNKNOWN_10_0.format('x86-seoib-state')}\"",
        f"{fix}, or upgrade the destination to a QEMU with the same SEOIB design")])
      for design, fix in QUIRKED_BY_DESIGN.items()),
    ("10.2+rfc-v2", f"-M pc-q35-10.0 {SPLIT}", N, "linux-7.0/10.2", None, [(
        "seoib-section-unsupported", "blocked",
        "the VM's SEOIB state is NOT_ADVERTISED, so its stream carries x86-seoib-state, which "
        "QEMU 10.2 on linux-7.0/10.2 cannot load: it refuses the stream with "
        f"\"{UNKNOWN_10_2.format('x86-seoib-state')}\"",
        f"{QUIRKED_BY_DESIGN['rfc-v2']}, or upgrade the destination to a QEMU with the same "
        "SEOIB design")]),
    ("10.2+gated:10.1", f"-M pc-q35-10.1 {SPLIT}", R, "linux-6.12/10.2+rfc-v2", None, [(
        "seoib-destination-abort", "blocked",
        "the VM's SEOIB state is RESPECTED, which needs KVM_X2APIC_API "
        "ENABLE_SUPPRESS_EOI_BROADCAST; kernel linux-6.12 (6.12.0) on linux-6.12/10.2+rfc-v2 "
        "lacks it, so QEMU 10.2+rfc-v2 prints \"Failed to set KVM LAPIC SEOIB flags\" and calls "
        "abort(): the destination QEMU crashes",
        f"{QUIRKED_BY_DESIGN['gated']}, {NEW_KERNEL}")]),
    ("10.2+rfc-v2", f"-M pc-q35-10.2 {SPLIT}", R, "linux-7.0/10.2+gated", "-accel kvm", [(
        "seoib-destination-abort", "blocked",
        "the VM's stream carries x86-seoib-state (RESPECTED) and the destination would run "
        "kernel-irqchip=on: QEMU 10.2+gated on linux-7.0/10.2+gated prints \"SEOIB state is only "
        "valid for split irqchip mode.\" and calls abort(): the destination QEMU crashes",
        SPLIT_FIX), PIC_20_VS_KVM]),
    ("10.2+rfc-v2", f"-M pc-q35-10.2 {SPLIT}", N, "linux-7.0/10.2+rfc-v2", "-accel tcg", [
        tuple(s.format("10.2+rfc-v2", "10.2+rfc-v2") for s in KVMCLOCK_10_2), (
            "seoib-destination-abort", "blocked",
            "the VM's stream carries x86-seoib-state (NOT_ADVERTISED) and the destination would "
            "run without KVM: QEMU 10.2+rfc-v2 on linux-7.0/10.2+rfc-v2 prints \"SEOIB state is "
            "only valid for split irqchip mode.\" and calls abort(): the destination QEMU "
            "crashes", SPLIT_FIX)]),
    ("10.2+opt-in", f"-M pc-q35-10.2 {SPLIT}", N, "linux-6.12/10.2+opt-in", "-accel kvm", [(
        "seoib-kernel-api-missing", "blocked",
        "the VM's SEOIB state is NOT_ADVERTISED, which needs KVM_X2APIC_API "
        "DISABLE_SUPPRESS_EOI_BROADCAST; kernel linux-6.12 (6.12.0) on linux-6.12/10.2+opt-in "
        "lacks it", f"{QUIRKED_BY_DESIGN['opt-in']}, {NEW_KERNEL}"), (
        "seoib-irqchip-mismatch", "blocked",
        "the VM's SEOIB state is NOT_ADVERTISED, which needs a split irqchip, but the "
        "destination would run kernel-irqchip=on", SPLIT_FIX), PIC_20_VS_KVM]),
    ("10.2+opt-in", f"-M pc-q35-10.2 {SPLIT}", R, "linux-7.0/10.2+opt-in", "-accel tcg", [
        tuple(s.format("10.2+opt-in", "10.2+opt-in") for s in KVMCLOCK_10_2), (
            "seoib-irqchip-mismatch", "blocked",
            "the VM's SEOIB state is RESPECTED, which needs a split irqchip, but the "
            "destination would run without KVM", SPLIT_FIX)]),
    # the first device in name order is named; 11.0 is assumed to check as 11.1.3 does
    ("10.0.13", "-M pc-q35-10.0 -accel kvm -device virtio-net-pci,romfile= "
     "-device virtio-net-device", Q, "linux-7.0/11.0", None, [(
         "device-state-refused", "blocked",
         "QEMU 10.0.13 gives virtio-net's RX queue a 1024-entry ring (rx_queue_size 256 "
         "notwithstanding), more than the destination allocates: QEMU 11.0 on linux-7.0/11.0 "
         "refuses virtio-net-device's state with \"VQ 0 vring.num 1024 exceeds allocated max "
         "256\"",
         "move the VM to a build that loads it (10.2 does), or restart it on another source "
         "build first")]),
    ("10.2", f"-M q35 {SPLIT}", Q, "linux-7.0/10.2", None, [(
        "alias-not-pinned", "warning",
        "the VM was configured with 'q35', which QEMU 10.2 resolved to pc-q35-10.2; another "
        "QEMU resolves it to its own newest type",
        "use 'pc-q35-10.2' in the VM's definition so that every host builds the same machine")]),
    ("10.2", f"-M pc-q35-7.2 {SPLIT}", Q, "linux-7.0/10.2", None, [(
        "machine-type-deprecated", "warning",
        "QEMU 10.2 marks pc-q35-7.2 deprecated (machine types are withdrawn 6 years after "
        "their release)", "plan a move to a newer machine type at the VM's next cold restart")]),
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", Q, "linux-7.0/10.0.2", None, [(
        "machine-type-unknown", "blocked",
        "QEMU 10.0.2 on linux-7.0/10.0.2 does not know pc-q35-10.2; its closest is "
        "pc-q35-10.0; it refuses to start: \"unsupported machine type: \"pc-q35-10.2\"\"",
        "keep the VM on hosts whose QEMU has this machine type, or move it to a type the "
        "destination knows with a cold restart (e.g. pc-q35-10.0)")]),
    ("10.0", f"-M pc-q35-4.1 {SPLIT}", Q, "linux-7.0/10.2", None, [(
        "machine-type-unknown", "blocked",
        "QEMU 10.2 on linux-7.0/10.2 does not know pc-q35-4.1 (not available since QEMU 10.1: "
        "no longer registered: machine types are withdrawn 6 years after their release); its "
        "closest is pc-q35-5.0; it refuses to start: \"unsupported machine type: "
        "\"pc-q35-4.1\"\"",
        "keep the VM on hosts whose QEMU has this machine type, or move it to a type the "
        "destination knows with a cold restart (e.g. pc-q35-5.0)")]),
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", Q, "linux-7.0/10.2",
     f"{SPLIT} -global ioapic.version=0x13", [(
         "destination-config-invalid", "blocked",
         "QEMU 10.2 on linux-7.0/10.2 would refuse the configuration: IOAPIC only supports "
         "version 0x11 or 0x20 (default: 0x20).",
         "fix the destination's configuration (--dest-args) so that its QEMU accepts it")]),
    ("10.2", f"-M pc-q35-10.2 {SPLIT}", Q, "linux-7.0/10.2",
     f"{SPLIT} -global ioapic.version=0x11", [(
         "ioapic-version-mismatch", "blocked",
         "the source's IOAPIC is ioapic version 0x20, the destination would build ioapic "
         "version 0x11",
         "configure the destination like the source: same kernel-irqchip mode and "
         "-global ioapic.version=0x20")]),
    ("10.1", f"-M pc-q35-10.0 {SPLIT}", Q, "linux-7.0/10.1.2", None, [(
        "compat-drift", "blocked",
        "pc-q35-10.0 differs between QEMU 10.1 and QEMU 10.1.2: x86_64-cpu.x-arch-cap-always-on: "
        "False on 10.1 (behaviour of QEMU 10.1, which has no such property) but True on 10.1.2 "
        "(pc_compat_10_0[2]); x86_64-cpu.x-pdcm-on-even-without-pmu: False on 10.1 (behaviour "
        "of QEMU 10.1, which has no such property) but True on 10.1.2 (pc_compat_10_0[3])",
        "migrate to a QEMU build that resolves this machine type the same way, or pin the "
        "listed properties on the destination with -global to the source's values")]),
    ("10.1.2", f"-M pc-q35-10.0 {SPLIT}", Q, "linux-7.0/10.1", None, [(
        "compat-drift", "blocked",
        "pc-q35-10.0 differs between QEMU 10.1.2 and QEMU 10.1: x86_64-cpu.x-arch-cap-always-on: "
        "True on 10.1.2 (pc_compat_10_0[2]) but False on 10.1 (behaviour of QEMU 10.1, which "
        "has no such property); x86_64-cpu.x-pdcm-on-even-without-pmu: True on 10.1.2 "
        "(pc_compat_10_0[3]) but False on 10.1 (behaviour of QEMU 10.1, which has no such "
        "property)",
        "migrate to a QEMU build that resolves this machine type the same way (QEMU 10.1 has no "
        "property for x-arch-cap-always-on, x-pdcm-on-even-without-pmu: a later point release "
        "does)")]),
]


@pytest.mark.parametrize("row", FULL_REASONS,
                         ids=[f"{r[0]} {r[1]} {r[2] and r[2].name}->{r[3]} {r[4]}"
                              for r in FULL_REASONS])
def test_every_reason_in_full(row: tuple[Any, ...]) -> None:
    release, args, state, dest, dest_args, reasons = row
    d = verdict(args, dest, state, release, dest_args)
    assert [tuple(r) for r in d.reasons] == [tuple(r) for r in reasons]
    severities = {r[1] for r in reasons}
    assert d.verdict == ("blocked" if "blocked" in severities else "warn")
    assert [r.to_json() for r in d.reasons] == [
        {"code": c, "severity": s, "message": m, "fix": f} for c, s, m, f in reasons]


def test_a_clean_destination_is_ok_and_judge_all_passes_dest_args() -> None:
    from machines.preflight import judge_all

    config = configure(get_build("10.2"), parse_args(f"-M pc-q35-10.2 {SPLIT}".split()))
    source = source_from(config, Q, "test")
    dests = [from_spec("linux-7.0/10.2"), from_spec("linux-6.12/10.2")]
    assert [(d.host, d.verdict, d.reasons) for d in judge_all(source, dests)] == [
        ("linux-7.0/10.2", "ok", ()), ("linux-6.12/10.2", "ok", ())]
    # --dest-args reach every destination: KVM's IOAPIC (0x11) there, the source's is 0x20
    got = judge_all(source, dests, parse_args(["-accel", "kvm"]))
    assert [(d.verdict, codes(d)) for d in got] == [("blocked", ["ioapic-version-mismatch"])] * 2


def test_source_from_keeps_the_decision_and_reads_the_ioapic_of_pc_machines() -> None:
    from machines.i386.seoib import decide, inputs_from
    from machines.kernels import caps
    from machines.resolve import Resolver

    config = configure(get_build("10.2+rfc-v2"), parse_args(f"-M pc-q35-10.2 {SPLIT}".split()))
    decision = decide(inputs_from(Resolver(config)), caps(shipped("linux-7.0")))
    source = source_from(config, decision.state, "power-on", decision)
    assert source.decision is decision and source.state is R
    assert source.state_origin == "power-on" and source.kernel_irqchip == "split"
    assert source.ioapic is not None
    assert (source.ioapic.type, source.ioapic.version) == ("ioapic", 0x20)
    # -global ioapic.version=0x11 is read; KVM's own IOAPIC is kvm-ioapic 0x11
    for args, pic in [(f"-M pc-i440fx-10.2 {SPLIT} -global ioapic.version=0x11",
                       ("ioapic", 0x11)), ("-M pc-q35-10.2 -accel kvm", ("kvm-ioapic", 0x11))]:
        got = source_from(configure(get_build("10.2"), parse_args(args.split())), Q, "x")
        assert got.ioapic is not None and (got.ioapic.type, got.ioapic.version) == pic
    # microvm is no PC: no IOAPIC the rules compare
    microvm = source_from(configure(get_build("10.2"), parse_args(
        f"-M microvm {SPLIT}".split())), Q, "x")
    assert microvm.ioapic is None and microvm.decision is None
    tcg = source_from(configure(get_build("10.2"), parse_args(
        ["-M", "pc-q35-10.2", "-accel", "tcg"])), None, "x")
    assert tcg.kernel_irqchip is None


def test_target_of_takes_the_kernel_profile_and_names_the_host() -> None:
    from machines.kernels import caps
    from machines.preflight import target_of

    for spec, kernel, release in [("linux-6.12/10.2", "linux-6.12", "6.12.0"),
                                  ("linux-7.0/10.2+opt-in", "linux-7.0", None)]:
        target = target_of(from_spec(spec))
        profile = shipped(kernel)
        assert target.caps == caps(profile)  # name, both flags and /dev/kvm's own bits
        assert target.caps.system == profile.x2apic_api.system is not None
        assert target.build.name == spec.split("/")[1]
        assert target.where == f" on {spec}"
        assert target.kernel == f"kernel {kernel} ({profile.kernel_release}) on {spec}"
        if release:
            assert profile.kernel_release == release


# QEMU before 6.0 puts the -machine option, as given, in front of its refusal; these lines are
# what the zoo's QEMU 5.2 printed for each spelling (test_unknown_type_line_is_qemu_5_2s).
SPELLINGS_5_2 = [
    (["-M", "pc-q35-10.0"], "-M pc-q35-10.0: unsupported machine type"),
    (["-machine", "type=pc-q35-10.0"], "-machine type=pc-q35-10.0: unsupported machine type"),
    (["-machine", "pc-q35-10.0,dump-guest-core=on"],
     "-machine pc-q35-10.0,dump-guest-core=on: unsupported machine type"),
    (["-machine", "dump-guest-core=on,type=pc-q35-10.0"],
     "-machine dump-guest-core=on,type=pc-q35-10.0: unsupported machine type"),
    # an alias, or no -machine at all: the destination is started with the pinned type
    (["-M", "q35"], "-machine pc-q35-10.2: unsupported machine type"),
    ([], "-machine pc-i440fx-10.2: unsupported machine type"),
]


# --dest-args: the destination's own -machine option, quoted whole when it names the type
DEST_SPELLINGS_5_2 = [
    (["-machine", "pc-q35-10.2,x=a b"], "-machine pc-q35-10.2,x=a b: unsupported machine type"),
    (["-machine", "q35,type=pc-q35-10.2"],
     "-machine q35,type=pc-q35-10.2: unsupported machine type"),
]


@pytest.mark.parametrize(("machine", "line"), [
    *DEST_SPELLINGS_5_2,
    # a type that is no machine's (blank): the destination is started with the pinned type
    (["-M", " "], "-machine pc-q35-10.2: unsupported machine type"),
])
def test_unknown_type_quotes_the_dest_args_option_as_qemu_5_2_does(machine: list[str],
                                                                   line: str) -> None:
    config = configure(get_build("10.2"), parse_args(["-M", "pc-q35-10.2", "-accel", "kvm"]))
    d = judge(source_from(config, Q, "test"), from_spec("linux-7.0/5.2"),
              parse_args([*machine, "-accel", "kvm"]))
    assert codes(d) == ["machine-type-unknown"]
    assert d.reasons[0].message.endswith(f'; it refuses to start: "{line}"')


@pytest.mark.parametrize(("machine", "line"), SPELLINGS_5_2)
def test_unknown_type_quotes_the_destination_option_as_qemu_5_2_does(machine: list[str],
                                                                     line: str) -> None:
    config = configure(get_build("10.2"), parse_args([*machine, "-accel", "kvm"]))
    source = source_from(config, Q, "test")
    d = judge(source, from_spec("linux-7.0/5.2"))
    unknown = d.reasons[codes(d).index("machine-type-unknown")]
    assert unknown.message.endswith(f'; it refuses to start: "{line}"')
    # --dest-args are the destination's own option
    args = parse_args(["-machine", "pc-q35-10.2,kernel-irqchip=split", "-accel", "kvm"])
    d = judge(source, from_spec("linux-7.0/5.2"), args)
    assert d.reasons[codes(d).index("machine-type-unknown")].message.endswith(
        f'"-machine {source.machine}: unsupported machine type"'
        if source.machine != "pc-q35-10.2" else
        '"-machine pc-q35-10.2,kernel-irqchip=split: unsupported machine type"')


def test_a_vm_without_machine_option_to_a_qemu_without_its_default_type() -> None:
    """No -machine: QEMU 10.2's default pc-i440fx-10.2, which 10.0.2 does not register (the
    judge raised IndexError here)."""
    source = source_from(configure(get_build("10.2"), parse_args(["-accel", "kvm"])), Q, "t")
    d = judge(source, from_spec("linux-7.0/10.0.2"))
    assert codes(d) == ["machine-type-unknown"]
    assert d.reasons[0].message.endswith(
        '; it refuses to start: "unsupported machine type: "pc-i440fx-10.2""')


@pytest.mark.qemu
@pytest.mark.parametrize(("machine", "line"), SPELLINGS_5_2 + DEST_SPELLINGS_5_2)
def test_unknown_type_line_is_qemu_5_2s(machine: list[str], line: str) -> None:
    """The zoo's real QEMU 5.2, started as the destination would be, prints the line."""
    from conftest import zoo_command

    command = zoo_command("5.2")
    dest = machine if machine and "q35" not in machine else \
        ["-machine", "pc-q35-10.2" if machine else "pc-i440fx-10.2"]
    done = subprocess.run([*command.argv, *dest, "-accel", "tcg", "-nodefaults", "-display",
                           "none", "-S"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"qemu-system-x86_64: {line}"


def test_destination_options_pin_the_type_and_leave_the_policy_to_the_stream() -> None:
    from machines.options import AccelOption, GlobalOption
    from machines.preflight import destination_options

    args = ("-M q35,kernel-irqchip=split -accel kvm,seoib-policy=respected "
            "-global kvm-accel.seoib-policy=respected -global ioapic.version=0x20 "
            "-global kvm-accel.kernel-irqchip=split -loadvm snap")
    config = configure(get_build("10.2+opt-in"), parse_args(args.split()))
    source = source_from(config, R, "test")
    opts = destination_options(source, None)
    assert opts.machine == (("type", "pc-q35-10.2"), ("kernel-irqchip", "split"))
    # the accelerator keeps its other properties and the text it was given (for messages)
    assert opts.accels == (AccelOption("kvm", (), "-accel kvm,seoib-policy=respected"),)
    assert opts.globals == (
        GlobalOption("ioapic", "version", "0x20", "ioapic.version=0x20"),
        GlobalOption("kvm-accel", "kernel-irqchip", "split", "kvm-accel.kernel-irqchip=split"))
    assert (opts.incoming, opts.loadvm) == ("defer", None)
    # --dest-args replace the source's configuration, the type is pinned all the same
    opts = destination_options(source, parse_args(["-M", "pc", "-accel", "kvm"]))
    assert dict(opts.machine)["type"] == "pc-q35-10.2" and opts.incoming == "defer"
    assert opts.accels == (AccelOption("kvm", (), "-accel kvm"),) and opts.globals == ()


def test_judge_target_words_a_generic_destination() -> None:
    """A fleet's host class has no name and no kernel release: the messages stay generic."""
    from machines.preflight import Target, judge_target, target_static

    source = source_from(configure(get_build("10.2+opt-in"), parse_args(
        f"-M pc-q35-10.2 {SPLIT},seoib-policy=respected".split())), R, "test")
    old = Target(get_build("10.2+opt-in"), caps(shipped("linux-6.12")))
    assert [r.message for r in judge_target(source, old)] == [
        "the VM's SEOIB state is RESPECTED, which needs KVM_X2APIC_API "
        "ENABLE_SUPPRESS_EOI_BROADCAST; the destination kernel lacks it"]
    static = target_static(source, get_build("10.0.2"))
    assert static.final and static.irqchip is None and static.after == ()
    assert [r.message for r in static.before] == [
        "QEMU 10.0.2 does not know pc-q35-10.2; its closest is pc-q35-10.0; it refuses to start: "
        "\"unsupported machine type: \"pc-q35-10.2\"\""]


def test_target_static_final_cases_stop_every_other_rule() -> None:
    """An unknown type or a refused configuration is all a destination gets: no SEOIB, IOAPIC
    or drift reason follows (the QEMU never starts, test_rfc_oracle / test_migration_oracle)."""
    from machines.preflight import Static, Target, judge_target, target_static

    rfc = configure(get_build("10.2+rfc-v2"), parse_args(f"-M pc-q35-10.2 {SPLIT}".split()))
    source = source_from(rfc, R, "test")  # its stream carries x86-seoib-state
    unknown = target_static(source, get_build("10.0.2"))
    assert unknown.final is True and unknown.after == () and unknown.irqchip is None
    assert [r.code for r in unknown.before] == ["machine-type-unknown"]
    assert [r.code for r in judge_target(source, Target(get_build("10.0.2"),
                                                        caps(shipped("linux-7.0"))))] == \
        ["machine-type-unknown"]
    bad = parse_args(f"{SPLIT} -global ioapic.version=0x13".split())
    refused = target_static(source, get_build("10.2"), dest_args=bad)
    assert refused.final is True and refused.after == () and refused.irqchip is None
    assert [r.code for r in refused.before] == ["destination-config-invalid"]
    assert [r.code for r in judge_target(source, Target(get_build("10.2"),
                                                        caps(shipped("linux-6.12"))), bad)] == \
        ["destination-config-invalid"]
    normal = target_static(source, get_build("10.2+rfc-v2"))
    assert normal == Static((), "split", (), False) and normal.final is False
