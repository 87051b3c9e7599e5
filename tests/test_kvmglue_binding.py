"""The handles over /dev/kvm: calls, errors, and descriptors closed on every path.

Tests run on the simulated kernel everywhere, and again on the real
/dev/kvm (``kvm`` marker) through the same ``kvm`` fixture.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest

from kvmglue import _cdefs
from kvmglue._cdefs import KVM_CAP_X2APIC_API, X2ApicApi
from kvmglue.errors import (
    KvmError,
    KvmExists,
    KvmInvalidArgument,
    KvmUnavailable,
    KvmUnsupported,
    ioctl_error,
)
from kvmglue.faults import OPEN, Fault, FaultyOps
from kvmglue.kvm import LIBC_OPS, CpuidEntry, Kvm, KvmOps, Vm, open_kvm, x2apic_cpuid
from kvmglue.sim import SimKernel


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(params=["sim", pytest.param("real", marks=pytest.mark.kvm)])
def ops(request: pytest.FixtureRequest) -> KvmOps:
    """The ops of the simulated kernel, then of the real one."""
    if request.param == "real":
        request.getfixturevalue("real_kvm")  # skips (or fails) without /dev/kvm
        return LIBC_OPS
    return SimKernel("6.18.44")


@pytest.fixture
def kvm(ops: KvmOps) -> Iterator[Kvm]:
    with open_kvm(ops=ops) as handle:
        yield handle


def test_ioctl_numbers_are_the_documented_ones() -> None:
    assert _cdefs.IOCTLS == {
        "KVM_GET_API_VERSION": 0xAE00,
        "KVM_CREATE_VM": 0xAE01,
        "KVM_CHECK_EXTENSION": 0xAE03,
        "KVM_CREATE_VCPU": 0xAE41,
        "KVM_CREATE_IRQCHIP": 0xAE60,
        "KVM_ENABLE_CAP": 0x4068AEA3,
        "KVM_GET_LAPIC": 0x8400AE8E,
        "KVM_SET_LAPIC": 0x4400AE8F,
        "KVM_SET_CPUID2": 0x4008AE90,
    }


def test_x2apic_api_flags() -> None:
    assert [int(flag) for flag in X2ApicApi] == [0x1, 0x2, 0x4, 0x8]
    assert _cdefs.APIC_LVR == 0x30
    assert _cdefs.APIC_LVR_DIRECTED_EOI == 1 << 24


def test_system_calls(kvm: Kvm) -> None:
    assert kvm.api_version() == 12
    assert kvm.check_extension(KVM_CAP_X2APIC_API) & 0x3 == 0x3
    assert kvm.kernel_release()


def test_vm_and_vcpu(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        vm.enable_split_irqchip()
        assert vm.x2apic_api() & X2ApicApi.USE_32BIT_IDS
        with vm.create_vcpu(0) as vcpu:
            regs = vcpu.get_lapic()
            assert len(regs) == 1024
            assert vcpu.lvr() & 0xFF == 0x14  # the LAPIC version KVM emulates
            assert not vcpu.directed_eoi()  # no x2APIC in CPUID yet
            vcpu.set_cpuid2(x2apic_cpuid())
            assert vcpu.directed_eoi()
            vcpu.set_lapic(regs)
            assert vcpu.directed_eoi()  # recomputed over what we wrote back


def test_cpuid_table_with_several_entries(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        vm.enable_split_irqchip()
        with vm.create_vcpu() as vcpu:
            vcpu.set_cpuid2([CpuidEntry(0, eax=1), CpuidEntry(1, ecx=1 << 21)])
            assert vcpu.directed_eoi()
            # An empty table drops x2APIC, but KVM recomputes the LVR on
            # KVM_SET_CPUID2 only when the table has a leaf 1...
            vcpu.set_cpuid2([])
            assert vcpu.directed_eoi()
            # ...so the bit goes at the next recomputation.
            vcpu.set_lapic(vcpu.get_lapic())
            assert not vcpu.directed_eoi()


def test_refusals_are_typed(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        with pytest.raises(KvmInvalidArgument) as refused:
            vm.enable_x2apic_api(0x10)
        assert refused.value.errno == errno.EINVAL
        assert refused.value.errno_name == "EINVAL"
        assert refused.value.operation == "KVM_ENABLE_CAP"
        assert str(refused.value) == "KVM_ENABLE_CAP: Invalid argument (EINVAL)"
        vm.create_irqchip()
        with pytest.raises(KvmExists):
            vm.enable_split_irqchip()
        with vm.create_vcpu(0), pytest.raises(KvmExists):
            vm.create_vcpu(0)


def test_no_lapic_without_irqchip(kvm: Kvm) -> None:
    with kvm.create_vm() as vm, vm.create_vcpu() as vcpu, pytest.raises(KvmInvalidArgument):
        vcpu.get_lapic()


def test_argument_checks_happen_before_the_kernel(kvm: Kvm) -> None:
    with kvm.create_vm() as vm:
        with pytest.raises(ValueError, match="at most 4"):
            vm.enable_cap(KVM_CAP_X2APIC_API, 0, 0, 0, 0, 0)
        vm.create_irqchip()
        with vm.create_vcpu() as vcpu, pytest.raises(ValueError, match="1024 bytes"):
            vcpu.set_lapic(b"\0" * 10)


def test_close_is_idempotent_and_final(kvm: Kvm) -> None:
    vm = kvm.create_vm()
    assert not vm.closed
    vm.close()
    vm.close()
    assert vm.closed
    assert "closed" in repr(vm)
    with pytest.raises(ValueError, match="closed VM"):
        vm.check_extension(KVM_CAP_X2APIC_API)


def test_every_handle_closes_its_descriptor_on_sim() -> None:
    kernel = SimKernel()
    with open_kvm(ops=kernel) as kvm, kvm.create_vm() as vm:
        vm.enable_split_irqchip()
        with vm.create_vcpu():
            assert len(kernel.open_fds) == 3
        assert len(kernel.open_fds) == 2
    assert not kernel.open_fds


@pytest.mark.kvm
def test_every_handle_closes_its_descriptor_on_real(real_kvm: Kvm) -> None:
    before = fd_count()
    with open_kvm() as kvm, kvm.create_vm() as vm, vm.create_vcpu():
        assert fd_count() == before + 3
    assert fd_count() == before


@pytest.mark.parametrize("code", [errno.ENOENT, errno.EACCES, errno.EPERM])
def test_open_failure_is_unavailable(ops: KvmOps, code: int) -> None:
    faulty = FaultyOps(ops, [Fault(OPEN, code)])
    with pytest.raises(KvmUnavailable) as unavailable:
        open_kvm(ops=faulty)
    assert unavailable.value.errno == code
    assert unavailable.value.path == "/dev/kvm"
    assert str(unavailable.value).startswith("cannot open /dev/kvm: ")
    assert not faulty.open_fds


def test_missing_device_is_unavailable(ops: KvmOps, tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "kvm")
    with pytest.raises(KvmUnavailable) as unavailable:
        open_kvm(missing, ops=ops)
    assert unavailable.value.errno == errno.ENOENT
    assert "no such file" in str(unavailable.value)


def test_not_kvm_is_refused_and_closed() -> None:
    before = fd_count()
    with pytest.raises(KvmUnsupported) as refused:
        open_kvm("/dev/null")
    assert refused.value.operation == "KVM_GET_API_VERSION"
    assert fd_count() == before


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTTY, errno.EIO])
def test_constructor_failing_half_way_closes_the_device(ops: KvmOps, code: int) -> None:
    faulty = FaultyOps(ops, [Fault("KVM_GET_API_VERSION", code)])
    before = fd_count()
    with pytest.raises(KvmError) as failed:
        open_kvm(ops=faulty)
    assert type(failed.value) is type(ioctl_error(code, "x"))
    assert failed.value.errno == code
    assert faulty.calls[OPEN] == 1
    assert not faulty.open_fds
    assert fd_count() == before


def test_child_handle_failing_to_wrap_closes_its_descriptor(
        kvm: Kvm, monkeypatch: pytest.MonkeyPatch) -> None:
    faulty = FaultyOps(kvm._ops)
    with open_kvm(ops=faulty) as system:
        def broken(self: Vm, *args: object) -> None:
            raise RuntimeError("wrapping failed")

        monkeypatch.setattr(Vm, "__init__", broken)
        with pytest.raises(RuntimeError):
            system.create_vm()
        monkeypatch.undo()
        assert faulty.open_fds == {system.fd}


def test_nth_call_fault(kvm: Kvm) -> None:
    faulty = FaultyOps(kvm._ops, [Fault("KVM_CHECK_EXTENSION", errno.ENOTTY, nth=2)])
    with open_kvm(ops=faulty) as system:
        system.check_extension(KVM_CAP_X2APIC_API)
        with pytest.raises(KvmUnsupported):
            system.check_extension(KVM_CAP_X2APIC_API)
        system.check_extension(KVM_CAP_X2APIC_API)
    assert faulty.injected == 1
    assert faulty.calls["KVM_CHECK_EXTENSION"] == 3


def test_errors_name_unknown_errnos() -> None:
    err = ioctl_error(4000, "KVM_CREATE_VM")
    assert type(err) is KvmError
    assert err.errno_name == "E4000"
