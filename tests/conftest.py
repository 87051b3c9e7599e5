"""Shared test fixtures.

Tests that need a real QEMU (or /dev/kvm) skip with a reason when it is
missing, unless MACHINES_REQUIRE_QEMU=1 (MACHINES_REQUIRE_KVM=1) is set, as
.ci/run does: then a missing QEMU fails the test instead.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from typing import NoReturn

import pytest
from hypothesis import settings

# Tests leave nothing behind: the host kernel profile the CLI caches per boot goes to a
# scratch XDG_CACHE_HOME (inherited by every CLI subprocess), not the user's
# ~/.cache/machines, where a stale profile would also be reused by the next run; the
# browser test's screenshots go to a scratch directory unless MACHINES_TEST_OUTPUT names one.
# The SEOIB RFC's QEMU unpacks itself into its own cache (../shared/tools/qemu-rfc-seoib):
# that stays where it was, so it is unpacked once, not once per run and QEMU started.
os.environ.setdefault("QEMU_RFC_SEOIB_CACHE", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "qemu-rfc-seoib"))
_SCRATCH = tempfile.mkdtemp(prefix="machines-tests-")
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)
os.environ["XDG_CACHE_HOME"] = os.path.join(_SCRATCH, "cache")
os.environ.setdefault("MACHINES_TEST_OUTPUT", os.path.join(_SCRATCH, "test-output"))


def missing(reason: str, flag: str) -> NoReturn:
    """An oracle (an installed tool) is missing: skip, or fail when ``flag``=1 (.ci/run)."""
    if os.environ.get(flag) == "1":
        pytest.fail(f"{reason} but {flag}=1")
    pytest.skip(reason)

# Property tests: a few hundred inputs per reader in the normal run; the fuzz
# env ('tox -e fuzz', --hypothesis-profile=fuzz) runs 100,000 each.  No
# deadline: a slow example on a busy CI machine is not a failure.
settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile("fuzz", max_examples=100_000, deadline=None)
settings.load_profile("default")

QEMU_BINARY = os.environ.get("MACHINES_QEMU", "qemu-system-x86_64")


def qemu_available() -> bool:
    return shutil.which(QEMU_BINARY) is not None


@pytest.fixture(scope="session")
def qemu_binary() -> str:
    """The real QEMU binary, or skip (fail under MACHINES_REQUIRE_QEMU=1)."""
    if qemu_available():
        return QEMU_BINARY
    missing(f"needs a real QEMU ({QEMU_BINARY} not found)", "MACHINES_REQUIRE_QEMU")


def qemu_version(binary: str) -> str:
    """``10.0.2`` from ``QEMU emulator version 10.0.2 (Debian ...)``."""
    import subprocess

    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    return out.split("version ", 1)[1].split()[0]


@pytest.fixture(scope="session")
def installed_build(qemu_binary: str) -> str:
    """The shipped build whose data is the installed QEMU's version (registry), or skip.

    Oracle tests follow the installed QEMU: when it moves to a version no build ships,
    they fail under MACHINES_REQUIRE_QEMU=1 instead of vanishing from CI.
    """
    from machines.registry import build_for_version

    version = qemu_version(qemu_binary)
    name = build_for_version(version)
    if name is None:
        missing(f"no shipped build is QEMU {version} (the installed {qemu_binary}): import "
                "it (machines import) to compare", "MACHINES_REQUIRE_QEMU")
    assert name is not None
    return name


# -- /dev/kvm (kvmglue) ------------------------------------------------------

KVM_DEVICE = "/dev/kvm"


def _kvm_problem() -> str | None:
    """Why /dev/kvm cannot be used here, or None when it can."""
    from kvmglue.errors import KvmError
    from kvmglue.kvm import open_kvm

    try:
        with open_kvm(KVM_DEVICE):
            return None
    except KvmError as err:
        return str(err)


def kvm_available() -> bool:
    return _kvm_problem() is None


@pytest.fixture(scope="session")
def real_kvm():
    """An open /dev/kvm handle, or skip (fail under MACHINES_REQUIRE_KVM=1)."""
    problem = _kvm_problem()
    if problem is not None:
        missing(f"needs a usable {KVM_DEVICE} ({problem})", "MACHINES_REQUIRE_KVM")
    from kvmglue.kvm import open_kvm

    with open_kvm(KVM_DEVICE) as kvm:
        yield kvm


# -- the zoo: real QEMU builds of other Debian suites (.ci/install-zoo) -------

ZOO_DIR = os.environ.get("MACHINES_ZOO", "/var/lib/machines-zoo")
# Build name (as --release names it) -> the Debian suite whose chroot runs it.
ZOO_SUITES = {"5.2": "bullseye", "7.2": "bookworm", "10.0.13": "trixie",
              "11.1.3": "trixie-backports"}
HOST_BUILD = "10.0.2"  # what .ci/install-qemu puts on the host (bookworm-backports)
ZOO_BUILDS = ("5.2", "7.2", HOST_BUILD, "10.0.13", "11.1.3")


def zoo_command(build: str):  # -> QemuCommand, or skip / fail under MACHINES_REQUIRE_ZOO=1
    """How to run a zoo build: the host's QEMU for 10.0.2, else its suite's chroot."""
    import subprocess

    from machines.qmp import QemuCommand

    problem = None
    if build == HOST_BUILD:
        command = QemuCommand.parse(QEMU_BINARY)
        if not qemu_available():
            problem = f"{QEMU_BINARY} not found"
        else:
            out = subprocess.run([QEMU_BINARY, "--version"], capture_output=True, text=True,
                                 check=False).stdout
            if f"version {build} " not in out and f"version {build}\n" not in out:
                problem = f"the host QEMU is not {build}: {out.splitlines()[:1]}"
    else:
        root = os.path.join(ZOO_DIR, ZOO_SUITES[build])
        command = QemuCommand.chroot(root) if os.path.isdir(root) else QemuCommand(("chroot",))
        if not os.path.isfile(os.path.join(root, ".zoo-ready")):
            problem = f"no zoo chroot at {root} (run .ci/install-zoo)"
        elif not os.path.ismount(os.path.join(root, "proc")):
            problem = f"{root}/proc is not mounted (run .ci/install-zoo)"
    if problem is not None:
        missing(f"needs QEMU {build} from the zoo ({problem})", "MACHINES_REQUIRE_ZOO")
    return command


# -- the QEMU that carries the SEOIB RFC v2 (../shared/tools/qemu-rfc-seoib) ----

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RFC_QEMU = os.environ.get("MACHINES_RFC_QEMU") or os.path.join(
    os.path.dirname(REPO), "shared", "tools", "qemu-rfc-seoib")


@pytest.fixture(scope="session")
def rfc_qemu() -> str:
    """The RFC's own QEMU 10.2.0, or skip (fail under MACHINES_REQUIRE_RFC_QEMU=1)."""
    if os.access(RFC_QEMU, os.X_OK) and kvm_available():
        import subprocess

        # Unpack it now, once: QEMUs started side by side would race to unpack it.
        subprocess.run([RFC_QEMU, "--path"], check=True, capture_output=True, timeout=120)
        return RFC_QEMU
    missing(f"needs the SEOIB RFC's QEMU ({RFC_QEMU}; MACHINES_RFC_QEMU overrides) and a "
            "usable /dev/kvm", "MACHINES_REQUIRE_RFC_QEMU")


