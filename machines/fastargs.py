"""``resolve`` and ``preflight``'s own options, read without argparse (issue 18: cold start).

Importing argparse (with gettext and locale) and building a subcommand's parser
is about a quarter of a cold ``machines resolve``.  These two commands' own
options (QEMU's are split off first, :func:`machines.cli._split_qemu_args`) are
simple: each takes one value, may repeat, or is a flag.  :func:`parse_ours`
reads the plain cases into the same namespace argparse would make, and returns
None for anything else (``--help``, an abbreviated or unknown option, a
missing value, a value that looks like an option), which then goes to argparse
for its answer and its error message.  The test suite checks that the tables
below name every option the argparse parsers have, and that both give the same
namespace on a corpus of command lines.
"""

from __future__ import annotations

from types import SimpleNamespace

VALUE, APPEND, FLAG = "value", "append", "flag"

# command -> option -> (dest, kind); and each dest's default.
OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "resolve": {
        "--device": ("device", APPEND), "--release": ("release", VALUE),
        "--build": ("release", VALUE), "--seoib": ("seoib", VALUE),
        "--cmdline": ("cmdline", VALUE), "--kernel": ("kernel", VALUE),
        "--stream-state": ("stream_state", VALUE), "--json": ("json", FLAG),
    },
    "preflight": {
        "--dest": ("dest", APPEND), "--dest-args": ("dest_args", VALUE),
        "--source-host": ("source_host", VALUE), "--release": ("release", VALUE),
        "--build": ("release", VALUE), "--seoib": ("seoib", VALUE),
        "--cmdline": ("cmdline", VALUE), "--libvirt": ("libvirt", VALUE),
        "--qmp": ("qmp", VALUE), "--connect": ("connect", VALUE),
        "--domain": ("domain", VALUE), "--source-state": ("source_state", VALUE),
        "--state": ("state", VALUE), "--json": ("json", FLAG), "--fleet": ("fleet", VALUE),
        "--hosts": ("hosts", VALUE), "-o": ("output", VALUE), "--output": ("output", VALUE),
        "--expand-hosts": ("expand_hosts", FLAG), "--summary": ("summary", VALUE),
        "--summary-output": ("summary_output", VALUE),
    },
}


# Options whose value argparse checks against a list: anything else goes to argparse.
CHOICES: dict[str, tuple[str, ...]] = {"summary": ("md", "html", "json")}


def parse_ours(command: str, ours: list[str]) -> SimpleNamespace | None:
    """The namespace argparse would make from ``ours``, or None to let argparse decide."""
    spec = OPTIONS.get(command)
    if spec is None:
        return None
    values: dict[str, object] = {"command": command}
    for dest, kind in spec.values():
        values[dest] = [] if kind == APPEND else False if kind == FLAG else None
    i = 0
    while i < len(ours):
        token = ours[i]
        name, eq, value = token.partition("=")
        known = spec.get(name)
        if known is None or (eq and not name.startswith("--")):
            return None  # -o=FILE means "=FILE" to argparse: let it say so
        dest, kind = known
        if kind == FLAG:
            if eq:
                return None
            values[dest] = True
            i += 1
            continue
        if not eq:
            if i + 1 >= len(ours):
                return None
            value = ours[i + 1]
            i += 1
            if value.startswith("-") and " " not in value:
                return None  # argparse's call: an option where a value should be
        i += 1
        if dest in CHOICES and value not in CHOICES[dest]:
            return None  # argparse says which values it takes
        if kind == APPEND:
            values[dest] = [*values[dest], value]  # type: ignore[misc]
        else:
            values[dest] = value
    return SimpleNamespace(**values)
