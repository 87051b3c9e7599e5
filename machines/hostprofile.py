"""Host profiles: a kernel profile plus the QEMU build a host runs.

A host profile is what pre-flight judges a destination by.  Its JSON form::

    {"schema": "machines/host-profile/v1",
     "name": "host-a",
     "kernel": { ...a machines/kernel-profile/v1 document... },
     "qemu": {"release": "10.2"}            (a build this tool ships)
          or {"import": { ...a machines/qemu-build/v1 document... }}}

``qemu`` may add ``"seoib": "rfc-v2"`` (``none``, ``rfc-v2``, ``gated[:VERSION]``,
``opt-in``): one of the SEOIB RFC's designs laid over that build.  On the
command line the same is ``KERNEL/QEMU+DESIGN`` (``linux-7.0/10.2+rfc-v2``).

``machines probe --qemu BINARY -o FILE`` writes one for this host.  On the
command line a host is such a file, or a pair of shipped names
``KERNEL/QEMU`` (``linux-6.12/10.2``), where KERNEL may be ``host`` (probe
this machine now).
"""

import os
from collections.abc import Callable
from typing import Any, NamedTuple

from kvmglue.profile import KernelProfile, shipped_names
from machines.build import Build
from machines.errors import DataError, UsageError
from machines.fileio import atomic_write_json
from machines.registry import build_from_import, build_names, check_import, get_build
from machines.schema import check_schema, get, load_json

SCHEMA = "machines/host-profile/v1"


class HostProfile(NamedTuple):
    name: str
    kernel: KernelProfile
    build: Build
    qemu: dict[str, Any]  # the "qemu" member as written, for saving


def host_profile_json(name: str, kernel: KernelProfile, qemu: dict[str, Any]) -> dict[str, Any]:
    return {"schema": SCHEMA, "name": name, "kernel": kernel.to_json(), "qemu": qemu}


def save(profile: HostProfile, path: str | os.PathLike[str]) -> None:
    atomic_write_json(path, host_profile_json(profile.name, profile.kernel, profile.qemu))


def from_json(doc: Any, where: str, memo: dict[str, Any] | None = None) -> HostProfile:
    """A host profile; ``memo`` (a dict the caller keeps) shares the kernel profiles and
    imported builds of many hosts that carry the same documents (a fleet's host list)."""
    check_schema(doc, "host-profile", 1, where)
    name = get(doc, "name", str, where)
    kernel_doc = get(doc, "kernel", dict, where)
    kernel = _memo(memo, "kernel", kernel_doc,
                   lambda: KernelProfile.from_json(kernel_doc, f"{where}: kernel"))
    qemu = get(doc, "qemu", dict, where)
    if "release" in qemu:
        release = get(qemu, "release", str, where)
        if release not in build_names():
            raise DataError(f"{where}: field qemu.release names an unknown build {release!r}")
        build = get_build(release)
    elif "import" in qemu:
        import_doc = get(qemu, "import", dict, where)

        def imported_build() -> Build:
            imported = check_import(import_doc, f"{where}: qemu.import")
            return build_from_import(imported, str(imported["qemu"]["version"]))

        build = _memo(memo, "import", import_doc, imported_build)
        if memo is not None:  # keep one copy of a document many hosts carry
            qemu = {**qemu, "import": memo.setdefault(f"doc:{id(build)}", import_doc)}
    else:
        raise DataError(f"{where}: field qemu needs 'release' or 'import'")
    if "seoib" in qemu:  # a SEOIB design laid over the host's build
        from machines.i386.designs import overlay, parse_design

        design = get(qemu, "seoib", str, where)
        try:
            build = overlay(build, parse_design(design))
        except UsageError as err:
            raise DataError(f"{where}: field qemu.seoib: {err}") from None
    return HostProfile(name, kernel, build, qemu)


def _memo(memo: dict[str, Any] | None, kind: str, doc: dict[str, Any],
          make: Callable[[], Any]) -> Any:
    """``make()``, once per distinct document (only what parsed without error is kept)."""
    if memo is None:
        return make()
    import json

    key = kind + json.dumps(doc)  # exact text: 1 and true stay different documents
    found = memo.get(key)
    if found is None:
        found = memo[key] = make()
    return found


def load(path: str | os.PathLike[str]) -> HostProfile:
    return from_json(load_json(path, "host profile"), str(path))


def from_spec(spec: str) -> HostProfile:
    """``--dest``/``--source-host``: a host-profile file or ``KERNEL/QEMU``."""
    from machines.kernels import kernel_profile

    if os.path.isfile(spec):
        return load(spec)
    kernel_name, sep, release = spec.rpartition("/")
    if not sep or not kernel_name or not release:
        raise UsageError(f"host '{spec}': give a host-profile file or KERNEL/QEMU such as "
                         f"linux-6.12/10.2 (kernels: host, {', '.join(shipped_names())}; "
                         f"QEMU: {', '.join(build_names())})")
    from machines.i386.designs import split_build_name

    base, design = split_build_name(release)
    if base not in build_names():
        raise UsageError(f"host '{spec}': unknown QEMU build '{base}' "
                         f"(known: {', '.join(build_names())}; add +DESIGN for a SEOIB design)")
    qemu: dict[str, Any] = {"release": base}
    if design is not None:
        qemu["seoib"] = design.label
    return HostProfile(spec, kernel_profile(kernel_name), get_build(release), qemu)
