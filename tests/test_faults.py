"""Faults: a QEMU that is missing or misbehaves, and runs interrupted mid-write.

Every failure is one line on stderr with its documented exit code; the QEMU
child is reaped (no zombie, nothing left running), its temporary socket
directory is removed, and an ``-o`` file is either complete or untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import fakeqemu
import pytest
from procs import children, processes_mentioning

from machines.cli import main

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """Where QMP socket directories go during the test (so leftovers can be seen)."""
    where = tmp_path / "tmp"
    where.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(where)
    try:
        yield where
    finally:
        tempfile.tempdir = saved


HANGS = {"help-hangs", "never-connects", "hangs-mid-session"}
HANG_TIMEOUT = 5
EXPECTED = {
    "help-fails": "-machine help' failed: qemu-system-x86_64: could not load PC BIOS",
    "help-hangs": "-machine help' did not finish in {t} s",
    "exits": "exited at once (status 1): -accel tcg: invalid accelerator tcg",
    "never-connects": "did not open its monitor within {t} s",
    "garbage": "QEMU broke off 'query-version'",
    "errors": "query-version",
    "hangs-mid-session": "did not answer 'query-version' within {t} s",
    "wrong-shape": "QEMU sent an unexpected reply to 'query-machines'",
    "type-loop": "is its own ancestor",
}


@pytest.mark.parametrize("mode", fakeqemu.MODES)
def test_misbehaving_qemu_gives_one_line_and_leaves_nothing(
        mode: str, tmp_path: Path, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = fakeqemu.make(tmp_path, mode)
    out = tmp_path / "build.json"
    out.write_text("previous\n")
    # A fake that must hang is given a few seconds; one that must answer (a Python script
    # starting on a busy two-core machine) is given a minute.
    timeout = HANG_TIMEOUT if mode in HANGS else 60
    code = main(["import", "--qemu", binary, "--timeout", str(timeout), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.count("\n") == 1 and err.startswith("machines: "), err
    assert EXPECTED[mode].format(t=timeout) in err
    assert "Traceback" not in err
    assert out.read_text() == "previous\n"  # nothing half-written
    assert processes_mentioning(binary) == []  # killed, whole process group
    assert [c for c in children() if c[1] == "Z"] == []  # and reaped
    assert list(scratch.iterdir()) == []  # the socket directory is gone


def test_missing_qemu(scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "--qemu", "/nonexistent/qemu-system-x86_64"]) == 3
    err = capsys.readouterr().err
    assert err == "machines: QEMU binary '/nonexistent/qemu-system-x86_64' not found\n"


def test_qemu_not_executable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "qemu"
    binary.write_text("not a program")
    assert main(["import", "--qemu", str(binary)]) == 3
    assert capsys.readouterr().err == f"machines: QEMU binary '{binary}': Permission denied\n"


# -- -o is atomic, even when the run is killed ------------------------------

def _big_fleet(directory: Path) -> tuple[str, str]:
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import fleetgen
    finally:
        sys.path.pop(0)
    return fleetgen.write(str(directory), 60_000, 300, seed=3)


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return _big_fleet(tmp_path_factory.mktemp("fleet"))


def _temporaries(directory: Path, name: str) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_write_keeps_the_previous_file(sig: signal.Signals, tmp_path: Path,
                                                   big_fleet: tuple[str, str]) -> None:
    vms, hosts = big_fleet
    out = tmp_path / "answer.jsonl"
    out.write_text("previous answer\n")
    env = {**os.environ, "PYTHONPATH": ROOT}
    # --expand-hosts: the per-host form is long to write, so the run is surely
    # caught mid-write (the class form of this fleet is written in a blink).
    child = subprocess.Popen([sys.executable, "-m", "machines", "preflight", "--fleet", vms,
                              "--hosts", hosts, "--expand-hosts", "-o", str(out)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             # A test run started in the background ('&') ignores
                             # SIGINT, and children inherit that: undo it for this one.
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    # Wait until the temporary holds part of the answer: the run is mid-write.  Stop the
    # child there (SIGSTOP) and look again, so that the signal cannot race the end of the
    # write: a stopped child is still mid-write when the signal is sent.
    def mid_write() -> bool:
        return any(p.stat().st_size > 0 for p in _temporaries(tmp_path, out.name)) and \
            out.read_text() == "previous answer\n"

    while True:
        assert child.poll() is None, "finished before it could be interrupted"
        assert time.monotonic() < deadline
        if mid_write():
            child.send_signal(signal.SIGSTOP)
            if mid_write():
                break
            child.send_signal(signal.SIGCONT)
        time.sleep(0.005)
    child.send_signal(sig)  # a stopped process is still there: no race with its exit
    child.send_signal(signal.SIGCONT)  # SIGINT is delivered once it runs again
    _, err = child.communicate(timeout=60)
    assert out.read_text() == "previous answer\n"
    if sig == signal.SIGINT:
        assert child.returncode == 130
        assert err.decode() == "machines: interrupted\n"
        assert _temporaries(tmp_path, out.name) == []  # cleaned up on the way out
    else:
        assert child.returncode == -signal.SIGKILL
        # Nothing can clean up after SIGKILL: at most a hidden temporary remains.
        assert all(p.name.endswith(".tmp") for p in _temporaries(tmp_path, out.name))


def test_completed_write_replaces_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                           ) -> None:
    out = tmp_path / "matrix.txt"
    out.write_text("previous\n")
    assert main(["matrix", "--family", "q35", "--since", "10.0", "-o", str(out)]) == 0
    assert "pc-q35-10.0" in out.read_text()
    assert _temporaries(tmp_path, out.name) == []


def test_an_endless_object_tree_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer whose every object has a child would walk forever: bounded."""
    import asyncio

    from machines.compat import importer
    from machines.errors import EnvironmentUnavailable
    from machines.qmp import QemuSession

    class Endless:
        async def execute(self, command: str, arguments: dict[str, object] | None = None
                          ) -> object:
            assert command == "qom-list"
            return [{"name": "child", "type": "child<device>"}]

    monkeypatch.setattr(importer, "MAX_OBJECTS", 50)
    with pytest.raises(EnvironmentUnavailable, match="more than 50 objects under /machine"):
        asyncio.run(importer._walk(QemuSession(Endless())))  # type: ignore[arg-type]
