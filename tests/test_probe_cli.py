"""``machines probe``: output for people, JSON, -o FILE, and one-line failures."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kvmglue._cdefs import KVM_CAP_X2APIC_API, X2APIC_API_SEOIB
from kvmglue.faults import OPEN, Fault, FaultyOps
from kvmglue.kernels import generate
from kvmglue.kvm import LIBC_OPS, Kvm
from kvmglue.profile import KernelProfile, load
from kvmglue.sim import SimKernel
from machines.errors import EnvironmentUnavailable, MachinesError, UsageError
from machines.probe import main

ROOT = Path(__file__).resolve().parents[1]

# What a CLI does with main(): one line on stderr and the error's exit code.
# MACHINES_TEST_UID drops root to that user first (the interpreter itself may
# live where that user cannot reach, so it must start as root).
CLI = """
import os
import sys
from machines.errors import MachinesError
from machines.probe import main
# Modules imported lazily later must be loaded before root is dropped: this
# interpreter may live where the test user cannot read (/root/.pyenv).
import shutil, tempfile  # noqa: E401,F401
uid = os.environ.get("MACHINES_TEST_UID")
if uid:
    os.setgroups([])
    os.setgid(int(uid))
    os.setuid(int(uid))
try:
    code = main(sys.argv[1:])
except MachinesError as err:
    print(err, file=sys.stderr)
    code = err.exit_code
