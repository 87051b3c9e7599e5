"""The probe: what it reports on this machine, and that it never leaks."""

from __future__ import annotations

import errno
import os

import pytest

from kvmglue._cdefs import IOCTLS, KVM_CAP_X2APIC_API, X2APIC_API_SEOIB
from kvmglue.conformance import CASES
from kvmglue.errors import KvmError, KvmUnavailable, KvmUnsupported, ioctl_error
from kvmglue.faults import OPEN, Fault, FaultyOps
from kvmglue.kvm import LIBC_OPS, Kvm, KvmOps
from kvmglue.probe import probe, probe_device
from kvmglue.profile import KernelProfile
from kvmglue.sim import SimKernel

# case id: (errno, LVR bit 24 at each read), on a kernel with the SEOIB flags
WITH_SEOIB = {
    "split-quirk": (None, (False, True)),
    "split-enable": (None, (True,)),
    "split-disable": (None, (False,)),
    "kernel-irqchip-quirk": (None, (False,)),
    "kernel-irqchip-disable": (None, (False,)),
    "split-no-x2apic": (None, (False,)),
    "disable-after-cpuid": (None, (True, True, False)),
    "enable-without-split": ("EINVAL", ()),
    "enable-with-disable": ("EINVAL", (True,)),
    "enable-then-disable": (None, (False,)),
    "disable-then-zero": (None, (False,)),
}
# ...and on one without them (bits 2-3 are EINVAL; every VM keeps the quirk)
WITHOUT_SEOIB = {
    "split-quirk": (None, (False, True)),
    "split-enable": ("EINVAL", (True,)),
    "split-disable": ("EINVAL", (True,)),
    "kernel-irqchip-quirk": (None, (False,)),
    "kernel-irqchip-disable": ("EINVAL", (False,)),
    "split-no-x2apic": (None, (False,)),
    "disable-after-cpuid": ("EINVAL", (True, True, True)),
    "enable-without-split": ("EINVAL", ()),
    "enable-with-disable": ("EINVAL", (True,)),
    "enable-then-disable": ("EINVAL", (True,)),
    "disable-then-zero": ("EINVAL", (True,)),
}


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def table(profile: KernelProfile) -> dict[str, tuple[str | None, tuple[bool, ...]]]:
    return {c.case: (c.outcome.errno, c.outcome.lvr_reads) for c in profile.conformance}


def check_profile(profile: KernelProfile, seoib: bool) -> None:
    if seoib:
        assert (profile.x2apic_api.system, profile.x2apic_api.vm,
                profile.x2apic_api.vm_split_irqchip) == (0xF, 0xB, 0xF)
        assert table(profile) == WITH_SEOIB
    else:
        assert (profile.x2apic_api.system, profile.x2apic_api.vm,
                profile.x2apic_api.vm_split_irqchip) == (0x3, 0x3, 0x3)
        assert table(profile) == WITHOUT_SEOIB
    assert profile.has_enable_flag is seoib
    assert profile.has_disable_flag is seoib
    assert profile.supports.x2apic_api
    assert profile.supports.split_irqchip
    assert profile.kvm_api_version == 12


def test_expected_tables_cover_every_probe_case() -> None:
    assert list(WITH_SEOIB) == [case.id for case in CASES]
    assert list(WITHOUT_SEOIB) == [case.id for case in CASES]


@pytest.mark.parametrize("seoib", [True, False])
def test_probe_on_simulated_kernel(seoib: bool) -> None:
    kernel = SimKernel("6.18.44-sim", seoib=seoib)
    profile = probe_device(ops=kernel, origin="simulated")
    check_profile(profile, seoib)
    assert profile.kernel_release == "6.18.44-sim"
    assert not kernel.open_fds


@pytest.mark.kvm
def test_probe_on_this_machine(real_kvm: Kvm) -> None:
    seoib = bool(real_kvm.check_extension(KVM_CAP_X2APIC_API) & X2APIC_API_SEOIB)
    profile = probe(real_kvm)
    assert profile.name == "host"
    assert profile.origin == "probe"
    assert profile.kernel_release == os.uname().release
    check_profile(profile, seoib)


