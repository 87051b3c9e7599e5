"""Kernel selection and the per-boot cache of host probes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kvmglue.profile import shipped
from machines import kernels


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: Any) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("MACHINES_PROBE_CACHE", raising=False)
    return tmp_path


def _count_probes(monkeypatch: Any) -> list[str]:
    calls: list[str] = []

    def fake(device: str) -> Any:
        calls.append(device)
        return shipped("linux-7.0")._replace(name="host", origin="probe")

    monkeypatch.setattr("kvmglue.probe.probe_device", fake)
    return calls


def test_host_probe_is_kept_for_the_boot(cache: Path, monkeypatch: Any) -> None:
    calls = _count_probes(monkeypatch)
    first = kernels.probe_host("/dev/kvm")
    second = kernels.probe_host("/dev/kvm")
    assert calls == ["/dev/kvm"]
    assert first == second and second.name == "host"
    path = kernels.cache_path("/dev/kvm")
    assert path is not None and Path(path).parent == cache / "machines" and Path(path).is_file()


def test_a_new_boot_probes_again(cache: Path, monkeypatch: Any) -> None:
    calls = _count_probes(monkeypatch)
    kernels.probe_host("/dev/kvm")
    import builtins

    real_open = builtins.open

    def other_boot_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if str(file) == "/proc/sys/kernel/random/boot_id":
            import io

            return io.StringIO("00000000-0000-0000-0000-000000000000\n")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", other_boot_open)
    kernels.probe_host("/dev/kvm")
    assert len(calls) == 2


def test_cache_off_and_unreadable_cache(cache: Path, monkeypatch: Any) -> None:
    calls = _count_probes(monkeypatch)
    monkeypatch.setenv("MACHINES_PROBE_CACHE", "0")
    kernels.probe_host("/dev/kvm")
    kernels.probe_host("/dev/kvm")
    assert len(calls) == 2 and not (cache / "machines").exists()
    monkeypatch.delenv("MACHINES_PROBE_CACHE")
    kernels.probe_host("/dev/kvm")
    path = kernels.cache_path("/dev/kvm")
    assert path is not None
    Path(path).write_text("{ not json")
    assert kernels.probe_host("/dev/kvm").name == "host"
    assert len(calls) == 4  # probed again and replaced the broken entry
    assert kernels.probe_host("/dev/kvm").name == "host" and len(calls) == 4


def test_unwritable_cache_does_not_fail(cache: Path, monkeypatch: Any) -> None:
    calls = _count_probes(monkeypatch)
    (cache / "machines").write_text("a file where the directory should be")
    assert kernels.probe_host("/dev/kvm").name == "host"
    assert kernels.probe_host("/dev/kvm").name == "host"
    assert len(calls) == 2
