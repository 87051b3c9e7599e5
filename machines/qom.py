"""The QOM type hierarchy and property defaults of one QEMU build.

A global property for ``virtio-pci`` reaches ``virtio-net-pci`` because QEMU
matches globals with ``object_dynamic_cast``: a type is "a" driver when the
driver is the type itself or one of its ancestors.  Properties and their
defaults come from ``device-list-properties``/``qom-list-properties`` of the
real binary (stored per type as the difference from its parent).

Two things QEMU does at instance time matter for effective values:

* virtio PCI proxies (``virtio-net-pci``) alias every property of their
  backend device (``virtio-net-device``); globals for the backend type reach
  the proxy's property through that alias.
* some properties have no static default and get their value when the object
  is created (CPU model features); the importer records those as
  ``instance`` defaults, read from a freshly created object.
"""

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from machines.values import Value


class PropertyInfo(NamedTuple):
    """A property as ``device-list-properties`` describes it."""

    name: str
    type: str
    default: Value | None
    has_default: bool
    description: str = ""
    default_origin: str = "type"  # "type", "instance", or a release id for model changes
    realized: Value | None = None  # differs from default after realize on a plain machine


_VIRTIO_PROXY_SUFFIXES = ("-pci-non-transitional", "-pci-transitional", "-pci")


