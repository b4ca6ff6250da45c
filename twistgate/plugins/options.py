"""
Declared options: a factory says which options it takes, with their types,
and the gateway validates and converts them when the configuration is read
(``twistgate check``, startup, reload), with file, line and key path for
every mistake and "did you mean" for unknown keys.

A factory declares its options as a frozen dataclass or attrs class in its
``Options`` attribute::

    @dataclasses.dataclass(frozen=True)
    class Options:
        url: str                      # no default: required
        interval: Duration = 5.0      # "5s" in YAML, seconds here
        tags: List[str] = ()

    def my_factory(options): ...
    my_factory.Options = Options

Field types: ``str``, ``int``, ``float``, ``bool``, `Duration` (seconds),
`Size` (bytes), `Rate`, ``Literal[...]``, ``Optional[X]``, ``List[X]`` /
``Tuple[X, ...]``, ``Dict[str, X]`` and ``Any`` (the value as written).
Validators and ``__post_init__`` run too: their ``ValueError`` is a config
error.  The factory is handed a plain ``dict`` of the converted values,
defaults filled in.  Without ``Options`` the section is handed over as
written (plain dicts, lists and scalars), as pluggy plugins get theirs.

`OptionsSpec` is the one interface the readers use, so the built-ins whose
rules go beyond field types (JWT algorithms and keys, HTTP statuses) plug
their own node readers in with `ReaderOptions`, and any other section made
of reserved keys plus a plugin's options (pluggy plugins next) can reuse
`read_options` unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any, Callable, Collection, Dict, List, Mapping, NewType, Optional, Sequence, Tuple

import attrs
import yaml

from twistgate.config._node import Fields, Issues, Node, join
from twistgate.config.model import ConfigError, Rate

__all__ = [
    "Duration",
    "FreeOptions",
    "DeclaredOptions",
    "NO_OPTIONS",
    "OptionInfo",
    "OptionsSpec",
    "Rate",
    "ReaderOptions",
    "Size",
    "convert_options",
    "defaults_at",
    "options_spec",
    "peek",
    "read_options",
    "type_words",
    "with_options",
]

#: Seconds, written with a unit (``250ms``, ``30s``, ``5m``): a float.
Duration = NewType("Duration", float)
#: Bytes, written as ``64KiB``, ``10MiB`` or a plain integer: an int.
Size = NewType("Size", int)

Converter = Callable[[Node], Any]
_MISSING = object()


class OptionsSpec:
    """
    How one section's options are read.

    :ivar keys: the option names, or None when any key is accepted.
    :ivar required: the names that must be present.
    """

    keys: Optional[Tuple[str, ...]] = None
    required: Tuple[str, ...] = ()

    def _identity(self) -> Any:
        return type(self)

    # Equal declarations compare equal, so a reload that finds the same
    # extension with the same options keeps the upstream (and its state).
    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptionsSpec) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def known(self, fields_written: Collection[str], reserved: Collection[str]) -> Tuple[str, ...]:
        """The keys a section may hold: the reserved ones plus the options."""
        extra = fields_written if self.keys is None else self.keys
        return tuple(dict.fromkeys([*reserved, *extra]))

    def read(self, fields: Fields, reserved: Collection[str]) -> Optional[Dict[str, Any]]:
        """The converted options in `fields` (reserved keys skipped), or None if any was invalid."""
        raise NotImplementedError

    def describe(self) -> Optional[List["OptionInfo"]]:
        """Each option, for ``twistgate plugins``; None when any key is accepted (not declared)."""
        return [OptionInfo(name=key, documented=False) for key in self.keys or ()]


@attrs.frozen
class OptionInfo:
    """One declared option, in words: what ``twistgate plugins`` lists."""

    name: str
    type: str = ""
    required: bool = False
    default: Any = None
    doc: str = ""
    documented: bool = True  # False: only the name is known (a reader function), see the docs


class FreeOptions(OptionsSpec):
    """No declaration: every key is an option, handed over as written."""

    def describe(self) -> Optional[List[OptionInfo]]:
        return None

    def read(self, fields: Fields, reserved: Collection[str]) -> Optional[Dict[str, Any]]:
        return {key: node.plain() for key, node in fields.nodes.items() if key not in reserved}


class ReaderOptions(OptionsSpec):
    """Options read by a function of the section's `Fields` (built-ins with rules beyond types)."""

    def __init__(self, keys: Sequence[str], read: Callable[[Fields], Optional[Dict[str, Any]]], required: Sequence[str] = ()):
        self.keys = tuple(keys)
        self.required = tuple(required)
        self._read = read

    def _identity(self) -> Any:
        return (type(self), self.keys, self.required, self._read)

    def read(self, fields: Fields, reserved: Collection[str]) -> Optional[Dict[str, Any]]:
        return self._read(fields)


