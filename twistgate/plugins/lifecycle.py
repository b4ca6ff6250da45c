"""
The lifecycle hooks of every plugin instance of one configuration:
``on_startup`` before the gateway serves, ``on_shutdown`` after it stopped.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple

import pluggy
from twisted.internet.defer import Deferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twistgate.config.model import GatewayConfig
from twistgate.plugins.calls import RouteChain, _Call, _Instance, _is_async

__all__ = ["GatewayPlugins", "PluginStartupError"]

_log = Logger(namespace="twistgate.plugins")


def instance_of(route: Optional[str]) -> str:
    """Which instance of a plugin, in words: the global one, or a route's own."""
    return "the global instance" if route is None else f"the instance of route {route!r}"


class PluginStartupError(Exception):
    """
    A plugin's `on_startup` failed: the gateway must not start.

    :ivar plugin: the plugin's configured name.
    :ivar route: the route of a per-route instance, ``None`` for a global one.
    """

    def __init__(self, plugin: str, route: Optional[str], error: BaseException) -> None:
        self.plugin = plugin
        self.route = route
        where = f" (route {route!r})" if route is not None else ""
        super().__init__(
            f"plugin {plugin!r}{where} failed to start: {type(error).__name__}: {error}"
        )


class GatewayPlugins:
    """
    Every plugin instance of one configuration.

    :ivar manager: a pluggy `PluginManager` with the hookspecs and every
        instance (global and per-route) registered; ``check_pending()`` has
        passed.  Request handling does not go through it.
    """

    def __init__(
        self,
        *,
        manager: pluggy.PluginManager,
        global_plugins: RouteChain,
        routes: Mapping[str, RouteChain],
        on_startup: Tuple[_Call, ...],
        on_shutdown: Tuple[_Call, ...],
        admin: Optional[Mapping[str, Mapping[Optional[str], _Call]]] = None,
        instances: Tuple[_Instance, ...] = (),
        route_instances: Optional[Mapping[str, Tuple[_Instance, ...]]] = None,
    ) -> None:
        self.manager = manager
        self._global = global_plugins
        self._routes = dict(routes)
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown
        self._admin = {name: dict(calls) for name, calls in (admin or {}).items()}
        #: Every plugin instance (stages excluded), in build order: globals, then route by route.
        self.instances = instances
        self._route_instances = dict(route_instances or {})

    def admin_call(self, plugin: str, route: Optional[str] = None) -> Optional[_Call]:
        """
        The ``admin_get`` of `plugin` to call: the instance `route` uses
        (its own, else the global one), or without a route the global
        instance, else the first one built.  None when it has none.
        """
        calls = self._admin.get(plugin)
        if not calls:
            return None
        if route is not None:
            own = [i for i in self._route_instances.get(route, ()) if i.name == plugin]
            return calls.get(own[0].route) if own else None
        return calls.get(None) or next(iter(calls.values()))

    def for_route(self, route_name: Optional[str]) -> RouteChain:
        """
        The hooks for requests on ``route_name``; ``None`` gives the global
        plugins alone (for requests that matched no route, e.g. to customise
        the 404 in `on_error`).

        :raises KeyError: no route has that name.
        """
        if route_name is None:
            return self._global
        return self._routes[route_name]

    def startup(self, gateway: object, config: GatewayConfig) -> "Deferred[None]":
        """
        Call every instance's ``on_startup``, one after the other.

        :return: a Deferred that fires when all have finished, or fails with
            `PluginStartupError` naming the first plugin that failed (the
            others are not called).
        """
        return Deferred.fromCoroutine(self._startup(gateway, config))

    async def _startup(self, gateway: object, config: GatewayConfig) -> None:
        args = (gateway, config)
        for call in self._on_startup:
            try:
                result = call(args)
                if _is_async(result):
                    await result
            except Exception as error:
                _log.failure(
                    "Plugin {plugin!r} failed in on_startup ({instance})",
                    Failure(),
                    level=LogLevel.critical,
                    plugin=call.plugin,
                    route=call.route,
                    hook="on_startup",
                    instance=instance_of(call.route),
                )
                raise PluginStartupError(call.plugin, call.route, error) from error

    def shutdown(self, gateway: object) -> "Deferred[None]":
        """
        Call every instance's ``on_shutdown``, in the reverse of the startup
        order; exceptions are logged with the plugin's name and ignored.

        :return: a Deferred that fires (never fails) when all have finished.
        """
        return Deferred.fromCoroutine(self._shutdown(gateway))

    async def _shutdown(self, gateway: object) -> None:
        args = (gateway,)
        for call in self._on_shutdown:
            try:
                result = call(args)
                if _is_async(result):
                    await result
            except Exception:
                _log.failure(
                    "Plugin {plugin!r} failed in on_shutdown ({instance})",
                    Failure(),
                    level=LogLevel.error,
                    plugin=call.plugin,
                    route=call.route,
                    hook="on_shutdown",
                    instance=instance_of(call.route),
                )
