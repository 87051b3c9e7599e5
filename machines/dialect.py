"""The few error messages whose wording differs between QEMU builds.

QEMU's refusals are mostly worded the same from 5.2 to 11.1, and the model
raises them in those words.  Where a build says it differently, the line it
prints is made here from its version, so that ``resolve --release BUILD``
refuses in that build's own words.  Each rule was read off the real
binaries (Debian's 5.2, 7.2, 10.0.2, 10.0.13 and 11.1.3); the version
boundaries between them follow the QEMU commits that changed the wording.
"""

from __future__ import annotations

# select_machine() reported with the -machine option's location until the
# machine options became a QDict (6.0), then plainly; 8.2 added the name.
_LOCATED_UNTIL = (6, 0)
_NAMED_FROM = (8, 2)


def unsupported_machine(version: tuple[int, ...], name: str, where: str) -> str:
    """QEMU's line for a machine type it does not register.

    ``where`` is the option as given (``-M pc-q35-11.1``), which QEMU before
    6.0 put in front of the message.
    """
    if tuple(version[:2]) < _LOCATED_UNTIL:
        return f"{where}: unsupported machine type" if where else "unsupported machine type"
    if tuple(version[:2]) < _NAMED_FROM:
        return "unsupported machine type"
    return f'unsupported machine type: "{name}"'


# A failed incoming migration was reported line by line (the section, then "load of migration
# failed: Invalid argument") until the loadvm path carried an Error (first seen in 10.2.0;
# 10.0.13 has the old wording, 10.1 is not observed here): one line, the cause last.
_LOAD_ERROR_FROM = (10, 2)
_SETUP_HINT = ("Make sure that your current VM setup matches your saved VM setup, including "
               "any hotplugged devices")


def unknown_section(version: tuple[int, ...], name: str, instance: int = 0) -> str:
    """QEMU's first line for a stream section the destination has no device for."""
    if tuple(version[:2]) < _LOAD_ERROR_FROM:
        return f"Unknown savevm section or instance '{name}' {instance}. {_SETUP_HINT}"
    return (f"load of migration failed: Invalid argument: Unknown section or instance "
            f"'{name}' {instance}. {_SETUP_HINT}")
