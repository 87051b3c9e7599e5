"""``machines``: the command line, a thin shell over the library.

Each subcommand parses its arguments, calls pure functions, and prints.
Failures are :class:`machines.errors.MachinesError`; :func:`main` turns them
into one line on stderr and the documented exit code (see README).  Modules
that pull in asyncio, qemu.qmp or cffi are imported only by the subcommands
that need them, so ``machines list`` starts fast.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, NoReturn

from machines.errors import MachinesError, UnknownMachineError, UsageError

if TYPE_CHECKING:  # argparse is imported only when a parser is built (cold start)
    import argparse


@cache
def _parser_class() -> type[argparse.ArgumentParser]:
    import argparse

    class _Parser(argparse.ArgumentParser):
        """argparse that reports a usage error as one line (exit 2)."""

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")

    return _Parser


def _add_release(p: argparse.ArgumentParser) -> None:
    p.add_argument("--release", "--build", dest="release", metavar="RELEASE",
                   help="QEMU build: a model release (10.0 ... 11.1; default 11.1), a real "
                        "Debian build (5.2, 7.2, 10.0.2, 10.0.13, 11.1.3), or a file written "
                        "by 'machines import'")


def _add_seoib(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seoib", metavar="DESIGN",
                   help="lay one of the SEOIB RFC's designs over the build: none (default: what "
                        "every real QEMU does), rfc-v2, gated[:VERSION], opt-in")


def _get_build(args: argparse.Namespace, release: str | None = None) -> Any:
    """--release with --seoib laid over it (a release may also be named BUILD+DESIGN)."""
    from machines.registry import get_build

    build = get_build(release if release is not None else args.release)
    if getattr(args, "seoib", None) is not None:
        from machines.i386.designs import overlay, parse_design

        build = overlay(build, parse_design(args.seoib))
    return build


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour in text output (auto: only on a terminal)")


def _cmd_list(args: argparse.Namespace) -> int:
    from machines.registry import get_build

    build = get_build(args.release)
    if args.json:
        from machines import report

        report.print_json(report.listing_json(build))
    else:
        sys.stdout.write(build.help_text())
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from machines import report
    from machines.registry import get_build, known_elsewhere

    build = get_build(args.release)
    machine = build.lookup(args.name, known_elsewhere)
    if args.json:
        report.print_json(report.machine_json(build, machine))
    else:
        sys.stdout.write(report.machine_text(build, machine))
    return 0


_OURS_WITH_VALUE = {
    "resolve": {"--device", "--release", "--build", "--cmdline", "--kernel", "--stream-state",
                "--seoib"},
    "seoib-designs": {"--fleet", "--hosts", "--cmdline", "--release", "--build", "--gate",
                      "--new-kernel", "--old-kernel", "--format", "-o", "--output", "--color"},
    "preflight": {"--dest", "--dest-args", "--source-host", "--release", "--build", "--seoib",
                  "--cmdline",
                  "--libvirt", "--qmp", "--source-state", "--state", "--fleet", "--hosts", "-o",
                  "--output", "--connect", "--domain", "--summary", "--summary-output"},
}


def _split_qemu_args(command: str, argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Our --options apart from QEMU's -options (``--`` ends ours)."""
    ours_with_value = _OURS_WITH_VALUE[command]
    ours_flags = {"--json", "--json-schema", "-h", "--help", "--expand-hosts"}
    ours: list[str] = []
    qemu: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name = token.split("=", 1)[0]
        if token == "--":
            qemu.extend(argv[i + 1:])
            break
        if name in ours_with_value:
            ours.append(token)
            if "=" not in token and i + 1 < len(argv):
                ours.append(argv[i + 1])
                i += 1
        elif name in ours_flags:
            ours.append(token)
        else:
            qemu.append(token)
        i += 1
    return ours, qemu


def _cmd_resolve(args: argparse.Namespace, qemu_args: list[str]) -> int:
    from machines import report

    resolver, devices, pic, decisions = _resolve(args, qemu_args)
    if args.json:
        report.print_json(report.resolve_json(resolver, devices, pic, decisions))
    else:
        sys.stdout.write(report.resolve_text(resolver, devices, pic))
        sys.stdout.write(report.seoib_text(decisions))
    refused = [d for d in decisions if d.refused]
    if refused:
        also = [d.kernel for d in refused[1:]]
        extra = f" (also refused under {', '.join(also)})" if also else ""
        how = "crash (abort)" if refused[0].aborts else "refuse to power on"
        print(f"machines: QEMU would {how} (kernel {refused[0].kernel}): "
              f"{refused[0].error}{extra}", file=sys.stderr)
        return 1
    return 0


def _resolve(args: Any, qemu_args: list[str]) -> tuple[Any, dict[str, Any], Any, list[Any]]:
    """(resolver, devices, IOAPIC, SEOIB decisions): what 'resolve' says, unprinted
    (also :func:`machines.api.resolve`)."""
    from machines.config import configure
    from machines.errors import PowerOnRefused, PropertyError, UnknownMachineError
    from machines.i386.ioapic import ioapic
    from machines.options import parse_args, split_command_line
    from machines.resolve import Resolver

    binary = None
    if args.cmdline is not None:
        if qemu_args:
            raise UsageError("give QEMU arguments or --cmdline, not both")
        binary, qemu_args = split_command_line(args.cmdline)
    build = _get_build(args)
    try:
        opts = parse_args(qemu_args, binary)
        config = configure(build, opts)
        resolver = Resolver(config)
        resolver.check_accel()  # unknown or bad -accel properties fail here, as in QEMU
        pic = ioapic(resolver) if config.machine.family in ("pc_q35", "pc_piix") else None
    except UnknownMachineError as err:
        # QEMU's own line for this build, then what the model knows of the name.
        from machines.dialect import unsupported_machine

        line = unsupported_machine(build.version, err.name, opts.machine_type_text)
        raise PowerOnRefused(f"{line} ({err})") from None
    except UsageError as err:
        raise PowerOnRefused(str(err)) from None  # already in QEMU's words
    devices = {}
    for typename in args.device:
        given = [d for d in config.options.devices if d.driver == typename]
        if not given:
            devices[typename] = resolver.device(typename)
        for n, device in enumerate(given, 1):  # each -device of that type, its options applied
            name = dict(device.props).get("id") or (f"#{n}" if len(given) > 1 else "")
            try:
                resolved = resolver.device(typename, device)
            except PropertyError as err:  # a -device option QEMU refuses: it would not start
                raise PowerOnRefused(str(err)) from None
            devices[f"{typename} ({name})" if name else typename] = resolved
    return resolver, devices, pic, _seoib_decisions(resolver, args)


