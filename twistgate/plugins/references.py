"""
Finding code by name without importing the rest: ``module:attribute``
import references (how the built-ins are listed) and the installed entry
points of a group.  Plugins (`twistgate.plugins.registry`) and extensions
(`twistgate.plugins.extension_points`) are both found this way.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any, Tuple

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
    # Python 3.9 (PyPy): a dict of lists, with an entry point once per copy of
    # its distribution's metadata on the path (an editable install lists it twice).
    unique = {(entry.name, entry.value): entry for entry in found.get(group, ())}  # type: ignore[attr-defined]
    return tuple(unique.values())  # pragma: no cover
