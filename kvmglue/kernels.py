"""The simulated kernels behind the shipped profiles, and their generator.

Each shipped profile (``kvmglue/profiles/NAME.json``) is what
:func:`kvmglue.probe.probe` reports for the simulated kernel of the same
name here, so the files never drift from the simulator:
``python -m kvmglue.kernels`` rewrites them, and a test checks that they
equal a fresh generation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import attrs

from kvmglue.probe import probe_device
from kvmglue.profile import SHIPPED_DIR, KernelProfile, unknown_name_message
from kvmglue.sim import SimKernel, SimRules


@attrs.frozen
class KernelSpec:
    release: str
    seoib: bool
    about: str


KERNELS: dict[str, KernelSpec] = {
    "linux-6.12": KernelSpec(
        "6.12.0", seoib=False,
        about="before the SEOIB flags: KVM_CAP_X2APIC_API answers 0x3"),
    "linux-6.18.y-seoib": KernelSpec(
        "6.18.44", seoib=True,
        about="a 6.18.y stable kernel carrying the SEOIB backport"),
    "linux-7.0": KernelSpec(
        "7.0.0", seoib=True,
        about="the first mainline release with the SEOIB flags"),
}


def kernel_names() -> tuple[str, ...]:
    return tuple(KERNELS)


def simulated_kernel(name: str, rules: SimRules = SimRules()) -> SimKernel:  # noqa: B008
    """The simulated kernel ``name`` (raises ``machines.errors.UsageError``)."""
    try:
        spec = KERNELS[name]
    except KeyError:
        from machines.errors import UsageError

        raise UsageError(unknown_name_message("simulated kernel", name, kernel_names())) \
            from None
    return SimKernel(spec.release, seoib=spec.seoib, rules=rules)


def generate(name: str, origin: str = "shipped") -> KernelProfile:
    """Probe the simulated kernel ``name``."""
    kernel = simulated_kernel(name)
    return probe_device(kernel.device, ops=kernel, name=name, origin=origin)


def regenerate(directory: Path = Path(SHIPPED_DIR)) -> list[Path]:
    """Rewrite every shipped profile in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in KERNELS:
        path = directory / f"{name}.json"
        generate(name).save(path)
        written.append(path)
    return written


def main() -> int:
    for path in regenerate():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