def _seoib_decisions(resolver: Any, args: argparse.Namespace) -> list[Any]:
    """The SEOIB decision for each kernel the configuration is judged on."""
    from machines.i386.seoib import SeoibState, decide, inputs_from

    stream = None
    if args.stream_state is not None:
        if args.stream_state.lower() not in ("none", "absent"):
            try:
                stream = SeoibState.parse(args.stream_state)
            except KeyError:
                raise UsageError(f"--stream-state {args.stream_state}: expected QUIRKED, "
                                 "RESPECTED, NOT_ADVERTISED or none") from None
        if resolver.config.options.incoming is None and resolver.config.options.loadvm is None:
            raise UsageError("--stream-state describes an -incoming or -loadvm stream; "
                             "give one of those options")
    inputs = inputs_from(resolver, stream)
    uses_kernel = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    if not uses_kernel:
        from machines.i386.seoib import KernelCaps

        return [decide(inputs, KernelCaps("(not used)", False, False))]
    from machines.kernels import caps, kernel_profiles

    return [decide(inputs, caps(p)) for p in kernel_profiles(args.kernel)]


def _with_saved_machine(opts: Any, saved: Any) -> Any:
    """The VM's options with the stream's machine type when they name none."""
    if opts.machine_opt("type") is not None:
        return opts
    if saved.machine is None:
        raise UsageError(f"{saved.path} has no configuration section (no machine type); "
                         "give -machine")
    return opts._replace(machine=(("type", saved.machine), *opts.machine),
                         machine_text=",".join(filter(None, (saved.machine, opts.machine_text))))


def _with_saved_accel(opts: Any, saved: Any) -> tuple[Any, str | None]:
    """The VM's options with the accelerator the stream shows, when they name none.

    A stream shows KVM (its kvmclock section) but not the irqchip mode, except
    that only a split irqchip VM carries a non-QUIRKED x86-seoib-state; only
    when the mode is unknowable is the operator asked for it.
    """
    from machines.i386.seoib import SeoibState
    from machines.options import AccelOption

    if opts.accels or opts.machine_opt("accel") is not None:
        return opts, None
    if saved.kvm_evidence is None:
        return (opts._replace(accels=(AccelOption("tcg", (), "-accel tcg"),)),
                "TCG: the stream shows no sign of KVM (no kvmclock section); "
                "give -accel if it ran under KVM")
    why = f"KVM from {saved.kvm_evidence}"
    props: tuple[tuple[str, str], ...] = ()
    if opts.machine_opt("kernel-irqchip") is None:
        if saved.seoib in (None, SeoibState.QUIRKED):
            raise UsageError(f"{saved.path} was saved by a KVM VM ({saved.kvm_evidence}), but a "
                             "stream does not show the irqchip mode: give -accel "
                             "kvm,kernel-irqchip=on or -accel kvm,kernel-irqchip=split")
        props = (("kernel-irqchip", "split"),)
        why += (f", kernel-irqchip=split from its x86-seoib-state {saved.seoib.name} (only a "
                "split irqchip VM has one)")
    text = "-accel kvm" + "".join(f",{k}={v}" for k, v in props)
    return opts._replace(accels=(AccelOption("kvm", props, text),)), why


def _preflight_source(args: argparse.Namespace, qemu_args: list[str]
                      ) -> tuple[Any, Any, Any, str, str]:
    """(QEMU options, source host profile, source build, why that build, how described)."""
    from machines.hostprofile import from_spec
    from machines.options import parse_args, split_command_line

    given = [n for n, v in (("--cmdline", args.cmdline), ("--libvirt", args.libvirt),
                            ("--qmp", args.qmp), ("--domain", args.domain))
             if v is not None] + (["QEMU arguments"]
                                                                     if qemu_args else [])
    if len(given) > 1:
        raise UsageError(f"describe the source VM once, not with {' and '.join(given)}")
    if not given and args.state is None:
        raise UsageError("no source VM: give its QEMU arguments (after --), --cmdline LINE, "
                         "--libvirt XML, --qmp SOCKET, --connect URI --domain NAME "
                         "or --state FILE")
    if args.connect is not None and args.domain is None:
        raise UsageError("--connect URI names a libvirt; add --domain NAME")
    if args.source_host is not None and args.release is not None:
        raise UsageError("--source-host names the source QEMU already; drop --release")
    binary = None
    described = "QEMU arguments"
    version, version_of = None, ""
    if args.cmdline is not None:
        binary, qemu_args = split_command_line(args.cmdline)
        described = "a pasted command line"
    elif args.libvirt is not None:
        from machines.libvirt import read_domain

        binary, qemu_args = read_domain(args.libvirt)
        described = f"libvirt domain {args.libvirt}"
    elif args.qmp is not None:
        from machines.live import read_live

        live = read_live(args.qmp)
        qemu_args = list(live.args)
        described = f"the running QEMU {live.version} at {args.qmp}"
        version, version_of = live.version, f"the version the running QEMU at {args.qmp} reports"
    elif args.domain is not None:
        from machines.virsh import read_domain as read_connected

        vm = read_connected(args.connect or "qemu:///system", args.domain)
        binary, qemu_args = vm.emulator, list(vm.args)
        described = f"libvirt domain {vm.name} ({vm.state}) at {vm.uri}; " + "; ".join(vm.notes)
        version, version_of = vm.version, vm.version_of
        args.connected_running = vm.running
    opts = parse_args(qemu_args, binary)
    source_host = from_spec(args.source_host) if args.source_host else None
    build, why = _source_build(args, source_host, binary, version, version_of)
    return opts, source_host, build, why, described


