"""The version of a QEMU binary on this host, from ``BINARY --version``.

libvirt's ``<emulator>`` and a pasted command line name the binary that runs
the VM; when that binary is here, its version picks the source build.
"""

from __future__ import annotations

import os
import re
import subprocess

_VERSION = re.compile(r"QEMU emulator version (\d+\.\d+\.\d+)")
_PROGRAM = re.compile(r"^qemu-(system-(x86_64|i386)|kvm)$")
TIMEOUT = 10.0


def emulator_version(path: str, timeout: float = TIMEOUT) -> tuple[str | None, str]:
    """``(version, "")``, or ``(None, why not)``; never raises."""
    if not os.path.isabs(path):
        return None, f"{path} is not an absolute path"
    if not _PROGRAM.match(os.path.basename(path)):
        # Only a QEMU is run: a domain file must not make this tool execute anything else.
        return None, f"{path} is not named like a QEMU x86 binary"
    if not os.access(path, os.X_OK):
        return None, f"{path} is not an executable on this host"
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return None, f"{path} --version did not answer within {timeout:g} s"
    except OSError as err:
        return None, f"cannot run {path}: {err.strerror or err}"
    match = _VERSION.search(done.stdout.decode("utf-8", "replace"))
    if done.returncode != 0 or match is None:
        return None, f"{path} --version did not print a QEMU version"
    return match.group(1), ""
