"""
A small walker over PyYAML's node tree.

We validate nodes (from ``yaml.compose``), not the loaded Python values,
because nodes know their line.  Every reader records a `ConfigIssue` and
returns ``None`` instead of raising, so one pass reports every problem.
"""

from __future__ import annotations

import re
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    FrozenSet,
    List,
    Optional,
    Set,
    Tuple,
    TypeVar,
)

import yaml
from yaml.constructor import SafeConstructor

from twistgate._text import plural
from twistgate.config import _env, _yaml_errors
from twistgate.config._issues import Issues, closest, join, suggest
from twistgate.config._pending import not_implemented
from twistgate.config._units import parse_duration, parse_rate, parse_size
from twistgate.config.model import Location, Rate

T = TypeVar("T")
D = TypeVar("D")

_TAG = "tag:yaml.org,2002:"
_MERGE = _TAG + "merge"
_KINDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "timestamp": "date"}


def compose(text: str, issues: Issues) -> "Node | None":
    """Parse YAML into a root `Node`; syntax errors become issues."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        line, column, message = _yaml_errors.describe(e)
        issues.add(line, "", f"invalid YAML: {message}", column=column)
        return None
    except yaml.reader.ReaderError as e:
        line, column, message = _yaml_errors.describe_reader_error(e, text)
        issues.add(line, "", f"invalid YAML: {message}", column=column)
        return None
    except yaml.YAMLError as e:  # no mark: say so plainly rather than crash
        issues.add(0, "", f"invalid YAML: {type(e).__name__}")
        return None
    if root is None:
        issues.add(1, "", "the file is empty; it needs at least a 'listeners' section")
        return None
    return Node(root, "", issues)


class Node:
    """One YAML node, its key path, and the `Issues` to report into."""

    def __init__(self, node: yaml.Node, path: str, issues: Issues, key_line: Optional[int] = None):
        self.node = node
        self.path = path
        self.issues = issues
        self.key_line = key_line  # the line of the key this value belongs to

    # -- where and what ----------------------------------------------------

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def location(self, *, at_key: bool = False) -> Location:
        line = self.key_line if at_key and self.key_line is not None else self.line
        return Location(file=self.issues.file, line=line, path=self.path)

    def issue(self, message: str, *, at_key: bool = False) -> None:
        location = self.location(at_key=at_key)
        self.issues.add(location.line, location.path, message)

    @property
    def kind(self) -> str:
        """``mapping``, ``list``, ``null``, ``string``, ``integer``, ``boolean``..."""
        if isinstance(self.node, yaml.MappingNode):
            return "mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "list"
        tag = str(self.node.tag)
        short = tag[len(_TAG):] if tag.startswith(_TAG) else tag
        return _KINDS.get(short, short)

    def describe(self) -> str:
        """What was written, for "expected X, got Y" messages."""
        kind = self.kind
        if kind in ("mapping", "list", "null"):
            return kind
        return f"{kind} {self.node.value!r}"

    def _expected(self, what: str) -> None:
        hint = ""
        if self.kind in ("integer", "number", "boolean", "date") and what.startswith("a string"):
            hint = " (quote it to make it a string)"
        self.issue(f"expected {what}, got {self.describe()}{hint}")

    # -- scalars -------------------------------------------------------------

    def _constructed(self) -> Any:
        """The Python value of a non-string scalar (int, float, bool, None...)."""
        try:
            return SafeConstructor().construct_object(self.node, deep=True)
        except yaml.YAMLError:
            self.issue(f"unsupported YAML tag {self.node.tag!r}")
            return None

    def _text(self) -> Optional[str]:
        """A string scalar's value after ``${NAME}`` substitution."""
        text, problems = _env.substitute(str(self.node.value), self.issues.environ)
        for problem in problems:
            self.issue(problem)
        return None if problems else text

    def _from_environ(self) -> bool:
        return self.kind == "string" and _env.has_reference(str(self.node.value))

    def is_null(self) -> bool:
        return self.kind == "null"

    def string(self, *, empty_ok: bool = False) -> Optional[str]:
        if self.kind != "string":
            self._expected("a string")
            return None
        text = self._text()
        if text is not None and not text and not empty_ok:
            self.issue("must not be empty")
            return None
        return text

    def integer(self, *, min: Optional[int] = None) -> Optional[int]:
        """A YAML integer, or a numeric string that came from ``${NAME}``."""
        value: Optional[int] = None
        if self.kind == "integer":
            value = self._constructed()
        elif self._from_environ():
            text = self._text()
            if text is None:
                return None
            if not re.fullmatch(r"[+-]?\d+", text.strip()):
                self.issue(f"expected an integer, got {text!r} from the environment")
                return None
            value = int(text)
        else:
            self._expected("an integer")
            return None
        if value is not None and min is not None and value < min:
            self.issue(f"must be at least {min}, got {value}")
            return None
        return value

    def boolean(self) -> Optional[bool]:
        """A YAML boolean, or ``true``/``false`` that came from ``${NAME}``."""
        if self.kind == "boolean":
            return bool(self._constructed())
        if self._from_environ():
            text = self._text()
            if text is None:
                return None
            if text.strip().lower() in ("true", "false"):
                return text.strip().lower() == "true"
            self.issue(f"expected true or false, got {text!r} from the environment")
            return None
        self._expected("true or false")
        return None

    def convert(self, parse: Callable[[Any], T], expected: str) -> Optional[T]:
        """Run a unit parser over a scalar; its `ValueError` becomes an issue."""
        if self.kind == "string":
            value: Any = self._text()
            if value is None:
                return None
        elif self.kind in ("integer", "number"):
            value = self._constructed()
        else:
            self._expected(expected)
            return None
        try:
            return parse(value)
        except ValueError as e:
            self.issue(str(e))
            return None
        except (TypeError, AttributeError):
            if isinstance(value, str):
                raise
            # a number where the parser reads text only (a path, a host name)
            self._expected(expected)
            return None

    def duration(self, *, positive: bool = True) -> Optional[float]:
        seconds = self.convert(parse_duration, "a duration like 30s")
        if seconds is not None and positive and seconds <= 0:
            self.issue("must be longer than zero")
            return None
        return seconds

    def size(self, *, min: int = 0) -> Optional[int]:
        size = self.convert(parse_size, "a size like 64KiB")
        if size is not None and size < min:
            self.issue(f"must be at least {plural(min, 'byte')}, got {size}")
            return None
        return size

    def rate(self) -> Optional[Rate]:
        return self.convert(parse_rate, "a rate like 100/min")

    def choice(self, allowed: Collection[str], *, pending: Collection[str] = ()) -> Optional[str]:
        """One of ``allowed``; a ``pending`` value gets the not-implemented message."""
        text = self.string()
        if text is None or text in allowed:
            return text
        if text in pending:
            self.issue(f"{not_implemented(repr(text))}; use {' or '.join(map(repr, allowed))}")
        else:
            every = sorted(allowed) + sorted(pending)
            self.issue(f"unknown value {text!r}; expected one of {', '.join(every)}{suggest(text, every)}")
        return None

    # -- collections ---------------------------------------------------------

    def sequence(self, *, non_empty: bool = False) -> Optional[List["Node"]]:
        if self.kind != "list":
            self._expected("a list")
            return None
        items = [Node(n, f"{self.path}[{i}]", self.issues) for i, n in enumerate(self.node.value)]
        if non_empty and not items:
            self.issue("must not be empty")
        return items

    def entries(self) -> Optional[List[Tuple[str, "Node"]]]:
        """A mapping's ``(key, value)`` pairs; keys are strings as written."""
        if not isinstance(self.node, yaml.MappingNode):
            self._expected("a mapping")
            return None
        return [
            (key, Node(value, join(self.path, key), self.issues, key_line))
            for key, key_line, value in self._pairs(self.node, report=True, seen=frozenset())
        ]

    def _pairs(
        self, node: yaml.MappingNode, *, report: bool, seen: FrozenSet[int]
    ) -> List[Tuple[str, int, yaml.Node]]:
        """Explicit keys first, then ``<<`` merges; duplicate keys reported."""
        if id(node) in seen:
            self.issue("recursive YAML merge")
            return []
        seen = seen | {id(node)}
        lines: Dict[str, int] = {}
        pairs: List[Tuple[str, int, yaml.Node]] = []
        merged: List[Tuple[str, int, yaml.Node]] = []
        for key_node, value in node.value:
            line = int(key_node.start_mark.line) + 1
            if key_node.tag == _MERGE:
                sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
                for source in sources:
                    if isinstance(source, yaml.MappingNode):
                        merged.extend(self._pairs(source, report=False, seen=seen))
                    else:
                        self.issues.add(line, self.path, "'<<' takes a mapping or a list of mappings")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.add(line, self.path, "mapping keys must be strings")
                continue
            key = str(key_node.value)
            if key in lines:
                if report:
                    message = f"duplicate key {key!r} (first on line {lines[key]})"
                    self.issues.add(line, join(self.path, key), message)
                continue
            lines[key] = line
            pairs.append((key, line, value))
        for key, line, value in merged:
            if key not in lines:  # explicit keys override merged ones
                lines[key] = line
                pairs.append((key, line, value))
        return pairs

    def mapping(
        self,
        known: Collection[str],
        *,
        required: Collection[str] = (),
        pending: Collection[str] = (),
        ignored_prefix: Optional[str] = None,
    ) -> Optional["Fields"]:
        """
        A mapping with a fixed set of keys; unknown ones get a suggestion.
        Keys starting with `ignored_prefix` are skipped without a word.
        """
        entries = self.entries()
        if entries is None:
            return None
        fields: Dict[str, Node] = {}
        suggested: Set[Optional[str]] = set()
        for key, value in entries:
            if ignored_prefix is not None and key.startswith(ignored_prefix):
                continue
            if key in known:
                fields[key] = value
            elif key in pending:
                value.issue(not_implemented(repr(key)), at_key=True)
            else:
                match = closest(key, set(known) | set(pending))
                suggested.add(match)
                hint = f"; did you mean {match!r}?" if match else ""
                value.issue(f"unknown key {key!r}{hint}", at_key=True)
        for key in required:
            # A misspelt required key is reported once, as the misspelling.
            if key not in fields and key not in suggested:
                line = self.location(at_key=True).line  # `tls:`, not its first child
                self.issues.add(line, join(self.path, key), f"required key {key!r} is missing")
        return Fields(self, fields, suggested)

    def plain(self) -> Any:
        """Plain dicts, lists and scalars (plugin options), strings substituted."""
        return self._plain(frozenset())

    def _plain(self, seen: FrozenSet[int]) -> Any:
        if id(self.node) in seen:
            self.issue("recursive YAML alias")
            return None
        seen = seen | {id(self.node)}
        if self.kind == "mapping":
            return {key: value._plain(seen) for key, value in self.entries() or ()}
        if self.kind == "list":
            return [item._plain(seen) for item in self.sequence() or ()]
        if self.kind == "string":
            return self._text()
        if self.kind == "date":
            return str(self.node.value)  # keep plugin options JSON-like
        return self._constructed()


class Fields:
    """The known keys of one mapping, read with defaults."""

    def __init__(self, owner: Node, nodes: Dict[str, Node], suggested: Collection[Optional[str]] = ()):
        self.owner = owner
        self.nodes = nodes
        self.suggested = suggested  # known keys offered for misspelt ones

    def __contains__(self, key: str) -> bool:
        return key in self.nodes

    def __getitem__(self, key: str) -> Node:
        return self.nodes[key]

    def read(self, key: str, convert: Callable[[Node], Optional[T]], default: D) -> "T | D":
        """
        ``convert(node)`` if the key is present, else ``default``.  An
        invalid value also gives ``default``: its issue is already recorded,
        so no config will be built from it.
        """
        node = self.nodes.get(key)
        if node is None:
            return default
        value = convert(node)
        return default if value is None else value