def _source_build(args: argparse.Namespace, source_host: Any, binary: str | None,
                  version: str | None, version_of: str) -> tuple[Any, str]:
    """The source QEMU build and why it was taken: the host profile, --release, the
    emulator's own version, else the model's newest (said so, with how to name it)."""
    from machines.registry import NEWEST, build_for_version, get_build

    if source_host is not None:
        return source_host.build, f"the QEMU of source host {source_host.name} (--source-host)"
    if args.release is not None:
        return get_build(args.release), "--release"
    unknown_binary = ""
    if version is None and binary is not None:
        from machines.emulator import emulator_version

        version, unknown_binary = emulator_version(binary)
        version_of = f"the version of {binary} on this host"
    if version is not None:
        name = build_for_version(version)
        if name is None:
            raise UsageError(f"no build data for QEMU {version} ({version_of}): import it "
                             "('machines import --qemu BINARY -o FILE') and pass --release FILE")
        return get_build(name), version_of
    because = f"; {unknown_binary}" if unknown_binary else ""
    return get_build(NEWEST), (f"assumed, the model's newest (name the source's QEMU with "
                               f"--release or --source-host{because})")


def _cmd_preflight(args: argparse.Namespace, qemu_args: list[str]) -> int:
    from machines import report
    from machines.preflight import exit_code

    if args.fleet is not None or args.hosts is not None:
        return _preflight_fleet(args, qemu_args)
    fleet_only = [n for n, v in (("--expand-hosts", getattr(args, "expand_hosts", False)),
                                 ("--summary", getattr(args, "summary", None)),
                                 ("--summary-output", getattr(args, "summary_output", None)))
                  if v]
    if fleet_only:
        raise UsageError(f"{', '.join(fleet_only)} go with --fleet and --hosts")
    doc, results = _preflight(args, qemu_args)
    if args.json:
        report.print_json(doc)
    else:
        sys.stdout.write(report.preflight_text(doc))
    return exit_code(results)


def _preflight(args: Any, qemu_args: list[str]) -> tuple[dict[str, Any], list[Any]]:
    """(JSON document, results): what 'preflight' says of one VM, unprinted
    (also :func:`machines.api.preflight`)."""
    from machines import report
    from machines.config import configure
    from machines.hostprofile import HostProfile, from_spec
    from machines.i386.seoib import SeoibState, decide, inputs_from
    from machines.kernels import caps, kernel_profile
    from machines.options import parse_args
    from machines.preflight import judge_all, source_from
    from machines.resolve import Resolver

    if not args.dest:
        raise UsageError("give at least one --dest HOST")
    opts, source_host, build, build_why, described = _preflight_source(args, qemu_args)
    if args.seoib is not None:
        if source_host is not None:
            raise UsageError("--source-host names the source's design already "
                             "(KERNEL/QEMU+DESIGN); drop --seoib")
        from machines.i386.designs import overlay, parse_design

        build = overlay(build, parse_design(args.seoib))
    saved = None
    if args.state is not None:
        from machines.savevm import read_saved_state

        if args.source_state is not None or args.qmp is not None:
            raise UsageError("--state gives the VM's SEOIB state; drop "
                             + ("--source-state" if args.source_state else "--qmp"))
        saved = read_saved_state(args.state)
        opts = _with_saved_machine(opts, saved)
        opts, inferred = _with_saved_accel(opts, saved)
        described += f", saved state {args.state}" + (f" ({inferred})" if inferred else "")
    notes: list[str] = []
    try:
        config = configure(build, opts)
    except UnknownMachineError as err:
        from machines.registry import builds_registering

        others = builds_registering(err.name)
        if not others:
            raise
        notes.append(f"QEMU {build.name} does not register {err.name}, so the source runs "
                     "another QEMU: name it with --release or --source-host")
        build, build_why = (_get_build(args, others[0]), "stand-in, the newest build here "
                            f"that registers {err.name}")
        config = configure(build, opts)
    if saved is not None and saved.kvm_evidence and not config.kvm:
        raise UsageError(f"{args.state} was saved by a KVM VM ({saved.kvm_evidence}), but the "
                         f"VM is configured with {config.accel}; QEMU would refuse to load it "
                         "(\"Unknown savevm section or instance 'kvmclock' 0\")")
    if saved is not None and saved.machine is not None and config.machine.name != saved.machine:
        raise UsageError(f"{args.state} was saved from machine type {saved.machine}, but the "
                         f"VM is configured as {config.machine.name}; QEMU would refuse to "
                         "load it")
    resolver = Resolver(config)
    resolver.check_accel()
    dests = [from_spec(d) for d in args.dest]
    dest_args = None
    if args.dest_args is not None:
        import shlex

        dest_args = parse_args(shlex.split(args.dest_args))
    running = (args.qmp is not None or args.source_state is not None or saved is not None
               or getattr(args, "connected_running", False))
    inputs = inputs_from(resolver, None)
    kvm_lapic = inputs.kvm and inputs.kernel_irqchip in ("on", "split")
    kernel = None
    if kvm_lapic:
        kernel = source_host.kernel if source_host else kernel_profile("host")
    decision = None
    if args.source_state is not None and not kvm_lapic:
        raise UsageError(f"--source-state {args.source_state}: this VM runs "
                         + ("without KVM" if not inputs.kvm else "with kernel-irqchip=off")
                         + ", so it has no KVM LAPIC and no SEOIB state; drop --source-state")
    if args.source_state is not None:
        try:
            state: SeoibState | None = SeoibState.parse(args.source_state)
        except KeyError:
            raise UsageError(f"--source-state {args.source_state}: expected QUIRKED, "
                             "RESPECTED or NOT_ADVERTISED") from None
        origin = "given (--source-state)"
    elif saved is not None:
        state = saved.effective_seoib if kvm_lapic else None
        origin = ("the saved state's x86-seoib-state" if saved.seoib is not None
                  else "saved state without x86-seoib-state")
    elif not kvm_lapic:
        state, origin = None, "no KVM LAPIC"
    elif running and not build.seoib_aware:
        state, origin = SeoibState.QUIRKED, f"running on QEMU {build.name}, which never sets it"
    elif running:
        raise UsageError(f"QEMU {build.name} does not report the running VM's SEOIB state; "
                         "give --source-state")
    else:
        assert kernel is not None
        decision = decide(inputs, caps(kernel))
        if decision.refused:
            raise UsageError(f"the source VM would not power on (kernel {kernel.name}): "
                             f"{decision.error}")
        state, origin = decision.state, f"power-on on kernel {kernel.name}"
    source = source_from(config, state, origin, decision)
    host: HostProfile | None = source_host
    results = judge_all(source, dests, dest_args)
    doc = report.preflight_json(source, host, kernel, described, results, build_why, notes)
    return doc, results


