"""Shell completion (issue 18): ``machines completion bash|zsh`` and ``machines __complete``.

The shell scripts are thin: on TAB they call ``machines __complete CWORD WORDS...`` (the
word index and the command line so far, as bash's ``COMP_CWORD``/``COMP_WORDS`` give them) and
offer what it prints, one candidate a line; when it prints nothing, the shell completes file
names (an XML, a host profile, a socket...).  What is offered:

* the subcommands, and each subcommand's options (from its own parser, so never stale);
* after ``--release``/``--build``/``--old``/``--new``: the shipped builds; ``--seoib``: the
  designs; ``--kernel`` and the other kernel options: ``host`` and the shipped kernel profiles;
  ``--dest``/``--source-host``: ``KERNEL/QEMU`` pairs of those (or a file);
* after QEMU's ``-M``/``-machine`` (resolve, preflight, seoib-designs) and for ``show`` and
  ``compare``: the machine types the chosen build (``--release`` on the line, else the
  default) registers, aliases included;
* after ``--domain``: the domains of the libvirt ``--connect`` names (``virsh list --all``);
* an option with fixed choices (``--format``, ``--color``...): those choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BASH = r"""# bash completion for machines; load with: source <(machines completion bash)
_machines() {
    local IFS=$'\n'
    COMPREPLY=($(machines __complete "$COMP_CWORD" "${COMP_WORDS[@]}" 2>/dev/null))
}
complete -o default -o nosort -F _machines machines
"""

ZSH = r"""#compdef machines
# zsh completion for machines; load with: source <(machines completion zsh)
_machines() {
    local -a candidates
    candidates=("${(@f)$(machines __complete $((CURRENT - 1)) "${words[@]}" 2>/dev/null)}")
    if (( ${#candidates} )) && [[ -n ${candidates[1]} ]]; then
        compadd -Q -- "${candidates[@]}"
    else
        _files
    fi
}
if (( $+functions[compdef] )); then
    compdef _machines machines
fi
"""

SCRIPTS = {"bash": BASH, "zsh": ZSH}
RELEASE_OPTIONS = ("--release", "--build", "--old", "--new")
KERNEL_OPTIONS = ("--kernel", "--source-kernel", "--old-kernel", "--new-kernel")
HOST_OPTIONS = ("--dest", "--source-host")
MACHINE_OPTIONS = ("-M", "-machine", "--machine")
QEMU_COMMANDS = ("resolve", "preflight", "seoib-designs")
QEMU_OPTIONS = ("-M", "-machine", "-accel", "-cpu", "-device", "-global", "-incoming",
                "-loadvm", "-smp", "-m")
DESIGNS = ("none", "rfc-v2", "gated", "opt-in")


def script(shell: str) -> str:
    return SCRIPTS[shell]


def _release(words: Sequence[str]) -> str | None:
    for i, word in enumerate(words):
        name, eq, value = word.partition("=")
        if name in ("--release", "--build"):
            if eq:
                return value
            if i + 1 < len(words):
                return words[i + 1]
    return None


def _machine_names(words: Sequence[str]) -> list[str]:
    from machines.registry import get_build

    try:
        build = get_build(_release(words))
    except Exception:  # a half-typed --release: offer nothing rather than fail
        return []
    return [*sorted(build.aliases), *(m.name for m in build.registered())]


def _domains(words: Sequence[str]) -> list[str]:
    """The domains of the libvirt named by --connect on the line (virsh, 5 s at most)."""
    import subprocess

    uri = "qemu:///system"
    for i, word in enumerate(words[:-1]):
        if word == "--connect":
            uri = words[i + 1]
        elif word.startswith("--connect="):
            uri = word.partition("=")[2]
    try:
        done = subprocess.run(["virsh", "-q", "-c", uri, "list", "--all", "--name"],
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return sorted(n for n in done.stdout.split() if n) if done.returncode == 0 else []


def _kernels() -> list[str]:
    from kvmglue.profile import shipped_names

    return ["host", *shipped_names()]


def _builds() -> list[str]:
    from machines.registry import build_names

    return build_names()


def _subparser(command: str) -> Any:
    if command == "probe":
        from machines.probe import _parser as probe_parser

        return probe_parser()
    from machines.cli import _parser

    parser = _parser(command)
    action = next(a for a in parser._actions if a.dest == "command")
    choices: Any = action.choices
    return choices.get(command)


def candidates(cword: int, words: Sequence[str]) -> list[str]:
    """What may go at ``words[cword]`` (``words[0]`` is the program)."""
    from machines.cli import _SUBCOMMANDS

    words = list(words) + [""] * max(0, cword + 1 - len(words))
    cur = words[cword]
    if cword <= 1:
        first = list(_SUBCOMMANDS) if not cur.startswith("-") else ["--help", "--version"]
        return [w for w in first if w.startswith(cur)]
    command, prev = words[1], words[cword - 1]
    if command == "completion":
        return [s for s in SCRIPTS if s.startswith(cur)] if cword == 2 else []
    if command not in _SUBCOMMANDS:
        return []
    found: list[str] | None = _values(command, prev, words)
    if found is None:
        if cur.startswith("-"):
            found = _options(command)
        elif command in ("show", "compare"):
            found = _machine_names(words)
        else:
            return []
    return [w for w in found if w.startswith(cur)]


def _values(command: str, prev: str, words: Sequence[str]) -> list[str] | None:
    """Values for the option ``prev``, [] for a free value, None when ``prev`` takes none."""
    if prev in RELEASE_OPTIONS:
        return _builds()
    if prev == "--seoib":
        return list(DESIGNS)
    if prev in KERNEL_OPTIONS:
        return _kernels()
    if prev in HOST_OPTIONS:
        return [f"{k}/{b}" for k in _kernels() for b in _builds()]
    if command in QEMU_COMMANDS and prev in MACHINE_OPTIONS:
        return _machine_names(words)
    if prev == "--connect":
        return ["qemu:///system", "qemu:///session"]
    if prev == "--domain":
        return _domains(words)
    if prev == "--simulate" and command == "probe":
        from kvmglue.kernels import kernel_names

        return list(kernel_names())
    parser = _subparser(command)
    for action in parser._actions if parser is not None else ():
        if prev in action.option_strings:
            if action.nargs == 0:
                return None
            return [str(c) for c in action.choices] if action.choices else []
    if command in QEMU_COMMANDS and prev in QEMU_OPTIONS:
        return []
    return None


def _options(command: str) -> list[str]:
    parser = _subparser(command)
    found = [o for a in (parser._actions if parser is not None else ())
             for o in a.option_strings if o.startswith("--") or o == "-o"]
    if command in QEMU_COMMANDS:
        found += QEMU_OPTIONS
    return found


def main(argv: Sequence[str]) -> int:
    """``machines __complete CWORD WORD...``: candidates, one a line; never fails loudly."""
    try:
        cword = int(argv[0])
        found = candidates(cword, argv[1:])
    except Exception:  # completion must never print a traceback into a prompt
        return 0
    if found:
        print("\n".join(found))
    return 0
