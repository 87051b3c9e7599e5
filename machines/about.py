"""``machines --version``: this tool's version and the QEMU build data it carries."""

from __future__ import annotations


def version_text() -> str:
    from machines import __version__
    from machines.registry import IMPORTED, MODEL_RELEASES, NEWEST, _load_import

    lines = [f"machines {__version__}",
             f"model releases: {', '.join(MODEL_RELEASES)} (default {NEWEST})",
             "real builds:"]
    for name, path in IMPORTED.items():
        qemu = _load_import(path)["qemu"]
        package = qemu.get("package") or "no package recorded"
        lines.append(f"  {name:<8} QEMU {qemu['version']} ({package})")
    return "\n".join(lines) + "\n"