def _preflight_fleet(args: argparse.Namespace, qemu_args: list[str]) -> int:
    """--fleet VMS.jsonl --hosts DIR: every VM against every host class, as JSON lines
    (or, with --summary, a summary for people)."""
    import json

    from machines.fleet import FleetRun, read_hosts

    if args.fleet is None or args.hosts is None:
        raise UsageError("--fleet and --hosts go together")
    single = [n for n, v in (("--dest", args.dest), ("--cmdline", args.cmdline),
                             ("--libvirt", args.libvirt), ("--qmp", args.qmp),
                             ("--domain", args.domain),
                             ("--source-host", args.source_host)) if v] + \
        (["QEMU arguments"] if qemu_args else [])
    if single:
        raise UsageError(f"--fleet describes its VMs and hosts itself; drop {', '.join(single)}")
    if args.summary_output and not args.summary:
        raise UsageError("--summary-output needs --summary md|html|json")
    run = FleetRun(read_hosts(args.hosts))
    # Every line is read and checked (one streaming pass that keeps ids and class
    # numbers) before the first byte goes out: a bad line is one error, never a
    # header (or half the answer) followed by it.
    run.read(args.fleet)
    import contextlib

    def sink(path: str | None) -> Any:
        if path:
            from machines.fileio import atomic_stream

            return atomic_stream(path)
        return contextlib.nullcontext(sys.stdout.buffer)

    if args.summary and not args.summary_output:  # the summary instead of the lines
        from machines.fleetsummary import render, summarize

        with sink(args.output) as out:
            out.write(render(summarize(run, args.fleet, args.hosts), args.summary).encode())
            out.flush()
        return 0
    with sink(args.output) as out:
        totals = run.write(out, expand_hosts=args.expand_hosts)
        out.write((json.dumps({"summary": totals}) + "\n").encode())
        out.flush()
    if args.summary_output:
        from machines.fileio import atomic_write
        from machines.fleetsummary import render, summarize

        atomic_write(args.summary_output, render(summarize(run, args.fleet, args.hosts),
                                                 args.summary))
    return 0


def _cmd_loadvm_check(args: argparse.Namespace) -> int:
    from machines import report
    from machines.i386.seoib import SeoibState, check_restore
    from machines.kernels import caps, kernel_profiles

    try:
        current = SeoibState.parse(args.current)
        snapshot = SeoibState.parse(args.snapshot) if args.snapshot is not None else None
    except KeyError as err:
        raise UsageError(f"unknown SEOIB state {err}; expected QUIRKED, RESPECTED or "
                         "NOT_ADVERTISED") from None
    machine = None
    if snapshot is None:
        from machines.savevm import read_saved_state

        saved = read_saved_state(args.state)
        snapshot, machine = saved.effective_seoib, saved.machine
    from machines.i386.designs import parse_design

    design = parse_design(args.seoib or "none").name
    if design == "none" and current is not SeoibState.QUIRKED:
        raise UsageError(f"--current {current.name}: a VM of a QEMU without SEOIB code (--seoib "
                         "none) is always QUIRKED; name the design it runs with --seoib")
    results = [(p.name, check_restore(current, snapshot, caps(p), args.irqchip, design))
               for p in kernel_profiles(args.kernel)]
    if args.json:
        report.print_json({
            "schema": "machines/loadvm-check/v1",
            "seoib_design": design,
            "current": current.name, "snapshot": snapshot.name,
            "snapshot_file": args.state, "snapshot_machine": machine,
            "kernels": {name: {"allowed": r.allowed, "x2apic_api_flags": r.flags,
                               "reason": r.reason, "fix": r.fix, "warning": r.warning,
                               "aborts": r.aborts} for name, r in results},
        })
    else:
        for name, r in results:
            verdict = "allowed" if r.allowed else "QEMU aborts" if r.aborts else "refused"
            print(f"{current.name} -> {snapshot.name} on kernel {name}: {verdict}: {r.reason}")
            if r.warning:
                print(f"  warning: {r.warning}")
            if r.fix:
                print(f"  fix: {r.fix}")
    # The refusal and its fix are in the output above, once; the exit code says it too.
    return 1 if any(not r.allowed for _, r in results) else 0


