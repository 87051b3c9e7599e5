"""``machines probe``: what this host's KVM offers for x2APIC and SEOIB.

Prints a summary for people, the kernel profile as JSON (``--json``), or
writes the profile to a file atomically (``-o FILE``).  ``--simulate NAME``
probes one of the simulated kernels behind the shipped profiles instead of
/dev/kvm, for hosts without KVM.  A /dev/kvm that is absent, refused or not
KVM is :class:`~machines.errors.EnvironmentUnavailable` (exit 3).
"""

from __future__ import annotations

import argparse
import json
from typing import Any, NoReturn

from kvmglue._cdefs import X2ApicApi
from kvmglue.errors import KvmError, KvmUnavailable
from kvmglue.kernels import kernel_names, simulated_kernel
from kvmglue.kvm import DEFAULT_PATH, LIBC_OPS, KvmOps
from kvmglue.probe import probe_device
from kvmglue.profile import KernelProfile
from machines.errors import EnvironmentUnavailable, UsageError
from machines.fileio import atomic_write_json


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line and exit 2, like every other subcommand."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="machines probe",
                description="Probe KVM's x2APIC API and suppress-EOI-broadcast behaviour.",
                epilog="example:\n  machines probe --qemu /usr/bin/qemu-system-x86_64 "
                       "-o host.json",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print the kernel profile as JSON")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the kernel profile (JSON) to FILE, atomically")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--device", metavar="PATH", default=DEFAULT_PATH,
                        help=f"the KVM device to probe (default {DEFAULT_PATH})")
    source.add_argument("--simulate", metavar="NAME",
                        help="probe a simulated kernel instead: " + ", ".join(kernel_names()))
    p.add_argument("--qemu", metavar="BINARY",
                   help="also ask this QEMU binary over QMP what it knows; the output is then "
                        "a host profile (kernel + QEMU) for 'machines preflight'")
    p.add_argument("--connect", metavar="URI",
                   help="also ask this libvirt (virsh version, capabilities, domcapabilities) "
                        "which QEMU it runs; the output is then a host profile that records "
                        "what libvirt reports")
    p.add_argument("--name", help="the host's name in a host profile (default: this hostname)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="with --qemu: show each step on stderr (default: only on a terminal)")
    return p


def main(argv: list[str], *, ops: KvmOps = LIBC_OPS) -> int:
    args = _parser().parse_args(argv)
    profile = _probe(args, ops)
    if args.qemu and args.connect:
        raise UsageError("machines probe: give --qemu BINARY or --connect URI, not both")
    if args.qemu:
        return _host_profile(args, profile)
    if args.connect:
        return _libvirt_profile(args, profile)
    if args.output:
        atomic_write_json(args.output, profile.to_json())
    if args.json:
        print(json.dumps(profile.to_json(), indent=1))
    elif not args.output:
        print(render(profile, source=args.simulate or args.device))
    return 0


def _host_profile(args: argparse.Namespace, kernel: KernelProfile) -> int:
    """Kernel profile plus what the QEMU binary says: a host profile."""
    import socket

    from machines.compat.importer import import_build
    from machines.hostprofile import host_profile_json
    from machines.progress import reporter

    with reporter(args.progress) as progress:
        imported = import_build(args.qemu, command=["machines", "probe", "--qemu", args.qemu],
                                progress=progress)
    doc = host_profile_json(args.name or socket.gethostname(), kernel, {"import": imported})
    _emit(args, kernel, doc)
    if not args.json:
        aware = "seoib-policy" in imported["qom"]["properties"].get("kvm-accel", {})
        print(f"QEMU         {imported['qemu']['version']} ({args.qemu}): "
              f"{len(imported['machines'])} machine types; seoib-policy: "
              f"{'yes' if aware else 'no (never sets the SEOIB flags)'}"
              + (f"\nhost profile {doc['name']} -> {args.output}" if args.output else ""))
    return 0


def _emit(args: argparse.Namespace, kernel: KernelProfile, doc: dict[str, Any]) -> None:
    """A host profile to -o FILE (atomically), as JSON, or the kernel's summary."""
    if args.output:
        atomic_write_json(args.output, doc)
    if args.json:
        print(json.dumps(doc, indent=1))
    elif not args.output:
        print(render(kernel, source=args.simulate or args.device))


def _libvirt_profile(args: argparse.Namespace, kernel: KernelProfile) -> int:
    """Kernel profile plus the QEMU a libvirt runs, named by the build this tool ships."""
    import socket

    from machines.hostprofile import host_profile_json
    from machines.registry import build_for_version
    from machines.virsh import libvirt_host

    info = libvirt_host(args.connect)
    release = build_for_version(info["qemu_version"])
    if release is None:
        raise UsageError(f"machines probe: libvirt {args.connect} runs QEMU "
                         f"{info['qemu_version']}, for which no build data ships: probe it "
                         f"with --qemu {info['emulator'] or 'BINARY'} instead (on that host)")
    doc = host_profile_json(args.name or socket.gethostname(), kernel, {"release": release})
    doc["libvirt"] = info
    _emit(args, kernel, doc)
    if not args.json:
        print(f"libvirt      {info['libvirt_version']} at {args.connect}: QEMU "
              f"{info['qemu_version']} ({info['emulator']}), {len(info['machines'])} machine "
              f"types, build {release}"
              + (f"\nhost profile {doc['name']} -> {args.output}" if args.output else ""))
    return 0


def _probe(args: argparse.Namespace, ops: KvmOps) -> KernelProfile:
    if args.simulate:
        kernel = simulated_kernel(args.simulate)
        return probe_device(kernel.device, ops=kernel, name=args.simulate, origin="simulated")
    try:
        profile = probe_device(args.device, ops=ops)
    except KvmUnavailable as err:
        raise EnvironmentUnavailable(f"machines probe: {err}") from None
    except KvmError as err:
        raise EnvironmentUnavailable(f"machines probe: {args.device}: {err}") from None
    if ops is LIBC_OPS:  # a real probe of this host: keep it for this boot
        from machines.kernels import remember

        remember(profile, args.device)
    return profile


def _flags(value: int) -> str:
    names = [flag.name or "" for flag in X2ApicApi if flag & value]
    return " | ".join(names) if names else "none"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def render(profile: KernelProfile, source: str = "") -> str:
    """The profile as a few readable lines and the conformance table."""
    answers = profile.x2apic_api
    supports = profile.supports
    origin = {"probe": "probed", "shipped": "shipped profile",
              "simulated": "simulated kernel"}.get(profile.origin, profile.origin)
    lines = [
        f"kernel       {profile.kernel_release} (KVM API {profile.kvm_api_version}; "
        f"{origin}{' ' + source if source else ''})",
        f"x2APIC API   /dev/kvm {answers.system:#x}   fresh VM {answers.vm:#x}   "
        f"VM with split irqchip {answers.vm_split_irqchip:#x}",
        f"             {answers.system:#x} = {_flags(answers.system)}",
        f"supports     x2APIC API: {_yes(supports.x2apic_api)}   "
        f"split irqchip: {_yes(supports.split_irqchip)}",
        f"             ENABLE_SUPPRESS_EOI_BROADCAST: "
        f"{_yes(supports.enable_suppress_eoi_broadcast)}   "
        f"DISABLE_SUPPRESS_EOI_BROADCAST: {_yes(supports.disable_suppress_eoi_broadcast)}",
    ]
    if profile.conformance:
        width = max(len(c.case) for c in profile.conformance)
        lines += ["", "conformance  (LVR bit 24 set: the guest is offered directed EOI; "
                  "one value per read, the last one counts)",
                  f"  {'case':<{width}}  {'errno':<6}  {'LVR bit 24':<15}  description"]
        for c in profile.conformance:
            reads = ",".join("set" if bit else "clear" for bit in c.outcome.lvr_reads) or "-"
            lines.append(f"  {c.case:<{width}}  {c.outcome.errno or '-':<6}  {reads:<15}  "
                         f"{c.description}")
    return "\n".join(lines)
