"""
Plugin names and their factories: the built-ins and the ``twistgate`` entry
point group, imported only when a configuration names them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple, Union

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twistgate.plugins.hookspecs import PROJECT_NAME
from twistgate.plugins.references import entry_points, import_reference

__all__ = ["BUILTIN_PLUGINS", "PluginContext", "PluginFactory", "PluginRegistry", "current_plugins", "using_plugins"]

_log = Logger(namespace="twistgate.plugins")


def _memory_store(context: "PluginContext") -> Any:
    from twistgate.plugins.store import MemoryStore, PluginStore

    return PluginStore(MemoryStore(context.clock), context.name)


def _own_metrics(context: "PluginContext") -> Any:
    from twistgate.plugins.metrics import PluginMetrics

    return PluginMetrics(context.name)


def _logger(context: "PluginContext") -> Any:
    from twistgate.plugins.plugin_log import PluginLogger

    return PluginLogger(context.name)


@attrs.frozen
class PluginContext:
    """
    What a plugin factory receives besides its options.

    :ivar name: the plugin's configured name.
    :ivar clock: the gateway's clock: use it for every timer and timestamp.
    :ivar http_client: a ``treq.HTTPClient`` for side calls (on the gateway's
        connection pool), or ``None`` when the configuration is only being
        validated.
    :ivar store: the plugin's `twistgate.plugins.store.PluginStore`: state
        shared by all its instances and kept across reloads (memory or
        Redis).
    :ivar metrics: the plugin's `twistgate.plugins.metrics.PluginMetrics`:
        counters, gauges and histograms on the gateway's ``/metrics``.
    :ivar log: the plugin's `twistgate.plugins.plugin_log.PluginLogger`:
        a `twisted.logger.Logger` that adds ``plugin``, and ``route`` and
        ``request_id`` when given ``request=``.

    A context made by hand (in tests) gets a private in-memory store on
    `clock` and metrics in a registry of their own.
    """

    name: str
    clock: IReactorTime
    http_client: Optional[object] = None
    store: Any = attrs.field(default=attrs.Factory(_memory_store, takes_self=True))
    metrics: Any = attrs.field(default=attrs.Factory(_own_metrics, takes_self=True))
    log: Any = attrs.field(default=attrs.Factory(_logger, takes_self=True), eq=False)


#: ``factory(options, context) -> plugin``: validates ``options`` (raising
#: `ValueError` or `TypeError` with a helpful message) and returns an object
#: with ``@hookimpl`` methods.
PluginFactory = Callable[[Mapping[str, Any], PluginContext], object]


#: The plugins that ship with twistgate, as import references so that only
#: the configured ones are imported.
BUILTIN_PLUGINS: Mapping[str, str] = {
    "ip_allow": "twistgate.plugins.ip_allow:make_plugin",
    "maintenance": "twistgate.plugins.maintenance:make_plugin",
}

_Source = Union[PluginFactory, str, importlib.metadata.EntryPoint]


class PluginRegistry:
    """
    Plugin names and their factories.

    A factory is given as a callable, as an import reference
    (``"package.module:function"``) or found as an entry point; references and
    entry points are imported only when `load` asks for that name, so an
    installed but unused plugin costs nothing and cannot break startup.

    :param factories: name -> factory, import reference or entry point.
    :param entry_point_group: also offer the entry points of this group;
        names in ``factories`` win over entry points of the same name.
    """

    def __init__(
        self,
        factories: Optional[Mapping[str, _Source]] = None,
        *,
        entry_point_group: Optional[str] = None,
    ) -> None:
        self._sources: Dict[str, _Source] = {}
        if entry_point_group is not None:
            for entry_point in entry_points(entry_point_group):
                if entry_point.name in self._sources:
                    _log.warn(
                        "Ignoring duplicate plugin entry point {name!r} ({value})",
                        name=entry_point.name,
                        value=entry_point.value,
                    )
                    continue
                self._sources[entry_point.name] = entry_point
        for name, source in (factories or {}).items():
            self._sources[name] = source
        self._loaded: Dict[str, PluginFactory] = {}

    @classmethod
    def default(cls) -> "PluginRegistry":
        """The built-in plugins plus the ``twistgate`` entry points."""
        return cls(BUILTIN_PLUGINS, entry_point_group=PROJECT_NAME)

    def names(self) -> Tuple[str, ...]:
        """Every available name, sorted; nothing is imported."""
        return tuple(sorted(self._sources))

    def __contains__(self, name: object) -> bool:
        return name in self._sources

    def origin(self, name: str) -> str:
        """Where `name` comes from, in words (nothing is imported): built in, an entry point, or given."""
        source = self._sources[name]
        if isinstance(source, importlib.metadata.EntryPoint):
            dist = getattr(source, "dist", None)
            return f"entry point {source.value}" + (f" of {dist.name} {dist.version}" if dist is not None else "")
        if isinstance(source, str):
            return "built in" if BUILTIN_PLUGINS.get(name) == source else source
        return getattr(source, "__qualname__", repr(source))

    def load(self, name: str) -> PluginFactory:
        """
        The factory for ``name``, imported now if need be.

        :raises KeyError: ``name`` is not available.
        :raises TypeError: the name does not lead to a callable.
        :raises Exception: whatever importing the plugin raised.
        """
        if name in self._loaded:
            return self._loaded[name]
        source = self._sources[name]
        if isinstance(source, importlib.metadata.EntryPoint):
            factory = source.load()
        elif isinstance(source, str):
            factory = import_reference(source)
        else:
            factory = source
        if not callable(factory):
            raise TypeError(
                f"{factory!r} is not a plugin factory: expected a callable "
                "taking (options, context)"
            )
        self._loaded[name] = factory
        return factory  # type: ignore[no-any-return]


_ACTIVE: ContextVar[Optional[PluginRegistry]] = ContextVar("twistgate_plugins", default=None)


def current_plugins() -> PluginRegistry:
    """
    The registry configuration reads plugin options through: `using_plugins`'s,
    or the built-ins plus the ``twistgate`` entry points (scanned now, so a
    package installed while the process runs is seen; nothing is imported).
    """
    return _ACTIVE.get() or PluginRegistry.default()


@contextlib.contextmanager
def using_plugins(extra: Mapping[str, _Source]) -> Iterator[PluginRegistry]:
    """
    Offer more plugin factories while loading configuration, without
    packaging them (tests, `twistgate.testing`), so their declared options
    are read with file, line and key path like an installed plugin's::

        with using_plugins({"tenant_quota": TenantQuota}):
            config = load_text(yaml_text)
    """
    registry = PluginRegistry({**BUILTIN_PLUGINS, **extra}, entry_point_group=PROJECT_NAME)
    token = _ACTIVE.set(registry)
    try:
        yield registry
    finally:
        _ACTIVE.reset(token)