FORMATS = ("text", "md", "csv", "json", "html")


def _emit(args: argparse.Namespace, text: str) -> None:
    """Print, or write atomically with -o."""
    if args.output:
        from machines.fileio import atomic_write

        atomic_write(args.output, text)
    else:
        sys.stdout.write(text)


def _use_color(args: argparse.Namespace) -> bool:
    import os

    if args.color == "always":
        return True
    if args.color == "never" or args.output or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def _render(args: argparse.Namespace, table: Any, doc: Any) -> str:
    import json

    from machines import render

    fmt = args.format
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return render.to_markdown(table)
    if fmt == "csv":
        return render.to_csv(table)
    if fmt == "html":
        return render.to_html(table)
    return render.to_text(table, color=_use_color(args))


def _cmd_compare(args: argparse.Namespace) -> int:
    from machines import report
    from machines.compare import compare_machines, to_table
    from machines.registry import get_build, known_elsewhere

    build = get_build(args.release)
    if args.all:
        names = [m.name for m in build.registered() if m.family]
    else:
        if len(args.names) < 2:
            raise UsageError("compare needs at least two machine types (or --all)")
        names = args.names
    machines = [build.lookup(n, known_elsewhere) for n in names]
    table = compare_machines(build, machines, show_all=args.show_all)
    if args.json:
        args.format = "json"
    elif args.csv:
        args.format = "csv"
    _emit(args, _render(args, to_table(build, table), report.compare_json(build, table)))
    return 0


def _cmd_gaps(args: argparse.Namespace) -> int:
    from machines import gapsreport
    from machines.gaps import find_gaps, with_confirmations
    from machines.registry import get_build

    if (args.old_qemu or args.new_qemu or args.only) and not args.confirm:
        raise UsageError("gaps: --old-qemu, --new-qemu and --only need --confirm")
    old, new = get_build(args.old), get_build(args.new)
    if old.name == new.name:
        raise UsageError(f"gaps: --old and --new are the same build ({old.name})")
    if old.version > new.version:
        raise UsageError(f"gaps: --old {old.name} is newer than --new {new.name}")
    if not args.timeout > 0:
        raise UsageError("gaps: --timeout must be a positive number of seconds")
    report = find_gaps(old, new)
    if args.confirm:
        from machines.gapcheck import command_for, confirm

        commands = (command_for(old, args.old_qemu), command_for(new, args.new_qemu))
        found = confirm(report, old, new, commands, timeout=args.timeout, only=args.only)
        report = with_confirmations(report, found, [(old.name, commands[0].name),
                                                    (new.name, commands[1].name)])
    _emit(args, gapsreport.render(report, args.format, _use_color(args)))
    return 0


def _cmd_matrix(args: argparse.Namespace) -> int:
    from kvmglue.profile import shipped, shipped_names
    from machines import matrix
    from machines.hostprofile import from_spec
    from machines.kernels import host_usable, kernel_profile

    build = _get_build(args)
    kernels: list[Any] = []  # --kernel replaces the shipped columns; each kernel once
    for profile in ([kernel_profile(k) for k in args.kernel] if args.kernel
                    else [shipped(n) for n in shipped_names()]):
        if all(k.name != profile.name for k in kernels):
            kernels.append(profile)
    if args.source_kernel:
        here = kernel_profile(args.source_kernel)
    else:
        here = kernel_profile("host") if host_usable() else shipped("linux-7.0")
    dests = [from_spec(d) for d in args.dest]
    machines = matrix.select(build, args.family, args.since, args.include_removed)
    if not machines:
        since = f" since {matrix.since_version(args.since)}" if args.since else ""
        raise UsageError(f"no machine type{since} matches the filters in QEMU {build.name}")
    result = matrix.build_matrix(build, kernels, dests, here, machines)
    _emit(args, _render(args, matrix.to_table(result), matrix.to_json(result)))
    return 0


