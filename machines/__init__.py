"""machines: QEMU's x86 machine types, their compat properties, and KVM SEOIB.

The public API for orchestrators is this package's namespace (``docs/api.md``)::

    from machines import load_build, resolve_config, decide_seoib, judge_preflight

(Not ``resolve``, ``preflight``, ``fleet``: those are modules of the package,
which would shadow a function of the same name once imported.)  The names
load lazily (a module ``__getattr__``), so ``import machines`` and the command
line's cold start do not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_FUNCTIONS = ("build_names", "decide_seoib", "judge_fleet", "judge_preflight", "load_build",
              "resolve_config", "write_host_profile")
_RESULTS = ("DestinationVerdict", "FleetResult", "Preflight", "Reason", "Resolution",
            "SeoibAnswer")
_ERRORS = ("DataError", "EnvironmentUnavailable", "MachinesError", "PowerOnRefused",
           "QmpSourceError", "UnknownMachineError", "UsageError")
# name -> module that defines it; loaded on first use.
_API = {**{n: "machines.api" for n in (*_FUNCTIONS, *_RESULTS)}, "Build": "machines.build",
        **{n: "machines.errors" for n in _ERRORS}}

__all__ = [  # the names of _API (a test checks it)
    "Build", "DataError", "DestinationVerdict", "EnvironmentUnavailable", "FleetResult",
    "MachinesError", "PowerOnRefused", "Preflight", "QmpSourceError", "Reason", "Resolution",
    "SeoibAnswer", "UnknownMachineError", "UsageError", "__version__", "build_names",
    "decide_seoib", "judge_fleet", "judge_preflight", "load_build", "resolve_config",
    "write_host_profile",
]

if TYPE_CHECKING:
    from machines.api import (
        DestinationVerdict,
        FleetResult,
        Preflight,
        Reason,
        Resolution,
        SeoibAnswer,
        build_names,
        decide_seoib,
        judge_fleet,
        judge_preflight,
        load_build,
        resolve_config,
        write_host_profile,
    )
    from machines.build import Build
    from machines.errors import (
        DataError,
        EnvironmentUnavailable,
        MachinesError,
        PowerOnRefused,
        QmpSourceError,
        UnknownMachineError,
        UsageError,
    )


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'machines' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