# -- a real libvirt (.ci/install-libvirt) --------------------------------------

LIBVIRT_URI = os.environ.get("MACHINES_LIBVIRT_URI", "qemu:///system")


def _libvirt_problem() -> str | None:
    """Why the libvirt at LIBVIRT_URI cannot be used, or None when it answers."""
    import subprocess

    if shutil.which("virsh") is None:
        return "virsh not found (run .ci/install-libvirt)"
    try:
        done = subprocess.run(["virsh", "-q", "-c", LIBVIRT_URI, "version"], capture_output=True,
                              text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return f"{LIBVIRT_URI} does not answer within 30 s"
    if done.returncode != 0:
        return f"{LIBVIRT_URI}: {' '.join(done.stderr.split())} (run .ci/install-libvirt)"
    return None


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """The URI of a libvirt that answers, or skip (fail under MACHINES_REQUIRE_LIBVIRT=1)."""
    problem = _libvirt_problem()
    if problem is not None:
        missing(f"needs a running libvirt ({problem})", "MACHINES_REQUIRE_LIBVIRT")
    return LIBVIRT_URI


# -- mutation testing (scripts/mutate) ---------------------------------------------------

@pytest.fixture(autouse=True)
def _fresh_caches_for_each_mutant() -> None:
    """Under mutmut, empty every functools cache of the package before each test.

    mutmut forks each mutant's test run from a process that has already run the tests
    once: a cached answer (a design, a build, a folded compat list) computed by the
    unmutated code would hide the mutant.  And in its stats run, which maps each function
    to the tests that reach it, a cached build would be attributed to the first test that
    asked for it only.  Builds are rebuilt, so class-level caches go with them.  Outside a
    mutation run (MUTANT_UNDER_TEST unset) this does nothing.
    """
    import sys

    if not os.environ.get("MUTANT_UNDER_TEST"):
        return
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("machines", "kvmglue")):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear):
                clear()