def _cmd_seoib_designs(args: argparse.Namespace, qemu_args: list[str]) -> int:
    """Each SEOIB design over a VM list: state changes, lost hosts, exposure, fixes."""
    import json

    from machines import designs_compare as dc
    from machines.i386.designs import _gate_numbers
    from machines.kernels import caps, kernel_profile
    from machines.registry import NEWEST, get_build

    if args.json_schema:
        sys.stdout.write(json.dumps(dc.JSON_SCHEMA, indent=2) + "\n")
        return 0
    if args.json:
        args.format = "json"
    if args.format == "csv":
        raise UsageError("seoib-designs: --format is text, md, json or html")
    new_kernel = caps(kernel_profile(args.new_kernel))
    old_kernel = caps(kernel_profile(args.old_kernel))
    keys: list[Any]
    if args.fleet is not None:
        if qemu_args or args.cmdline is not None:
            raise UsageError("--fleet describes the VMs; drop the QEMU arguments")
        from machines.fleet import read_vms

        default = args.release or NEWEST
        keys = [dc.fleet_key(vm.qemu or default, vm.machine, vm.irqchip, vm.ioapic, vm.policy)
                for vm in read_vms(args.fleet)]
        described = f"the fleet {args.fleet} ({len(keys)} VMs)"
    else:
        from machines.options import split_command_line

        if args.cmdline is not None:
            if qemu_args:
                raise UsageError("give QEMU arguments or --cmdline, not both")
            _, qemu_args = split_command_line(args.cmdline)
        if not qemu_args:
            raise UsageError("give --fleet VMS.jsonl, --cmdline LINE or one VM's QEMU arguments")
        keys = [dc.VmKey(args.release or NEWEST, tuple(qemu_args))]
        described = "one VM: " + " ".join(qemu_args)
    builds = {get_build(k.qemu) for k in keys} or {get_build(args.release)}
    if args.gate is not None:
        gate = _gate_numbers(args.gate)
        if gate is None:
            raise UsageError(f"--gate {args.gate}: give a machine-type version such as 11.2")
    else:
        gate = dc.default_gate(builds)
    hosts: tuple[Any, ...] = ()
    if args.hosts is not None:
        from machines.fleet import read_hosts

        hosts = dc.host_classes(read_hosts(args.hosts))
    result = dc.compare(keys, new_kernel, old_kernel, gate, described, hosts=hosts)
    _emit(args, _render(args, dc.to_table(result), dc.to_json(result)))
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from machines import report
    from machines.savevm import read_saved_state

    saved = read_saved_state(args.file)
    if args.json:
        report.print_json(report.inspect_json(saved))
    else:
        sys.stdout.write(report.inspect_text(saved))
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from machines.compat.importer import import_build
    from machines.fileio import atomic_write_json
    from machines.progress import reporter
    from machines.qmp import QemuCommand
    from machines.report import print_json

    if bool(args.qemu) == bool(args.chroot):
        raise UsageError("machines import: give --qemu COMMAND or --chroot DIR")
    qemu = QemuCommand.chroot(args.chroot) if args.chroot else QemuCommand.parse(args.qemu)
    with reporter(args.progress) as progress:
        data = import_build(qemu, Path(args.source) if args.source else None,
                            timeout=args.timeout, command=["machines", "import", *sys.argv[2:]],
                            known=[Path(k) for k in args.known], progress=progress)
    if args.output:
        atomic_write_json(args.output, data)
        machines = sum(1 for m in data["machines"])
        print(f"imported QEMU {data['qemu']['version']}: {machines} machine types, "
              f"{len(data['tables'])} compat arrays -> {args.output}")
    else:
        print_json(data)
    return 0


def _sub_list(sub: Any) -> None:
    p = sub.add_parser("list", help="machine types, like 'qemu-system-x86_64 -machine help'")
    _add_release(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_list)


def _sub_show(sub: Any) -> None:
    p = sub.add_parser("show", help="one machine type and its ordered compat properties")
    p.add_argument("name")
    _add_release(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)


def _sub_resolve(sub: Any) -> None:
    p = sub.add_parser("resolve", help="effective properties of a QEMU configuration",
                       usage="machines resolve [--device TYPE]... [--json] [--release R] "
                             "[--kernel PROFILE] [--stream-state STATE] "
                             "[--cmdline 'qemu-system-x86_64 ...'] [--] [QEMU ARGS...]")
    p.add_argument("--device", action="append", default=[], metavar="TYPE",
                   help="QOM type whose properties to resolve (repeatable)")
    _add_release(p)
    _add_seoib(p)
    p.add_argument("--cmdline", help="a whole pasted QEMU command line (e.g. from libvirt's log)")
    p.add_argument("--kernel", metavar="PROFILE",
                   help="kernel for the SEOIB decision: 'host', a shipped profile name, or a "
                        "file from 'machines probe -o' (default: host, else every shipped one)")
    p.add_argument("--stream-state", metavar="STATE",
                   help="with -incoming/-loadvm: the stream's x86-seoib-state "
                        "(QUIRKED, RESPECTED, NOT_ADVERTISED, or none)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_resolve)


def _sub_preflight(sub: Any) -> None:
    p = sub.add_parser("preflight", help="can this VM migrate to those hosts?",
                       usage="machines preflight --dest HOST [--dest HOST]... [--json] "
                             "[--source-host HOST] [--release R] [--dest-args 'ARGS'] "
                             "[--source-state STATE | --state FILE] "
                             "[--cmdline LINE | --libvirt XML | --qmp SOCKET | "
                             "--connect URI --domain NAME | [--] QEMU ARGS...]")
    p.add_argument("--dest", action="append", default=[], metavar="HOST",
                   help="destination: a host-profile file or KERNEL/QEMU[+DESIGN], e.g. "
                        "linux-6.12/10.2 or linux-7.0/10.2+rfc-v2 (repeatable)")
    p.add_argument("--dest-args", metavar="ARGS",
                   help="the destination's QEMU arguments, when they differ from the source's")
    p.add_argument("--source-host", metavar="HOST",
                   help="the source host (default: this host's kernel and --release)")
    _add_release(p)
    _add_seoib(p)
    p.add_argument("--cmdline", help="the source VM as a pasted QEMU command line")
    p.add_argument("--libvirt", metavar="XML", help="the source VM as a libvirt domain XML")
    p.add_argument("--qmp", metavar="SOCKET", help="the source VM running, by its QMP socket")
    p.add_argument("--connect", metavar="URI",
                   help="with --domain: the libvirt to ask (default qemu:///system)")
    p.add_argument("--domain", metavar="NAME",
                   help="the source VM as a libvirt domain, by name: its live XML and, when "
                        "it runs, its QEMU over libvirt's monitor passthrough")
    p.add_argument("--source-state", metavar="STATE",
                   help="the running VM's SEOIB state (QUIRKED, RESPECTED, NOT_ADVERTISED)")
    p.add_argument("--state", metavar="FILE",
                   help="the VM as a saved state or migration stream: its machine type and "
                        "SEOIB state")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fleet", metavar="VMS.jsonl",
                   help="a whole fleet: one VM per line (with --hosts); JSON lines out")
    p.add_argument("--hosts", metavar="DIR", help="with --fleet: one host profile per file")
    p.add_argument("-o", "--output", metavar="FILE", help="with --fleet: write to FILE atomically")
    p.add_argument("--expand-hosts", action="store_true",
                   help="with --fleet: name the host ids each VM can move to (the per-host "
                        "form, for small fleets) instead of host classes")
    p.add_argument("--summary", choices=("md", "html", "json"),
                   help="with --fleet: a summary for people instead of the JSON lines")
    p.add_argument("--summary-output", metavar="FILE",
                   help="with --summary: write the summary to FILE and the JSON lines as usual")
    p.set_defaults(func=_cmd_preflight)


