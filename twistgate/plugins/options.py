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
``Tuple[X, ...]``, ``Dict[str, X]`` and ``Any`` (the value as written;
each type's reader is in `twistgate.plugins.option_types`).
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
import typing
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple

import attrs
import yaml

from twistgate.config._issues import Issues, join
from twistgate.config._node import Fields, Node
from twistgate.config.model import ConfigError
from twistgate.plugins.option_types import Converter, Duration, Rate, Size, converter_for, type_words

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


def _as_dict(instance: Any) -> Dict[str, Any]:
    if dataclasses.is_dataclass(instance):
        return {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}
    return attrs.asdict(instance, recurse=False)