class DeclaredOptions(OptionsSpec):
    """Options declared by a dataclass or attrs class (see the module docstring)."""

    def __init__(self, cls: type) -> None:
        self.cls = cls
        hints = typing.get_type_hints(cls)
        self.fields: Dict[str, Tuple[Converter, Any]] = {}
        for name, default in _declared_fields(cls):
            self.fields[name] = (converter_for(hints.get(name, Any), f"{cls.__name__}.{name}"), default)
        self.keys = tuple(self.fields)
        self.required = tuple(name for name, (_, default) in self.fields.items() if default is _MISSING)

    def _identity(self) -> Any:
        return (type(self), self.cls)

    def describe(self) -> Optional[List[OptionInfo]]:
        hints = typing.get_type_hints(self.cls)
        docs = _field_docs(self.cls)
        found = []
        for name, (_, default) in self.fields.items():
            required = default is _MISSING
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = None if default.takes_self else default.factory()
            elif not required and _is_factory(self.cls, name):
                default = default()
            found.append(
                OptionInfo(
                    name=name,
                    type=type_words(hints.get(name, Any)),
                    required=required,
                    default=None if required else default,
                    doc=docs.get(name, ""),
                )
            )
        return found

    def read(self, fields: Fields, reserved: Collection[str]) -> Optional[Dict[str, Any]]:
        owner = fields.owner
        count = len(owner.issues.found)
        values: Dict[str, Any] = {}
        for name, (convert, _) in self.fields.items():
            node = fields.nodes.get(name)
            if node is None:
                continue
            if name in reserved:
                # The gateway's own key (interval, timeout...): the option gets
                # the value too; a mistake in it is the gateway's to report.
                quiet = Node(node.node, node.path, Issues(node.issues.file, node.issues.environ), node.key_line)
                value = convert(quiet)
                if not quiet.issues.found:
                    values[name] = value
            else:
                values[name] = convert(node)
        if len(owner.issues.found) != count or any(name not in values for name in self.required):
            return None
        try:
            instance = self.cls(**values)
        except (ValueError, TypeError) as error:
            owner.issue(f"invalid options: {error}", at_key=True)
            return None
        return _as_dict(instance)


#: The declaration of a factory that takes no options at all.
NO_OPTIONS: OptionsSpec = ReaderOptions((), lambda fields: {})

F = typing.TypeVar("F")


def with_options(declaration: Any) -> Callable[[F], F]:
    """Decorate a factory function with its ``Options`` (a class or an `OptionsSpec`)."""

    def declare(factory: F) -> F:
        factory.Options = declaration  # type: ignore[attr-defined]
        return factory

    return declare


def options_spec(factory: Any) -> OptionsSpec:
    """
    The declaration of `factory`'s options: its ``Options`` attribute, a
    dataclass / attrs class or an `OptionsSpec`; `FreeOptions` without one.

    :raises TypeError: ``Options`` is neither, or declares a type that
        cannot be read from YAML.
    """
    declared = getattr(factory, "Options", None)
    if declared is None:
        return FreeOptions()
    if isinstance(declared, OptionsSpec):
        return declared
    if isinstance(declared, type) and (dataclasses.is_dataclass(declared) or attrs.has(declared)):
        return DeclaredOptions(declared)
    raise TypeError(f"{declared!r} is not an options declaration: expected a dataclass or attrs class")


def read_options(
    node: Node,
    spec: OptionsSpec,
    reserved: Sequence[str] = (),
    *,
    required: Sequence[str] = (),
) -> Optional[Tuple[Fields, Optional[Dict[str, Any]]]]:
    """
    Read a section made of `reserved` keys (the gateway's own: ``type``,
    ``interval``...) plus the options `spec` declares.  Unknown keys are
    reported with the closest known one.  Returns the `Fields` (for the
    caller's reserved keys) and the options (None when invalid), or None
    when the section is not a mapping.
    """
    written = _written_keys(node)
    fields = node.mapping(spec.known(written, reserved), required=tuple(required) + spec.required)
    if fields is None:
        return None
    return fields, spec.read(fields, reserved)


def _written_keys(node: Node) -> List[str]:
    """The keys of a mapping node, merges included, without reporting anything (the mapping read does)."""
    if node.kind != "mapping":
        return []
    return [key for key, _, _ in node._pairs(node.node, report=False, seen=frozenset())]


def peek(node: Node, key: str) -> Optional[Node]:
    """
    The value of `key` in a mapping node, without reporting anything: for
    the ``type`` that decides which options the rest of the section holds.
    """
    if node.kind != "mapping":
        return None
    for name, line, value in node._pairs(node.node, report=False, seen=frozenset()):
        if name == key:
            return Node(value, join(node.path, key), node.issues, line)
    return None


def defaults_at(node: Node, spec: OptionsSpec) -> Optional[Dict[str, Any]]:
    """
    The options of a section written without any (``balance: my_balancer``):
    the declared defaults, or an issue at `node` when some are required.
    """
    if spec.required:
        node.issue(f"needs options ({', '.join(spec.required)}): write it as a mapping with 'type' and them")
        return None
    empty = yaml.MappingNode("tag:yaml.org,2002:map", [], start_mark=node.node.start_mark, end_mark=node.node.end_mark)
    fields = Node(empty, node.path, node.issues, node.key_line).mapping(())
    return spec.read(fields, ()) if fields is not None else None