def _sub_loadvm_check(sub: Any) -> None:
    p = sub.add_parser("loadvm-check",
                       help="can a running VM restore a snapshot with this SEOIB state?")
    p.add_argument("--current", required=True, metavar="STATE",
                   help="the VM's current state: QUIRKED, RESPECTED or NOT_ADVERTISED")
    snap = p.add_mutually_exclusive_group(required=True)
    snap.add_argument("--snapshot", metavar="STATE", help="the snapshot's state")
    snap.add_argument("--state", metavar="FILE",
                      help="the snapshot as a saved state file (its x86-seoib-state)")
    p.add_argument("--kernel", metavar="PROFILE")
    p.add_argument("--irqchip", choices=("on", "split"), default="split")
    p.add_argument("--seoib", metavar="DESIGN",
                   help="the SEOIB design the QEMU runs: none (default: every real QEMU), "
                        "rfc-v2, gated, opt-in")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_loadvm_check)


def _sub_compare(sub: Any) -> None:
    p = sub.add_parser("compare", help="what differs between machine types")
    p.add_argument("names", nargs="*", metavar="MACHINE")
    p.add_argument("--all", action="store_true", help="every registered versioned type")
    p.add_argument("--show-all", action="store_true", help="also rows that do not differ")
    _add_release(p)
    _add_output(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="same as --format json")
    fmt.add_argument("--csv", action="store_true", help="same as --format csv")
    p.set_defaults(func=_cmd_compare)


def _sub_matrix(sub: Any) -> None:
    p = sub.add_parser("matrix", help="machine types x kernels x hosts: SEOIB and migration")
    _add_release(p)
    _add_seoib(p)
    p.add_argument("--kernel", action="append", default=[], metavar="PROFILE",
                   help="a kernel column: 'host', a shipped profile or a profile file "
                        "(repeatable; replaces the shipped columns)")
    p.add_argument("--dest", action="append", default=[], metavar="HOST",
                   help="a destination column: host-profile file or KERNEL/QEMU (repeatable)")
    p.add_argument("--source-kernel", metavar="PROFILE",
                   help="the kernel VMs are powered on with before they migrate (default: "
                        "this host's, else linux-7.0)")
    p.add_argument("--family", choices=sorted({"q35", "pc-q35", "i440fx", "pc-i440fx", "pc"}))
    p.add_argument("--since", metavar="VERSION",
                   help="only machine types of this version on (9.0; 10 means 10.0)")
    p.add_argument("--include-removed", action="store_true",
                   help="also types the build knows but no longer registers")
    _add_output(p)
    p.set_defaults(func=_cmd_matrix)


def _sub_gaps(sub: Any) -> None:
    p = sub.add_parser("gaps", help="defaults that changed between two builds with no compat "
                                    "entry for the old machine types")
    p.add_argument("--old", required=True, metavar="BUILD", help="the older build (e.g. 7.2)")
    p.add_argument("--new", required=True, metavar="BUILD", help="the newer build (e.g. 10.0.2)")
    p.add_argument("--confirm", action="store_true",
                   help="read each guest-visible gap back from both binaries (qom-get)")
    p.add_argument("--old-qemu", metavar="COMMAND", help="binary for --old (default: the "
                   "host's QEMU for 10.0.2, the zoo chroot for 5.2/7.2/10.0.13/11.1.3)")
    p.add_argument("--new-qemu", metavar="COMMAND", help="binary for --new (as --old-qemu)")
    p.add_argument("--only", action="append", default=[], metavar="TYPE.PROP",
                   help="with --confirm: check only these gaps (repeatable)")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                   help="per QEMU started")
    p.add_argument("--format", choices=("text", "md", "json", "html"), default="text")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically)")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.set_defaults(func=_cmd_gaps)


def _sub_import(sub: Any) -> None:
    p = sub.add_parser("import", help="read a real QEMU binary into a build data file")
    p.add_argument("--qemu", metavar="COMMAND",
                   help="the QEMU binary, or a command prefix that runs it "
                        "('chroot /var/lib/machines-zoo/bullseye qemu-system-x86_64')")
    p.add_argument("--chroot", metavar="DIR",
                   help="run DIR's qemu-system-x86_64 inside that chroot (same as --qemu "
                        "'chroot DIR qemu-system-x86_64')")
    p.add_argument("--source", metavar="DIR|FILE",
                   help="QEMU source tree of the same version, or its source-arrays file "
                        "(names the compat arrays; required before QEMU 9.1, whose "
                        "query-machines has no compat-props)")
    p.add_argument("--known", metavar="FILE", action="append", default=[],
                   help="source-arrays file or import of another version, to name the "
                        "arrays of a build without its own source (repeatable)")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS")
    import argparse

    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show each step on stderr (default: only on a terminal)")
    p.set_defaults(func=_cmd_import)


