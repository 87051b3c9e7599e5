"""Shell completion, --version and --help examples (issue 18), in a real bash and zsh."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import Any

import pytest
from conftest import missing

from machines.cli import _SUBCOMMANDS, main
from machines.registry import IMPORTED, MODEL_RELEASES

BIN = os.path.dirname(sys.executable)
BASH = shutil.which("bash")


def _shell(argv: list[str], script: str) -> str:
    """``script`` run by a real shell (``argv``), with the installed machines on PATH."""
    if not os.access(os.path.join(BIN, "machines"), os.X_OK):
        pytest.skip("needs the installed machines script next to this Python")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    done = subprocess.run([*argv, "-c", script], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _bash(script: str) -> str:
    if BASH is None:
        pytest.skip("needs bash")
    return _shell([BASH, "--norc", "--noprofile"], script)


def _complete(*words: str) -> list[str]:
    """A scripted completion: COMP_WORDS/COMP_CWORD set, the function called."""
    quoted = " ".join(f"'{w}'" for w in words)
    out = _bash(f"""source <(machines completion bash)
COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
_machines
printf '%s\\n' "${{COMPREPLY[@]}}"
""")
    return [line for line in out.splitlines() if line]


def test_complete_p_after_sourcing() -> None:
    out = _bash("source <(machines completion bash); complete -p machines")
    assert "-F _machines" in out and out.strip().endswith("machines")


def test_subcommands() -> None:
    assert _complete("machines", "pr") == ["preflight", "probe"]
    assert _complete("machines", "") == list(_SUBCOMMANDS)


def test_options_of_a_subcommand() -> None:
    found = _complete("machines", "preflight", "--d")
    assert {"--dest", "--dest-args", "--domain"} <= set(found)
    assert _complete("machines", "matrix", "--format", "") == ["text", "md", "csv", "json", "html"]


def test_machine_types_of_the_chosen_build() -> None:
    found = _complete("machines", "resolve", "--release", "7.2", "-M", "pc-q35-7")
    assert found[0] == "pc-q35-7.2" and "pc-q35-7.0" in found
    assert "pc-q35-10.0" in _complete("machines", "show", "pc-q35-10")  # the default build
    assert "q35" in _complete("machines", "preflight", "-M", "q")


def test_builds_kernels_and_hosts() -> None:
    assert _complete("machines", "list", "--release", "") == [*MODEL_RELEASES, *IMPORTED]
    assert _complete("machines", "resolve", "--kernel", "") == \
        ["host", "linux-6.12", "linux-6.18.y-seoib", "linux-7.0"]
    assert "linux-7.0/10.0.2" in _complete("machines", "preflight", "--dest", "linux-7")
    assert _complete("machines", "resolve", "--seoib", "") == ["none", "rfc-v2", "gated",
                                                              "opt-in"]


def test_files_where_a_path_goes() -> None:
    assert _complete("machines", "preflight", "--libvirt", "") == []  # bash: -o default


def _zsh(script: str) -> str:
    zsh = shutil.which("zsh")
    if zsh is None:
        missing("zsh not installed", "MACHINES_REQUIRE_ZSH")
    return _shell([zsh, "-f"], script)


def _zsh_complete(*words: str) -> list[str]:
    """A scripted zsh completion: words/CURRENT set as zle would, _machines called, and
    what it hands compadd (or _files) printed, one per line."""
    quoted = " ".join(f"'{w}'" for w in words)
    out = _zsh(f"""source <(machines completion zsh)
compadd() {{ print -rl -- "${{@[3,-1]}}" }}  # compadd -Q -- CANDIDATES...
_files() {{ print -r -- '<files>' }}
words=({quoted}); CURRENT={len(words)}
_machines
""")
    return [line for line in out.splitlines() if line]


def test_zsh_script_parses() -> None:
    script = subprocess.run([sys.executable, "-m", "machines.cli", "completion", "zsh"],
                            capture_output=True, text=True, check=True).stdout
    _zsh(f"emulate zsh; {script}")


def test_zsh_completes_as_bash_does() -> None:
    for words in (("machines", "pr"), ("machines", "preflight", "--d"),
                  ("machines", "resolve", "--release", "7.2", "-M", "pc-q35-7"),
                  ("machines", "resolve", "--kernel", ""), ("machines", "list", "--release", "")):
        assert _zsh_complete(*words) == _complete(*words), words
    assert _zsh_complete("machines", "pr") == ["preflight", "probe"]
    assert _zsh_complete("machines", "preflight", "--libvirt", "") == ["<files>"]


def test_version_names_the_builds(capsys: Any) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("machines ")
    for name in (*MODEL_RELEASES, *IMPORTED):
        assert name in out
    assert "Debian 1:10.0.2+ds-2+deb13u1~bpo12+1" in out


@pytest.mark.parametrize("command", [None, *_SUBCOMMANDS])
def test_every_help_has_an_example(command: str | None, capsys: Any) -> None:
    argv = [command, "--help"] if command else ["--help"]
    with pytest.raises(SystemExit) as stop:
        main([a for a in argv if a])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    example = out.split("example:\n", 1)[1].strip().splitlines()[0]
    assert example.startswith(("machines ", "source <(machines"))
