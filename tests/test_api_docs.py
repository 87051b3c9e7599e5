"""The Python API (issue 18): docs/api.md's examples run, and the API equals the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import machines
from machines.cli import main

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), re.S | re.M)


def test_api_docs_examples_run() -> None:
    blocks = _blocks()
    assert len(blocks) >= 8
    namespace: dict[str, Any] = {"__name__": "api_docs"}
    for n, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"{DOC}:block{n}", "exec"), namespace)
        except Exception as err:  # name the block that failed
            raise AssertionError(f"docs/api.md block {n} failed: {err!r}\n{block}") from err


def test_all_names_load_and_are_documented() -> None:
    text = DOC.read_text()
    assert set(machines.__all__) == {*machines._API, "__version__"}
    for name in machines.__all__:
        assert getattr(machines, name) is not None
        if name[0].islower() and name != "__version__":
            assert name in text, f"{name} is not documented in docs/api.md"


def test_import_machines_is_cheap() -> None:
    out = subprocess.run([sys.executable, "-c", "import machines, sys; print(sorted(m for m in "
                          "sys.modules if m.startswith('machines')))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['machines']"


def test_results_are_frozen() -> None:
    r = machines.resolve_config(["-M", "q35"], release="10.2")
    with pytest.raises(AttributeError):
        r.machine = "x"  # type: ignore[misc]
    doc = r.to_json()
    doc["machine"] = "changed"
    assert r.to_json()["machine"] == "pc-q35-10.2"


def _cli_json(capsys: Any, *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv", [
    ["-M", "pc-q35-10.0", "-accel", "kvm,kernel-irqchip=split"],
    ["-M", "pc-i440fx-7.2", "-accel", "tcg", "-device", "virtio-net-pci,id=n0"],
])
def test_resolve_json_equals_the_cli(capsys: Any, argv: list[str]) -> None:
    api = machines.resolve_config(argv, devices=["ioapic", "virtio-net-pci"], release="10.0.2",
                           kernel="linux-7.0")
    code, cli = _cli_json(capsys, "resolve", *argv, "--device", "ioapic", "--device",
                          "virtio-net-pci", "--release", "10.0.2", "--kernel", "linux-7.0",
                          "--json")
    assert code == 0 and api.to_json() == cli


def test_preflight_json_equals_the_cli(capsys: Any) -> None:
    argv = ["-M", "pc-q35-10.0", "-accel", "kvm,kernel-irqchip=split"]
    dests = ["linux-6.12/7.2", "linux-7.0/10.2+rfc-v2"]
    api = machines.judge_preflight(argv, dest=dests, release="10.0.2", source_host=None)
    code, cli = _cli_json(capsys, "preflight", "--dest", dests[0], "--dest", dests[1],
                          "--release", "10.0.2", "--json", *argv)
    assert api.to_json() == cli and api.exit_code == code


def test_api_never_prints(capsys: Any) -> None:
    split = ["-M", "pc-q35-10.2", "-accel", "kvm,kernel-irqchip=split,seoib-policy=respected"]
    answers = machines.decide_seoib(split, release="10.2", seoib="opt-in", kernel="linux-6.12")
    assert answers and all(a.refused for a in answers)  # refused, said in the result
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
