"""
``context.log``: the logger a plugin writes with.

A `twisted.logger.Logger` (``log.info("...", key=value)``, PEP 3101 format
strings, structured fields) whose namespace is ``twistgate.plugins.<name>``
and whose every event carries the field ``plugin``.  Give it the request
(``request=request``) and the event also carries ``route`` (the route's
name) and ``request_id`` (the ``X-Request-ID`` the client and the access
log see), and its text ends with ``(route 'api', request 6f0c...)``: the
same fields, and the same words, as the gateway's own log lines about
plugins.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger, LogLevel

__all__ = ["PluginLogger"]


class PluginLogger(Logger):
    """The `Logger` of plugin `plugin` (see the module docstring)."""

    def __init__(self, plugin: str, observer: Any = None) -> None:
        super().__init__(namespace=f"twistgate.plugins.{plugin}", observer=observer)
        self.plugin = plugin

    def emit(self, level: LogLevel, format: Optional[str] = None, **kwargs: Any) -> None:
        request = kwargs.pop("request", None)
        kwargs.setdefault("plugin", self.plugin)
        if request is not None:
            route = getattr(request, "route", None)
            kwargs.setdefault("route", route.name if route is not None else None)
            kwargs.setdefault("request_id", getattr(request, "request_id", None))
            if format is not None:
                format += " (route {route!r}, request {request_id})"
        super().emit(level, format, **kwargs)