class QomTypes:
    """Type hierarchy and merged property tables for one build."""

    def __init__(self, types: Mapping[str, Any], properties: Mapping[str, Any],
                 instances: Mapping[str, Any] | None = None) -> None:
        self.parents: dict[str, str | None] = {n: v[0] for n, v in types.items()}
        self.abstract: frozenset[str] = frozenset(n for n, v in types.items() if v[1])
        self._raw = properties  # PropertyInfo objects are made when a type is asked for
        self._own: dict[str, dict[str, PropertyInfo]] = {}
        self._instances: Mapping[str, Any] = instances or {}  # read only; may decode lazily
        self._merged: dict[str, dict[str, PropertyInfo]] = {}
        # caches: the hierarchy is fixed once loaded, overlays clear what depends on them
        self._ancestry: dict[str, tuple[str, ...]] = {}
        self._subtypes: dict[str, list[str]] = {}
        self._found: dict[tuple[str, str], PropertyInfo | None] = {}
        self._proxies: dict[str, str | None] = {}
        self._definers: dict[str, dict[str, str]] = {}

    def __contains__(self, typename: object) -> bool:
        return typename in self.parents

    def ancestry(self, typename: str) -> tuple[str, ...]:
        """``typename`` and its ancestors, nearest first."""
        chain = self._ancestry.get(typename)
        if chain is None:
            names: list[str] = []
            node: str | None = typename
            while node is not None and node not in names:
                names.append(node)
                node = self.parents.get(node)
            chain = self._ancestry[typename] = tuple(names)
        return chain

    def is_a(self, typename: str, ancestor: str) -> bool:
        return ancestor in self.ancestry(typename)

    def subtypes(self, ancestor: str) -> list[str]:
        found = self._subtypes.get(ancestor)
        if found is None:
            # Walk down from the ancestor (a cold pre-flight asks about virtio-pci once;
            # the ancestry of all ~750 types would cost it about 2 ms).
            children: dict[str | None, list[str]] = {}
            for name, parent in self.parents.items():
                children.setdefault(parent, []).append(name)
            seen, todo = {ancestor}, [ancestor]
            while todo:
                for child in children.get(todo.pop(), ()):
                    if child not in seen:
                        seen.add(child)
                        todo.append(child)
            found = self._subtypes[ancestor] = sorted(t for t in seen if t in self.parents)
        return found

    def proxy_backend(self, typename: str) -> str | None:
        """The backend device a virtio PCI proxy type aliases (None for other types).

        Worked out per type on demand: a cold start asks about one or two types,
        and walking all ~750 of them would cost more than the rest of a resolve.
        """
        if typename in self._proxies:
            return self._proxies[typename]
        found = None
        if (typename in self.parents and typename not in self.abstract
                and self.is_a(typename, "virtio-pci")):
            for suffix in _VIRTIO_PROXY_SUFFIXES:
                if typename.endswith(suffix):
                    stem = typename[: -len(suffix)]
                    for backend in (f"{stem}-device", stem):
                        if backend in self.parents and self.is_a(backend, "virtio-device"):
                            found = backend
                            break
                    break
        self._proxies[typename] = found
        return found

    def _own_of(self, typename: str) -> dict[str, PropertyInfo]:
        own = self._own.get(typename)
        if own is None:
            own = {name: PropertyInfo(name, str(p[0]), p[1], bool(p[2]),
                                      str(p[3]) if len(p) > 3 else "")
                   for name, p in self._raw.get(typename, {}).items()}
            self._own[typename] = own
        return own

    def add_type(self, typename: str, like: str) -> None:
        """Overlay a type (new in a model release) shaped like an existing one."""
        self.parents[typename] = self.parents[like]
        self._own[typename] = dict(self.own_properties(like))
        self._merged.clear()
        self._subtypes.clear()
        self._found.clear()
        self._proxies.clear()
        self._definers.clear()

    def find_property(self, typename: str, prop: str) -> PropertyInfo | None:
        """``prop`` on ``typename`` or, for an abstract type, on any subtype of it.

        A global for ``virtio-pci`` names a property that only some of its
        subtypes have; QEMU applies it to each object that has it.
        """
        key = (typename, prop)
        if key in self._found:
            return self._found[key]
        info = self.properties(typename).get(prop)
        if info is None and typename in self.abstract:
            # Merge the tables only of the first subtype that has it (cold start: merging
            # every subtype of virtio-pci costs more than the rest of a pre-flight).
            first = self._first_definers(typename).get(prop)
            info = self.properties(first).get(prop) if first is not None else None
        self._found[key] = info
        return info

    def _first_definers(self, abstract: str) -> dict[str, str]:
        """Each property name of a subtype of ``abstract``: the first subtype (by name)
        whose own tables, its proxy backend's or an ancestor's of either (what
        :meth:`properties` merges) name it, found without merging."""
        index = self._definers.get(abstract)
        if index is None:
            index = self._definers[abstract] = {}
            seen: set[str] = set()  # a table seen for an earlier subtype gave it its names
            for sub in self.subtypes(abstract):
                backend = self.proxy_backend(sub)
                for node in self.ancestry(sub) + (self.ancestry(backend) if backend else ()):
                    if node not in seen:
                        seen.add(node)
                        own = self._own.get(node)
                        for name in own if own is not None else self._raw.get(node, ()):
                            index.setdefault(name, sub)
        return index

    def add_property(self, typename: str, info: PropertyInfo) -> None:
        """Overlay a property (new in a model release) onto a type."""
        self._own_of(typename)[info.name] = info
        self._merged.clear()
        self._found.clear()
        self._definers.clear()

    def own_properties(self, typename: str) -> dict[str, PropertyInfo]:
        """Properties of the type itself (inherited ones included), no aliases."""
        if typename not in self._merged:
            merged: dict[str, PropertyInfo] = {}
            for node in reversed(self.ancestry(typename)):
                merged.update(self._own_of(node))
            for name, value in self._instance_values(typename).items():
                info = merged.get(name)
                if info is None:
                    continue
                if not info.has_default:  # set by the object itself when created
                    merged[name] = PropertyInfo(name, info.type, value, True, info.description,
                                                "instance")
                elif info.default_origin == "type" and value != info.default:
                    # realize changed it (an "auto" or "unspecified" sentinel)
                    merged[name] = PropertyInfo(name, info.type, info.default, True,
                                                info.description, "type", value)
            self._merged[typename] = merged
        return self._merged[typename]

    def _instance_values(self, typename: str) -> dict[str, Any]:
        """Values an object of ``typename`` showed when created (stored per ancestor)."""
        if typename not in self._instances:
            return {}  # never created by the importer: nothing is known
        values: dict[str, Any] = {}
        for node in reversed(self.ancestry(typename)):
            values.update(self._instances.get(node, {}))
        return values

    def properties(self, typename: str) -> dict[str, PropertyInfo]:
        """Every property an instance of ``typename`` shows, aliases included."""
        props = dict(self.own_properties(typename))
        backend = self.proxy_backend(typename)
        if backend is not None:
            props.update(self.own_properties(backend))
        return props

    def property_owner(self, typename: str, prop: str) -> str:
        """The type whose object really holds ``prop`` (the backend, for aliases)."""
        backend = self.proxy_backend(typename)
        if backend is not None and prop in self.own_properties(backend):
            return backend
        return typename

    def known(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.parents]
