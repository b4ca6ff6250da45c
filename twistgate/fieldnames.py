"""
`FieldNames`: a small set of header names asked "is any of you in this
`Headers.raw` dict?" on every request (hop-by-hop fields, framing fields,
the fields the gateway drops or writes itself).

On CPython it is a plain `frozenset`: ``isdisjoint(raw)`` walks the dict's
few keys in C.  On PyPy the same call first copies the dict's keys into a
new list (a set operation with an iterable that is not a set) and costs
~0.15 us each, five or six times a request; a loop over the set's own
names, each looked up in the dict, is a few nanoseconds once the JIT has
it.  So on PyPy `FieldNames` is a `frozenset` whose ``isdisjoint`` and
``intersection`` with a mapping do that loop (``intersection`` gives a
list: the callers only walk it).
"""

from __future__ import annotations

import platform
from typing import Any, Iterable, List

__all__ = ["FieldNames"]


class _LoopedFieldNames(frozenset):  # type: ignore[type-arg]
    """PyPy's `FieldNames`: set operations with a dict look each name up instead of copying the dict's keys."""

    __slots__ = ("_names",)

    def __init__(self, names: Iterable[bytes] = ()) -> None:
        self._names = tuple(self)  # a tuple's loop is a few operations a name, a set's iterator many more

    def isdisjoint(self, other: Any) -> bool:
        for name in self._names:
            if name in other:
                return False
        return True

    def intersection(self, other: Any) -> List[bytes]:  # type: ignore[override]
        return [name for name in self._names if name in other]


FieldNames: Any = _LoopedFieldNames if platform.python_implementation() == "PyPy" else frozenset