@pytest.mark.kvm
def test_thousand_probes_leave_no_descriptor(real_kvm: Kvm) -> None:
    probe_device()  # let libc and cffi settle whatever they open once
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(1000):
        probe_device()
    assert sorted(os.listdir("/proc/self/fd")) == before


@pytest.mark.kvm
@pytest.mark.parametrize("fault", [Fault(OPEN, errno.EACCES), Fault(OPEN, errno.ENOENT),
                                   Fault("KVM_GET_API_VERSION", errno.ENOTTY),
                                   Fault("KVM_CREATE_VM", errno.EINVAL),
                                   Fault("KVM_CREATE_VCPU", errno.ENOTTY, nth=2)],
                         ids=str)
def test_thousand_failing_probes_leave_no_descriptor(real_kvm: Kvm, fault: Fault) -> None:
    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(1000):
        with pytest.raises(KvmError):
            probe_device(ops=FaultyOps(LIBC_OPS, [fault]))
    assert sorted(os.listdir("/proc/self/fd")) == before


def _calls_of_a_probe(inner: KvmOps) -> dict[str, int]:
    counting = FaultyOps(inner)
    probe_device(ops=counting)
    return dict(counting.calls)


def _expect_typed_failure_or_profile(faulty: FaultyOps, code: int) -> None:
    """A fault gives its typed error; or, when it is an answer, a profile."""
    try:
        probe_device(ops=faulty)
    except KvmUnavailable as err:
        assert err.errno == code
    except KvmError as err:
        assert err.errno == code
        assert type(err) is type(ioctl_error(code, err.operation))
    else:
        # Only refusals a conformance step may meet become part of a profile.
        assert code == errno.EINVAL
    assert faulty.injected == 1
    assert not faulty.open_fds


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTTY, errno.ENOMEM])
def test_every_failing_call_of_a_probe_is_typed_and_leak_free_on_sim(code: int) -> None:
    for call, count in _calls_of_a_probe(SimKernel()).items():
        for nth in range(1, count + 1):
            kernel = SimKernel()
            _expect_typed_failure_or_profile(FaultyOps(kernel, [Fault(call, code, nth)]), code)
            assert not kernel.open_fds, (call, nth)


@pytest.mark.kvm
@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOTTY])
@pytest.mark.parametrize("call", sorted(IOCTLS))
def test_failing_ioctl_is_typed_and_leak_free_on_real(real_kvm: Kvm, call: str,
                                                      code: int) -> None:
    counts = _calls_of_a_probe(LIBC_OPS)
    if call not in counts:
        pytest.skip(f"the probe does not call {call}")
    before = sorted(os.listdir("/proc/self/fd"))
    # The first and the last call of its kind: set-up and the middle of a case.
    for nth in sorted({1, counts[call]}):
        _expect_typed_failure_or_profile(FaultyOps(LIBC_OPS, [Fault(call, code, nth)]), code)
    assert sorted(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize("call", ["KVM_GET_API_VERSION", "KVM_CHECK_EXTENSION",
                                  "KVM_CREATE_VM"])
def test_set_up_calls_failing_with_einval_raise(call: str) -> None:
    with pytest.raises(KvmError) as failed:
        probe_device(ops=FaultyOps(SimKernel(), [Fault(call, errno.EINVAL)]))
    assert failed.value.operation == call


def test_enotty_anywhere_raises() -> None:
    with pytest.raises(KvmUnsupported):
        probe_device(ops=FaultyOps(SimKernel(), [Fault("KVM_GET_LAPIC", errno.ENOTTY)]))


def test_einval_in_a_case_is_recorded() -> None:
    profile = probe_device(ops=FaultyOps(SimKernel(), [Fault("KVM_SET_LAPIC", errno.EINVAL)]))
    case = profile.case("disable-after-cpuid")
    assert case is not None
    assert case.outcome.errno == "EINVAL"
    assert case.outcome.results[6] == "EINVAL"