def _sub_seoib_designs(sub: Any) -> None:
    p = sub.add_parser("seoib-designs",
                       help="compare the SEOIB RFC's designs over a fleet or one VM",
                       usage="machines seoib-designs (--fleet VMS.jsonl | --cmdline LINE | "
                             "[--] QEMU ARGS...) [--hosts DIR] [--release R] [--gate VERSION] "
                             "[--new-kernel PROFILE] [--old-kernel PROFILE] "
                             "[--format text|md|json|html] [-o FILE] [--json-schema]")
    p.add_argument("--fleet", metavar="VMS.jsonl", help="the VMs, as for preflight --fleet")
    p.add_argument("--hosts", metavar="DIR",
                   help="host profiles (one per *.json): also count, per host class, the VMs "
                        "that can no longer move there")
    p.add_argument("--cmdline", help="one VM as a pasted QEMU command line")
    _add_release(p)
    p.add_argument("--gate", metavar="VERSION",
                   help="first machine-type version of the gated design (default: the one "
                        "after the newest build's newest)")
    p.add_argument("--new-kernel", default="linux-7.0", metavar="PROFILE",
                   help="the kernel VMs power on with next (default linux-7.0)")
    p.add_argument("--old-kernel", default="linux-6.12", metavar="PROFILE",
                   help="the kernel without the SEOIB API (default linux-6.12)")
    p.add_argument("--json-schema", action="store_true",
                   help="print the JSON Schema of --format json and exit")
    p.add_argument("--json", action="store_true", help="same as --format json")
    _add_output(p)
    p.set_defaults(func=_cmd_seoib_designs)


def _sub_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="machine type and SEOIB state of a saved VM state "
                                       "or migration stream")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_inspect)


def _cmd_completion(args: argparse.Namespace) -> int:
    from machines.completion import script

    sys.stdout.write(script(args.shell))
    return 0


def _sub_completion(sub: Any) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=_cmd_completion)


def _sub_probe(sub: Any) -> None:
    p = sub.add_parser("probe", help="what this host's KVM supports (kernel profile)",
                       add_help=False)
    p.set_defaults(func=None, external="machines.probe")


_SUBCOMMANDS = {
    "list": _sub_list,
    "show": _sub_show,
    "resolve": _sub_resolve,
    "preflight": _sub_preflight,
    "loadvm-check": _sub_loadvm_check,
    "compare": _sub_compare,
    "matrix": _sub_matrix,
    "gaps": _sub_gaps,
    "import": _sub_import,
    "inspect": _sub_inspect,
    "seoib-designs": _sub_seoib_designs,
    "probe": _sub_probe,
    "completion": _sub_completion,
}

# One example per subcommand, shown at the end of its --help.
EXAMPLES = {
    "list": "machines list --release 10.0.2",
    "show": "machines show pc-q35-9.2 --json",
    "resolve": "machines resolve -M pc-q35-10.0 -accel kvm,kernel-irqchip=split --device ioapic",
    "preflight": "machines preflight --dest linux-6.12/10.2 --dest host-b.json "
                 "-M pc-q35-10.2 -accel kvm,kernel-irqchip=split",
    "loadvm-check": "machines loadvm-check --current RESPECTED --snapshot QUIRKED "
                    "--seoib rfc-v2",
    "compare": "machines compare pc-q35-9.0 pc-q35-9.2",
    "matrix": "machines matrix --seoib rfc-v2 --family q35 --since 9.0",
    "gaps": "machines gaps --old 7.2 --new 10.0.2",
    "import": "machines import --qemu qemu-system-x86_64 -o build.json",
    "inspect": "machines inspect vm.state --json",
    "seoib-designs": "machines seoib-designs --fleet vms.jsonl --hosts hosts/",
    "probe": "machines probe --qemu /usr/bin/qemu-system-x86_64 -o host.json",
    "completion": "source <(machines completion bash)",
}


_FAST = {"resolve": _cmd_resolve, "preflight": _cmd_preflight}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; with ``only``, just that subcommand (argparse is slow to build)."""
    _Parser = _parser_class()
    parser = _Parser(prog="machines", description=__doc__.splitlines()[0] if __doc__ else None)
    from machines import __version__

    parser.add_argument("--version", action="version", version=f"machines {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, add in _SUBCOMMANDS.items():
        if only is None or name == only:
            add(sub)
            _with_example(sub.choices[name], EXAMPLES[name])
    return _with_example(parser, "machines resolve -M q35 --device ioapic")


def _with_example(parser: argparse.ArgumentParser, example: str) -> argparse.ArgumentParser:
    import argparse

    parser.epilog = f"example:\n  {example}"
    if parser.formatter_class is argparse.HelpFormatter:
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def _run(argv: list[str]) -> int:
    if argv and argv[0] == "__complete":  # the shell asking (machines completion bash|zsh)
        from machines.completion import main as complete

        return complete(argv[1:])
    if argv == ["--version"]:
        from machines.about import version_text

        sys.stdout.write(version_text())
        return 0
    if argv and argv[0] == "probe":
        from machines import probe

        return probe.main(argv[1:])
    qemu_args: list[str] = []
    if argv and argv[0] in _OURS_WITH_VALUE:
        ours, qemu_args = _split_qemu_args(argv[0], argv[1:])
        from machines.fastargs import parse_ours

        fast = parse_ours(argv[0], ours)  # the plain cases without building argparse
        if fast is not None:
            return _FAST[argv[0]](fast, qemu_args)  # type: ignore[arg-type]
        argv = [argv[0], *ours]
    parser = _parser(argv[0] if argv and argv[0] in _SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    func: Callable[..., int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    if args.command in _OURS_WITH_VALUE:
        return func(args, qemu_args)
    return func(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # A run is short and builds few reference cycles: collecting them while the
    # data files load only costs time (about 3 ms of a 40 ms 'resolve').
    gc.disable()
    try:
        return _run(argv)
    except MachinesError as err:
        print(f"machines: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("machines: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    finally:
        qmp = sys.modules.get("machines.qmp")
        if qmp is not None:  # QEMU children a torn-down event loop could not stop
            qmp.reap_all()
        gc.enable()


if __name__ == "__main__":
    sys.exit(main())
