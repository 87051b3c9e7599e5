"""Our hand-written declarations against the system's <linux/kvm.h>.

A small cffi API-mode module is compiled against the header; for each
constant it reports whether the header defines it and its value, and it
reports the header's struct sizes and offsets.  Every number the header has
must equal ours.  The SEOIB flags are newer than many installed headers:
when they are missing the test records that (a ``missing_from_header``
property, and a skip with the reason) instead of failing.  No compiler, or a header that
does not compile, skips too, unless ``MACHINES_REQUIRE_KVM_HEADER=1`` (as .ci/run sets).
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

import pytest
from conftest import missing

from kvmglue import _cdefs

cffi = pytest.importorskip("cffi")

CONSTANTS: dict[str, int] = {
    **_cdefs.IOCTLS,
    "KVM_API_VERSION": _cdefs.KVM_API_VERSION,
    "KVM_CAP_IRQCHIP": _cdefs.KVM_CAP_IRQCHIP,
    "KVM_CAP_SPLIT_IRQCHIP": _cdefs.KVM_CAP_SPLIT_IRQCHIP,
    "KVM_CAP_X2APIC_API": _cdefs.KVM_CAP_X2APIC_API,
    **{f"KVM_X2APIC_API_{flag.name}": int(flag)
       for flag in (_cdefs.X2ApicApi.USE_32BIT_IDS, _cdefs.X2ApicApi.DISABLE_BROADCAST_QUIRK)},
    # The SEOIB flags' header names drop the "_API".
    **{f"KVM_X2APIC_{flag.name}": int(flag)
       for flag in (_cdefs.X2ApicApi.ENABLE_SUPPRESS_EOI_BROADCAST,
                    _cdefs.X2ApicApi.DISABLE_SUPPRESS_EOI_BROADCAST)},
}
# .ci/run sets it (and installs a compiler and the kernel headers): there a compile error is
# a failure, not a skip.
REQUIRE = "MACHINES_REQUIRE_KVM_HEADER"
# Present in every header new enough to build against; the rest may be missing.
OPTIONAL = {"KVM_X2APIC_ENABLE_SUPPRESS_EOI_BROADCAST", "KVM_X2APIC_DISABLE_SUPPRESS_EOI_BROADCAST"}

LAYOUT: dict[str, tuple[str, str | None]] = {
    "size_enable_cap": ("struct kvm_enable_cap", None),
    "off_enable_cap_args": ("struct kvm_enable_cap", "args"),
    "off_enable_cap_pad": ("struct kvm_enable_cap", "pad"),
    "size_cpuid_entry2": ("struct kvm_cpuid_entry2", None),
    "off_cpuid_entry2_ecx": ("struct kvm_cpuid_entry2", "ecx"),
    "off_cpuid_entry2_padding": ("struct kvm_cpuid_entry2", "padding"),
    "size_cpuid2": ("struct kvm_cpuid2", None),
    "off_cpuid2_entries": ("struct kvm_cpuid2", "entries"),
    "size_lapic_state": ("struct kvm_lapic_state", None),
}


def _c_expr(struct: str, field: str | None) -> str:
    return f"sizeof({struct})" if field is None else f"offsetof({struct}, {field})"


def _build(tmp_path: Any) -> Any:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        missing("no C compiler to build the header check", REQUIRE)
    ffi = cffi.FFI()
    cdef = []
    source = ["#include <stddef.h>", "#include <linux/kvm.h>"]
    for name in CONSTANTS:
        cdef.append(f"static const int have_{name}; static const unsigned long long value_{name};")
        source += [f"#ifdef {name}",
                   f"static const int have_{name} = 1;",
                   f"static const unsigned long long value_{name} = {name};",
                   "#else",
                   f"static const int have_{name} = 0;",
                   f"static const unsigned long long value_{name} = 0;",
                   "#endif"]
    for key, (struct, field) in LAYOUT.items():
        cdef.append(f"static const int {key};")
        source.append(f"static const int {key} = {_c_expr(struct, field)};")
    ffi.cdef("\n".join(cdef))
    ffi.set_source("_kvmglue_header_check", "\n".join(source))
    try:
        built = ffi.compile(tmpdir=str(tmp_path), verbose=False)
    except Exception as err:  # cffi raises VerificationError or a distutils error
        missing(f"cannot compile against <linux/kvm.h>: {err}", REQUIRE)
    spec = importlib.util.spec_from_file_location("_kvmglue_header_check", built)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.lib


@pytest.fixture(scope="module")
def header(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _build(tmp_path_factory.mktemp("kvmh"))


@pytest.mark.parametrize("name", sorted(CONSTANTS))
def test_constant_matches_header(header: Any, name: str,
                                 record_property: Any) -> None:
    if not getattr(header, f"have_{name}"):
        assert name in OPTIONAL, f"<linux/kvm.h> does not define {name}"
        record_property("missing_from_header", name)
        pytest.skip(f"this <linux/kvm.h> predates {name} (nothing to compare)")
    assert getattr(header, f"value_{name}") == CONSTANTS[name], name


@pytest.mark.parametrize("key", sorted(LAYOUT))
def test_layout_matches_header(header: Any, key: str) -> None:
    struct, field = LAYOUT[key]
    ours = _cdefs.ffi.sizeof(struct) if field is None else _cdefs.ffi.offsetof(struct, field)
    assert getattr(header, key) == ours, f"{_c_expr(struct, field)}"


def test_documented_sizes() -> None:
    # The sizes the KVM documentation states, independent of any header.
    assert _cdefs.ffi.sizeof("struct kvm_enable_cap") == 104
    assert _cdefs.ffi.sizeof("struct kvm_cpuid_entry2") == 40
    assert _cdefs.ffi.sizeof("struct kvm_cpuid2") == 8
    assert _cdefs.ffi.sizeof("struct kvm_lapic_state") == 1024
