"""
Finding code by name without importing the rest: ``module:attribute``
import references (how the built-ins are listed) and the installed entry
points of a group.  Plugins (`twistgate.plugins.registry`) and extensions
(`twistgate.plugins.extension_points`) are both found this way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, NamedTuple, Tuple

__all__ = ["entry_points", "import_reference"]


def import_reference(reference: str) -> Any:
    """The object a ``package.module:Name.attribute`` reference names, imported now."""
    module_name, _, attribute = reference.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in filter(None, attribute.split(".")):
        target = getattr(target, part)
    return target


def entry_points(group: str) -> Tuple[importlib.metadata.EntryPoint, ...]:
    """The entry points installed now in `group` (nothing is loaded)."""
    found = importlib.metadata.entry_points()
    if hasattr(found, "select"):  # Python >= 3.10
        return tuple(found.select(group=group))
    # Python 3.9 (PyPy): entry points know neither their distribution (`.dist`,
    # which the plugin listings show) nor are they listed once: an editable
    # install puts its metadata on the path twice.  Read them per distribution.
    unique: dict = {}
    for dist in importlib.metadata.distributions():  # pragma: no cover - Python 3.9
        for entry in dist.entry_points:
            if entry.group == group and (entry.name, entry.value) not in unique:
                entry.dist = _Dist(dist.metadata["Name"], dist.version)  # type: ignore[attr-defined]
                unique[(entry.name, entry.value)] = entry
    return tuple(unique.values())


class _Dist(NamedTuple):
    """What the listings read of an entry point's distribution (`EntryPoint.dist` on Python >= 3.10)."""

    name: str
    version: str
