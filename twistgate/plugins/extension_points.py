"""
The four extension points for pip packages, and the one registry that
resolves their names: built-in and third-party alike.

=========================  ==========================  =====================================
entry-point group          configured as               the object's one method
=========================  ==========================  =====================================
``twistgate.balancers``    ``balance: NAME``           ``choose(targets, request)``
``twistgate.health_checks`` ``health_check: {type}``   ``check(target)``
``twistgate.authenticators`` ``auth.X: {type}``        ``authenticate(request)``
``twistgate.discovery``    ``targets_from: {type}``    ``targets()``
=========================  ==========================  =====================================

Each entry point names a factory, called once per configuration generation
as ``factory(options)`` (and ``factory(options, context=...)`` when it has a
``context`` parameter: the gateway's clock, random generator and side HTTP
client).  The built-ins are a static table of the same kind of factories,
merged in front of the entry points: they work from a source tree that was
never installed, cost no entry-point scan, and cannot be shadowed by a
package that happens to use the same name.  Only configured names are
imported, so an installed but unused package can neither break nor slow the
gateway.  See docs/extensions.md.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import inspect
from contextvars import ContextVar
from random import Random
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

import attrs

from twistgate.config._issues import suggest
from twistgate.config._node import Node
from twistgate.config.model import ConfigError, ConfigIssue, Location
from twistgate.plugins.options import OptionsSpec, options_spec
from twistgate.plugins.references import entry_points, import_reference

__all__ = [
    "AUTHENTICATORS",
    "BALANCERS",
    "BUILTINS",
    "DISCOVERY",
    "GROUPS",
    "HEALTH_CHECKS",
    "Extension",
    "ExtensionChoice",
    "ExtensionContext",
    "ExtensionRegistry",
    "UnknownExtension",
    "current_registry",
    "resolve",
    "using_extensions",
]

BALANCERS = "twistgate.balancers"
HEALTH_CHECKS = "twistgate.health_checks"
AUTHENTICATORS = "twistgate.authenticators"
DISCOVERY = "twistgate.discovery"

#: Each group and the one method its objects have.
GROUPS: Mapping[str, str] = {
    BALANCERS: "choose",
    HEALTH_CHECKS: "check",
    AUTHENTICATORS: "authenticate",
    DISCOVERY: "targets",
}

#: The built-ins, as import references (imported only when configured).
BUILTINS: Mapping[str, Mapping[str, str]] = {
    BALANCERS: {
        name: f"twistgate.upstream.balancer:{name}"
        for name in (
            "round_robin", "least_connections", "ip_hash", "consistent_hash", "random", "least_response_time",
        )  # fmt: skip
    },
    HEALTH_CHECKS: {
        "http": "twistgate.upstream.checks:http",
        "tcp": "twistgate.upstream.checks:tcp",
        "grpc": "twistgate.upstream.checks:grpc",
    },
    AUTHENTICATORS: {
        name: f"twistgate.policies.auth.builtins:{name}" for name in ("api_key", "jwt", "basic", "mtls", "forward")
    },
    DISCOVERY: {
        "dns": "twistgate.upstream.dns_source:dns",
        "consul": "twistgate.upstream.consul:consul",
    },
}

Source = Union[str, Callable[..., Any], importlib.metadata.EntryPoint]


class UnknownExtension(LookupError):
    """No built-in and no entry point of that group has the name."""


@attrs.frozen
class ExtensionContext:
    """
    What a factory with a ``context`` parameter receives besides its options.

    :ivar name: the extension's name (``consul``, ``my_balancer``).
    :ivar owner: where it is configured (``upstreams.users``, ``auth.corp``).
    :ivar clock: the gateway's clock (an ``IReactorTime``; the reactor in
        production): use it for every timer and timestamp.
    :ivar rng: a ``random.Random`` (seeded in tests).
    :ivar http_client: a ``treq.HTTPClient`` for side calls, or None.
    :ivar internal: what twistgate's own built-ins need from the gateway
        (the forwarding path, the auth service, the DNS resolver); not an
        interface for third-party code.
    """

    name: str
    owner: str
    clock: Any
    rng: Random = attrs.field(factory=Random)
    http_client: Any = None
    internal: Any = None


@attrs.frozen
class Extension:
    """A resolved name: its factory and the options it declares."""

    group: str
    name: str
    factory: Callable[..., Any]
    options: OptionsSpec = attrs.field(eq=False)
    builtin: bool = attrs.field(default=False, eq=False)
    origin: str = attrs.field(default="", eq=False)  # where it comes from, for errors

    @property
    def method(self) -> str:
        return GROUPS[self.group]

    def create(self, options: Mapping[str, Any], context: ExtensionContext) -> Any:
        """
        Call the factory; check the object has the group's method.

        :raises Exception: whatever the factory raised.
        :raises TypeError: the object lacks the method.
        """
        if _takes_context(self.factory):
            made = self.factory(dict(options), context=context)
        else:
            made = self.factory(dict(options))
        if not callable(getattr(made, self.method, None)):
            raise TypeError(f"the factory returned {made!r}, which has no {self.method}() method")
        return made


@attrs.frozen(kw_only=True)
class ExtensionChoice:
    """A configured use of an extension: which one, its converted options, where it was written."""

    extension: Extension
    options: Mapping[str, Any] = attrs.field(factory=dict, repr=False)  # may hold secrets (tokens)
    location: Location = attrs.field(default=Location(), eq=False)

    @property
    def name(self) -> str:
        return self.extension.name

    def create(self, context: ExtensionContext) -> Any:
        """The object, built now; a factory failure is a `ConfigError` at the section's location."""
        try:
            return self.extension.create(self.options, context)
        except ConfigError:
            raise
        except Exception as error:
            message = f"{self.extension.group} {self.name!r}: {type(error).__name__}: {error}"
            raise ConfigError([ConfigIssue(location=self.location, message=message)]) from error


