"""
The field types an ``Options`` declaration may use, and what each means
twice over: how a value of that type is read from a YAML node (with an
issue recorded, never an exception, for a wrong value) and how the type is
said in words for ``twistgate plugins``.

Both follow one classification of the annotation (`_shape`), so a type
that can be read can always be described, and the two never disagree on
what ``Optional``, ``Literal``, a list or a mapping is.  The declarations
themselves (which fields, which defaults) are read in
`twistgate.plugins.options`, which re-exports `Duration`, `Size` and `Rate`
for plugin authors.
"""

from __future__ import annotations

import sys
import typing
from typing import Any, Callable, Dict, List, Mapping, NewType, Optional, Sequence, Tuple

from twistgate.config._node import Node
from twistgate.config.model import Rate

__all__ = ["Converter", "Duration", "Rate", "Size", "converter_for", "type_words"]

#: Seconds, written with a unit (``250ms``, ``30s``, ``5m``): a float.
Duration = NewType("Duration", float)
#: Bytes, written as ``64KiB``, ``10MiB`` or a plain integer: an int.
Size = NewType("Size", int)

Converter = Callable[[Node], Any]

_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):  # pragma: no branch
    import types

    _UNION_TYPES += (types.UnionType,)

_LIST_ORIGINS = (list, List, Sequence, typing.Sequence, tuple, Tuple, frozenset)
_MAPPING_ORIGINS = (dict, Dict, Mapping, typing.Mapping)


def _shape(annotation: Any) -> Tuple[str, Any, Tuple[Any, ...]]:
    """
    ``(form, origin, args)`` of a type that is not a simple one: the form is
    ``union``, ``literal``, ``list``, ``mapping`` or ``other``.  For a union
    the args are its members other than None, and the origin says whether
    None was one of them.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        members = tuple(a for a in args if a is not type(None))
        return "union", len(members) < len(args), members
    if origin is typing.Literal:
        return "literal", origin, args
    if origin in _LIST_ORIGINS:
        return "list", origin, args
    if origin in _MAPPING_ORIGINS:
        return "mapping", origin, args
    return "other", origin, args


def type_words(annotation: Any) -> str:
    """A field type as the documentation says it: ``duration``, ``list of string``, ``one of 'a', 'b'``."""
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return simple[1]
    form, origin, args = _shape(annotation)
    if form == "union":
        return " or ".join(type_words(a) for a in args) + (" or null" if origin else "")
    if form == "literal":
        return "one of " + ", ".join(repr(a) for a in args)
    if form == "list":
        return f"list of {type_words(args[0]) if args else 'any'}"
    if form == "mapping":
        return f"mapping of {type_words(args[1]) if len(args) > 1 else 'any'}"
    return getattr(annotation, "__name__", repr(annotation))


def converter_for(annotation: Any, where: str) -> Converter:
    """A node reader for one field type; `TypeError` for a type YAML cannot give."""
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return simple[0]
    form, origin, args = _shape(annotation)
    if form == "union":
        if len(args) == 1 and origin:  # Optional[X]
            inner = converter_for(args[0], where)
            return lambda node: None if node.is_null() else inner(node)
        raise TypeError(f"{where}: only Optional[X] unions are supported, not {annotation!r}")
    if form == "literal":
        return _literal(args)
    if form == "list":
        if origin in (tuple, Tuple) and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{where}: use Tuple[X, ...] for a list option, not {annotation!r}")
        item = converter_for(args[0] if args else Any, where)
        build: Callable[[List[Any]], Any] = list if origin in (list, List) else tuple
        if origin is frozenset:
            build = frozenset
        return lambda node: _items(node, item, build)
    if form == "mapping":
        if args and args[0] is not str:
            raise TypeError(f"{where}: mapping options have string keys, not {annotation!r}")
        value = converter_for(args[1] if args else Any, where)
        return lambda node: _entries(node, value)
    raise TypeError(f"{where}: cannot read an option of type {annotation!r} from YAML")


# -- readers by type -----------------------------------------------------------


def _string(node: Node) -> Optional[str]:
    return node.string(empty_ok=True)


def _number(node: Node) -> Optional[float]:
    if node.kind in ("integer", "number"):
        return float(node._constructed())
    if node.kind == "string":
        text = node._text()
        if text is None:
            return None
        try:
            return float(text)
        except ValueError:
            node.issue(f"expected a number, got {text!r}")
            return None
    node.issue(f"expected a number, got {node.describe()}")
    return None


def _literal(allowed: Tuple[Any, ...]) -> Converter:
    def read(node: Node) -> Any:
        if all(isinstance(a, str) for a in allowed):
            return node.choice(allowed)
        value = node.plain()
        if not any(value == a and type(value) is type(a) for a in allowed):
            node.issue(f"expected one of {', '.join(map(repr, allowed))}, got {node.describe()}")
            return None
        return value

    return read


def _items(node: Node, item: Converter, build: Callable[[List[Any]], Any]) -> Any:
    items = node.sequence()
    if items is None:
        return None
    values = [item(child) for child in items]
    return build(values)


def _entries(node: Node, value: Converter) -> Optional[Dict[str, Any]]:
    entries = node.entries()
    if entries is None:
        return None
    return {key: value(child) for key, child in entries}


#: The types read by one node method: their reader, and their name in the documentation.
_SIMPLE: Dict[Any, Tuple[Converter, str]] = {
    str: (_string, "string"),
    int: (lambda node: node.integer(), "integer"),
    float: (_number, "number"),
    bool: (lambda node: node.boolean(), "boolean"),
    Duration: (lambda node: node.duration(positive=False), "duration"),
    Size: (lambda node: node.size(), "size"),
    Rate: (lambda node: node.rate(), "rate"),
    Any: (lambda node: node.plain(), "any"),
    object: (lambda node: node.plain(), "any"),
}
