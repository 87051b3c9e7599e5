"""A real libvirt as a source of VMs and a describer of hosts, through the ``virsh`` CLI.

Why ``virsh`` and not libvirt-python: ``virsh`` (Debian's ``libvirt-clients``) is
the client every libvirt host already has and the one operators paste from;
libvirt-python on PyPI must be compiled against the host's ``libvirt-dev``, and
Debian's ``python3-libvirt`` exists only for the system Python, not a venv.
Every call has a timeout and its failure is one line.

* :func:`read_domain` -- a domain by name: its live XML (``virsh dumpxml``), its
  state (``virsh domstate``) and, when it runs, its QEMU asked over libvirt's
  monitor passthrough (``virsh qemu-monitor-command``) exactly as ``--qmp``
  asks a QEMU's own socket (:func:`machines.live.describe`);
* :func:`libvirt_host` -- what ``virsh version``, ``virsh capabilities`` and
  ``virsh domcapabilities`` report: the libvirt and QEMU versions, the emulator
  and the x86_64 machine types it registers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from attrs import frozen

from machines.errors import DataError, EnvironmentUnavailable, QmpSourceError

TIMEOUT = 30.0
RUNNING_STATES = ("running", "paused", "in shutdown", "pmsuspended")


@frozen
class ConnectedVm:
    """A libvirt domain read by name."""

    uri: str
    name: str
    state: str  # what 'virsh domstate' says: running, paused, shut off...
    xml: str  # the live XML (or the persistent one for an inactive domain)
    emulator: str | None
    args: tuple[str, ...]  # the QEMU arguments the judgement uses
    version: str  # the QEMU version (the running QEMU's, else libvirt's hypervisor)
    version_of: str
    notes: tuple[str, ...]

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES


def virsh(uri: str, *args: str, timeout: float = TIMEOUT) -> str:
    """``virsh -c URI ARGS...``'s standard output; a failure is one line."""
    binary = shutil.which("virsh")
    if binary is None:
        raise EnvironmentUnavailable("virsh not found: install libvirt-clients "
                                     "(apt-get install libvirt-clients)")
    try:
        done = subprocess.run([binary, "-q", "-c", uri, *args], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise EnvironmentUnavailable(f"virsh -c {uri} {args[0]}: no answer within "
                                     f"{timeout:g} s") from None
    if done.returncode != 0:
        message = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        message = message.removeprefix("error: ")
        if "failed to connect" in message.lower() or "Failed to connect" in message:
            raise EnvironmentUnavailable(f"libvirt {uri}: {message}")
        raise DataError(f"libvirt {uri}: virsh {args[0]}: {message}")
    return done.stdout


def monitor(uri: str, domain: str, command: str, arguments: dict[str, Any] | None = None) -> Any:
    """One QMP command through libvirt's passthrough; its ``return`` value."""
    from machines.qmp import QmpCommandError

    request: dict[str, Any] = {"execute": command}
    if arguments is not None:
        request["arguments"] = arguments
    out = virsh(uri, "qemu-monitor-command", domain, json.dumps(request))
    try:
        reply = json.loads(out)
    except ValueError:
        raise QmpSourceError(f"libvirt {uri}: domain {domain}: '{command}' answered "
                             f"{out[:60]!r}, not JSON") from None
    if "error" in reply:
        error = reply["error"]
        raise QmpCommandError(command, str(error.get("desc", error)), str(error.get("class")))
    return reply.get("return")


def hypervisor_version(uri: str) -> str:
    """The QEMU version libvirt runs (``Running hypervisor: QEMU 10.0.2``)."""
    for line in virsh(uri, "version").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Running hypervisor":
            return value.split()[-1]
    raise DataError(f"libvirt {uri}: 'virsh version' names no running hypervisor")


def libvirt_version(uri: str) -> str:
    for line in virsh(uri, "version").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Using library":
            return value.split()[-1]
    return ""


def read_domain(uri: str, name: str) -> ConnectedVm:
    """The domain ``name`` of the libvirt at ``uri``, as pre-flight's source."""
    import asyncio

    from machines.libvirt import parse_domain
    from machines.live import describe
    from machines.qmp import QmpCommandError

    state = virsh(uri, "domstate", name).strip()
    xml = virsh(uri, "dumpxml", name)
    emulator, xml_args = parse_domain(xml, f"libvirt {uri} domain {name}")
    if state not in RUNNING_STATES:
        version = hypervisor_version(uri)
        return ConnectedVm(uri, name, state, xml, emulator, tuple(xml_args), version,
                           f"the QEMU libvirt at {uri} runs ('virsh version')",
                           (f"domain {state}: read from its XML",))

    async def run(command: str, arguments: dict[str, Any] | None = None) -> Any:
        return monitor(uri, name, command, arguments)

    try:
        live = asyncio.run(describe(run))
    except QmpCommandError as err:
        raise QmpSourceError(f"libvirt {uri}: domain {name}: {err}") from None
    notes = [f"domain {state}: read from its QEMU {live.version} over libvirt's monitor "
             "passthrough", *live.notes]
    xml_machine = xml_args[1].split(",")[0]
    machine = live.args[1]
    if xml_machine != machine:
        notes.append(f"its XML names machine type {xml_machine}, QEMU runs {machine}")
    return ConnectedVm(uri, name, state, xml, emulator, live.args, live.version,
                       "the version the domain's running QEMU reports", tuple(notes))


def libvirt_host(uri: str) -> dict[str, Any]:
    """What the libvirt at ``uri`` reports about its QEMU, for a host profile."""
    import defusedxml.ElementTree as ET

    caps = ET.fromstring(virsh(uri, "capabilities"))
    machines: list[dict[str, Any]] = []
    emulator = None
    for guest in caps.iterfind("guest"):
        arch = guest.find("arch")
        if arch is None or arch.get("name") != "x86_64" or guest.findtext("os_type") != "hvm":
            continue
        emulator = (arch.findtext("emulator") or "").strip() or None
        seen = set()
        for node in arch.iterfind("machine"):
            row = {"name": (node.text or "").strip()}
            if node.get("canonical"):
                row["canonical"] = node.get("canonical", "")
            if node.get("deprecated") == "yes":
                row["deprecated"] = True
            key = tuple(sorted(row.items()))
            if key not in seen:
                seen.add(key)
                machines.append(row)
        break
    dom = ET.fromstring(virsh(uri, "domcapabilities", "--arch", "x86_64", "--virttype",
                              "kvm" if _kvm_domain(caps) else "qemu"))
    return {
        "uri": uri,
        "libvirt_version": libvirt_version(uri),
        "qemu_version": hypervisor_version(uri),
        "emulator": (dom.findtext("path") or "").strip() or emulator,
        "domain_type": (dom.findtext("domain") or "").strip(),
        "default_machine": (dom.findtext("machine") or "").strip(),
        "machines": machines,
    }


def _kvm_domain(caps: Any) -> bool:
    return any(d.get("type") == "kvm" for d in caps.iterfind("guest/arch/domain"))