sys.exit(code)
"""


def run_cli(*args: str, uid: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(ROOT), os.environ.get("PYTHONPATH")]))}
    if uid is not None:
        env["MACHINES_TEST_UID"] = str(uid)
    return subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def one_line_failure(err: MachinesError) -> str:
    text = str(err)
    assert "\n" not in text
    assert text.startswith("machines probe: ")
    return text


def test_summary_of_a_simulated_kernel(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", "linux-7.0"]) == 0
    out = capsys.readouterr().out
    assert "kernel       7.0.0 (KVM API 12; simulated kernel linux-7.0)" in out
    assert "/dev/kvm 0xf   fresh VM 0xb   VM with split irqchip 0xf" in out
    assert "ENABLE_SUPPRESS_EOI_BROADCAST: yes" in out
    rows = {line.split()[0]: line.split()[1:3] for line in out.splitlines()
            if line.startswith("  ") and not line.startswith("  case")}
    assert rows["split-enable"] == ["-", "set"]
    assert rows["split-disable"] == ["-", "clear"]
    assert rows["disable-after-cpuid"] == ["-", "set,set,clear"]
    assert rows["enable-without-split"] == ["EINVAL", "-"]


def test_summary_of_a_kernel_without_seoib(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", "linux-6.12"]) == 0
    out = capsys.readouterr().out
    assert "/dev/kvm 0x3   fresh VM 0x3   VM with split irqchip 0x3" in out
    assert "ENABLE_SUPPRESS_EOI_BROADCAST: no" in out


@pytest.mark.kvm
def test_summary_of_this_machine(real_kvm: Kvm, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert f"kernel       {os.uname().release} (KVM API 12; probed /dev/kvm)" in out
    if real_kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB:
        assert "/dev/kvm 0xf   fresh VM 0xb   VM with split irqchip 0xf" in out
    for case in ("split-quirk", "kernel-irqchip-disable", "disable-then-zero"):
        assert f"  {case} " in out


@pytest.mark.kvm
def test_json_of_this_machine(real_kvm: Kvm, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json"]) == 0
    profile = KernelProfile.from_json(json.loads(capsys.readouterr().out))
    assert profile.origin == "probe"
    assert profile.kernel_release == os.uname().release


@pytest.mark.parametrize("name", ["linux-6.12", "linux-6.18.y-seoib", "linux-7.0"])
def test_json_of_a_simulated_kernel(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--simulate", name, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["origin"] == "simulated"
    assert doc == {**generate(name).to_json(), "origin": "simulated"}


def test_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "host.json"
    assert main(["--simulate", "linux-7.0", "-o", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert load(target) == generate("linux-7.0", origin="simulated")
    assert [p.name for p in tmp_path.iterdir()] == ["host.json"]


def test_output_file_with_json_also_prints(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "host.json"
    assert main(["--simulate", "linux-7.0", "--json", "-o", str(target)]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(target.read_text("utf-8"))


def test_failed_probe_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "host.json"
    target.write_text("previous\n", encoding="utf-8")
    kernel = SimKernel()
    faulty = FaultyOps(kernel, [Fault("KVM_CREATE_VCPU", errno.ENOMEM, nth=3)])
    with pytest.raises(EnvironmentUnavailable) as failed:
        main(["--device", kernel.device, "-o", str(target)], ops=faulty)
    assert "KVM_CREATE_VCPU: Cannot allocate memory (ENOMEM)" in one_line_failure(failed.value)
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["host.json"]
    assert not kernel.open_fds


def test_failed_write_keeps_the_previous_file(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "host.json"
    target.write_text("previous\n", encoding="utf-8")

    def full_disk(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(UsageError, match="cannot write"):
        main(["--simulate", "linux-7.0", "-o", str(target)])
    assert target.read_text(encoding="utf-8") == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["host.json"]


def test_absent_device(tmp_path: Path) -> None:
    missing = tmp_path / "kvm"
    with pytest.raises(EnvironmentUnavailable) as failed:
        main(["--device", str(missing)])
    assert failed.value.exit_code == 3
    assert one_line_failure(failed.value) == \
        f"machines probe: cannot open {missing}: no such file (is the kvm module loaded?)"


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.ENOENT])
def test_refused_device(code: int) -> None:
    with pytest.raises(EnvironmentUnavailable) as failed:
        main([], ops=FaultyOps(LIBC_OPS, [Fault(OPEN, code)]))
    assert "cannot open /dev/kvm: " in one_line_failure(failed.value)


def test_not_a_kvm_device() -> None:
    with pytest.raises(EnvironmentUnavailable) as failed:
        main(["--device", "/dev/null"])
    assert one_line_failure(failed.value) == ("machines probe: /dev/null: KVM_GET_API_VERSION: "
                                              "Inappropriate ioctl for device (ENOTTY)")


def test_absent_device_as_a_command(tmp_path: Path) -> None:
    done = run_cli("--device", str(tmp_path / "kvm"))
    assert done.returncode == 3
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"machines probe: cannot open {tmp_path / 'kvm'}: ")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the probe as another user")
def test_permission_denied_as_a_command() -> None:
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm to be refused")
    if os.stat("/dev/kvm").st_mode & 0o006:
        pytest.skip("/dev/kvm is open to every user here")
    done = run_cli(uid=65534)
    assert done.returncode == 3
    assert done.stderr == ("machines probe: cannot open /dev/kvm: permission denied "
                           "(is this user in the kvm group?)\n")


def test_usage_errors() -> None:
    with pytest.raises(UsageError, match=r"did you mean 'linux-7\.0'"):
        main(["--simulate", "linux-7"])
    with pytest.raises(UsageError, match="not allowed with argument"):
        main(["--simulate", "linux-7.0", "--device", "/dev/kvm"])
    with pytest.raises(UsageError, match="argument --qemu: expected one argument"):
        main(["--qemu"])
    with pytest.raises(UsageError, match="unrecognized arguments: --bogus") as failed:
        main(["--bogus"])
    assert failed.value.exit_code == 2
    assert str(failed.value).startswith("machines probe: ")


def test_help_names_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: machines probe")
    assert "linux-6.18.y-seoib" in out


# Ctrl-C while 'probe --qemu' talks to QEMU: at each stage of the run, the one
# line "machines: interrupted", exit 130, no QEMU left and no socket directory.
STAGES = ["-machine help", "machine types and QOM properties", "devices as created on",
          "(3/", "(12/"]


@pytest.mark.qemu
@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_during_probe_qemu_leaves_nothing(stage: str, qemu_binary: str,
                                                 tmp_path: Path) -> None:
    import signal
    import time

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "host.json"
    env = dict(os.environ, TMPDIR=str(scratch))
    child = subprocess.Popen(
        [sys.executable, "-m", "machines", "probe", "--qemu", qemu_binary, "-o", str(out),
         "--progress", "--simulate", "linux-7.0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL,
        # pytest ignores nothing, but a parent may: give the child the default SIGINT.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert child.stderr is not None
    seen = []
    try:
        for raw in child.stderr:
            line = raw.decode()
            seen.append(line)
            if stage in line:
                time.sleep(0.15)  # into the step, not at its edge
                child.send_signal(signal.SIGINT)
                break
        else:
            pytest.fail(f"the run ended before '{stage}': {seen}")
        rest = child.stderr.read().decode()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, rest
    after = [line for line in rest.splitlines() if not line.startswith("machines: ") or
             line == "machines: interrupted"]
    assert after == ["machines: interrupted"], rest  # no traceback, no "Loop ... is closed"
    assert rest.endswith("machines: interrupted\n"), rest
    assert list(scratch.iterdir()) == []  # no /tmp/machines-qmp-* left
    time.sleep(0.2)
    from procs import processes_mentioning

    assert processes_mentioning(str(scratch)) == []
    assert not out.exists()