def convert_options(spec: OptionsSpec, values: Mapping[str, Any], where: str = "options") -> Dict[str, Any]:
    """
    `values` (plain dicts, lists, scalars) converted as the configuration
    loader would: for factories built from code and in tests.

    :raises ConfigError: with every problem, located under `where`.
    """
    issues = Issues(file="<options>", environ={})
    try:
        text = yaml.safe_dump({where: dict(values)})
    except yaml.YAMLError as error:
        raise ValueError(f"options must be plain data: {error}") from None
    root = Node(yaml.compose(text, Loader=yaml.SafeLoader), "", issues)
    section = root.mapping((where,))
    result = read_options(section[where], spec) if section is not None else None
    if issues.found or result is None or result[1] is None:
        raise ConfigError(issues.found)
    return result[1]


# -- field declarations ------------------------------------------------------


def _declared_fields(cls: type) -> List[Tuple[str, Any]]:
    found: List[Tuple[str, Any]] = []
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            if field.default is not dataclasses.MISSING:
                default: Any = field.default
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory
            else:
                default = _MISSING
            found.append((field.name, default))
        return found
    for attribute in attrs.fields(cls):
        if attribute.init:
            default = _MISSING if attribute.default is attrs.NOTHING else attribute.default
            found.append((attribute.alias or attribute.name, default))
    return found


def _field_docs(cls: type) -> Dict[str, str]:
    """The ``metadata={"doc": ...}`` of each field."""
    if dataclasses.is_dataclass(cls):
        return {f.name: str(f.metadata.get("doc", "")) for f in dataclasses.fields(cls)}
    return {a.alias or a.name: str(a.metadata.get("doc", "")) for a in attrs.fields(cls)}


def _is_factory(cls: type, name: str) -> bool:
    """A dataclass field with a ``default_factory`` (its default is the factory)."""
    if dataclasses.is_dataclass(cls):
        return any(f.name == name and f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls))
    return False


_TYPE_WORDS: Dict[Any, str] = {
    str: "string", int: "integer", float: "number", bool: "boolean", Any: "any", object: "any",
    Duration: "duration", Size: "size", Rate: "rate",
}  # fmt: skip


def type_words(annotation: Any) -> str:
    """A field type as the documentation says it: ``duration``, ``list of string``, ``one of 'a', 'b'``."""
    simple = _TYPE_WORDS.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        rest = [a for a in args if a is not type(None)]
        return " or ".join(type_words(a) for a in rest) + (" or null" if len(rest) < len(args) else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, List, Sequence, typing.Sequence, tuple, Tuple, frozenset):
        return f"list of {type_words(args[0]) if args else 'any'}"
    if origin in (dict, Dict, Mapping, typing.Mapping):
        return f"mapping of {type_words(args[1]) if len(args) > 1 else 'any'}"
    return getattr(annotation, "__name__", repr(annotation))


def _as_dict(instance: Any) -> Dict[str, Any]:
    if dataclasses.is_dataclass(instance):
        return {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}
    return attrs.asdict(instance, recurse=False)


# -- converters by type ------------------------------------------------------

_UNION_TYPES: Tuple[Any, ...] = (typing.Union,)
if sys.version_info >= (3, 10):  # pragma: no branch
    import types

    _UNION_TYPES += (types.UnionType,)


def converter_for(annotation: Any, where: str) -> Converter:
    """A node reader for one field type; `TypeError` for a type YAML cannot give."""
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return simple
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = converter_for(rest[0], where)
            return lambda node: None if node.is_null() else inner(node)
        raise TypeError(f"{where}: only Optional[X] unions are supported, not {annotation!r}")
    if origin is typing.Literal:
        return _literal(args)
    if origin in (list, List, Sequence, typing.Sequence, tuple, Tuple, frozenset):
        if origin in (tuple, Tuple) and not (len(args) == 2 and args[1] is Ellipsis):
            raise TypeError(f"{where}: use Tuple[X, ...] for a list option, not {annotation!r}")
        item = converter_for(args[0] if args else Any, where)
        build: Callable[[List[Any]], Any] = list if origin in (list, List) else tuple
        if origin is frozenset:
            build = frozenset
        return lambda node: _items(node, item, build)
    if origin in (dict, Dict, Mapping, typing.Mapping):
        if args and args[0] is not str:
            raise TypeError(f"{where}: mapping options have string keys, not {annotation!r}")
        value = converter_for(args[1] if args else Any, where)
        return lambda node: _entries(node, value)
    raise TypeError(f"{where}: cannot read an option of type {annotation!r} from YAML")


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


_SIMPLE: Dict[Any, Converter] = {
    str: _string,
    int: lambda node: node.integer(),
    float: _number,
    bool: lambda node: node.boolean(),
    Duration: lambda node: node.duration(positive=False),
    Size: lambda node: node.size(),
    Rate: lambda node: node.rate(),
    Any: lambda node: node.plain(),
    object: lambda node: node.plain(),
}