class ExtensionRegistry:
    """
    Names and factories of the four groups: `extra` (tests, harnesses), then
    the built-ins, then the installed entry points.

    :param builtins: group -> name -> factory or import reference.
    :param extra: more of the same, in front of the built-ins.
    :param entry_points: also offer installed entry points.
    """

    def __init__(
        self,
        builtins: Mapping[str, Mapping[str, Source]] = BUILTINS,
        *,
        extra: Optional[Mapping[str, Mapping[str, Source]]] = None,
        entry_points: bool = True,
    ) -> None:
        self._static: Dict[str, Dict[str, Source]] = {group: dict(builtins.get(group, {})) for group in GROUPS}
        self._builtin = {group: set(names) for group, names in self._static.items()}
        for group, names in (extra or {}).items():
            if group not in GROUPS:
                raise ValueError(f"unknown extension group {group!r}; expected one of {', '.join(GROUPS)}")
            self._static[group].update(names)
            self._builtin[group] -= set(names)
        self._entry_points = entry_points

    def names(self, group: str) -> Tuple[str, ...]:
        """Every name the group offers, sorted (nothing is imported)."""
        return tuple(sorted(set(self._static[group]) | set(self._installed(group))))

    def lookup(self, group: str, name: str) -> Extension:
        """
        The extension called `name`, imported now.

        :raises UnknownExtension: no such name in the group.
        :raises Exception: importing it failed, or its ``Options`` are not a declaration.
        """
        source: Optional[Source] = self._static[group].get(name)
        if source is None:
            source = self._installed(group).get(name)
        if source is None:
            raise UnknownExtension(name)
        if isinstance(source, importlib.metadata.EntryPoint):
            factory = source.load()
            dist = getattr(source, "dist", None)
            origin = f"entry point {source.value}" + (f" of {dist.name} {dist.version}" if dist is not None else "")
        elif isinstance(source, str):
            factory, origin = import_reference(source), source
        else:
            factory, origin = source, getattr(source, "__qualname__", repr(source))
        if not callable(factory):
            raise TypeError(f"{origin} is {factory!r}, not a factory")
        builtin = name in self._builtin[group]
        return Extension(group, name, factory, options_spec(factory), builtin=builtin, origin=origin)

    def _installed(self, group: str) -> Dict[str, importlib.metadata.EntryPoint]:
        if not self._entry_points:
            return {}
        found: Dict[str, importlib.metadata.EntryPoint] = {}
        for entry_point in entry_points(group):
            found.setdefault(entry_point.name, entry_point)
        return found


_DEFAULT = ExtensionRegistry()
_ACTIVE: ContextVar[Optional[ExtensionRegistry]] = ContextVar("twistgate_extensions", default=None)


def current_registry() -> ExtensionRegistry:
    """The registry configuration reads through: the default one, or `using_extensions`'s."""
    return _ACTIVE.get() or _DEFAULT


@contextlib.contextmanager
def using_extensions(extra: Mapping[str, Mapping[str, Source]]) -> Iterator[ExtensionRegistry]:
    """
    Offer more factories while loading configuration, without packaging
    them (tests, `twistgate.testing` harnesses)::

        with using_extensions({BALANCERS: {"mine": MyBalancer}}):
            config = load_text(yaml_text)
    """
    registry = ExtensionRegistry(extra=extra)
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)


def resolve(node: Node, group: str, registry: Optional[ExtensionRegistry] = None) -> Optional[Extension]:
    """
    The extension a config value names; an unknown name is reported with
    the names available and the closest one, an unloadable one with why.
    """
    name = node.string()
    if name is None:
        return None
    registry = registry or current_registry()
    try:
        return registry.lookup(group, name)
    except UnknownExtension:
        every = registry.names(group)
        node.issue(f"unknown value {name!r}; expected one of {', '.join(every)}{suggest(name, every)}")
    except Exception as error:
        node.issue(f"{group} {name!r} cannot be loaded: {type(error).__name__}: {error}")
    return None


def builtin_choice(group: str, name: str) -> ExtensionChoice:
    """A built-in with no options (configs made in code, without the loader)."""
    return ExtensionChoice(extension=current_registry().lookup(group, name))


# -- helpers ---------------------------------------------------------------------


_CONTEXT_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _takes_context(factory: Callable[..., Any]) -> bool:
    """Whether `factory` has a ``context`` parameter (it then gets the `ExtensionContext`)."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    parameter = parameters.get("context")
    return parameter is not None and parameter.kind in _CONTEXT_KINDS
