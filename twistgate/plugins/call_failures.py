"""
What the chain (`twistgate.plugins.calls`) does when a layer fails: the
request gets a 500 (`PluginError`), and the log says which plugin, hook,
route and request.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twistgate.errors import GatewayError

__all__ = ["PluginError", "bad_result", "contain"]

_log = Logger(namespace="twistgate.plugins")


class PluginError(GatewayError):
    """A plugin failed while handling a request; the details are in the log."""

    status, code = 500, "plugin_error"
    default_message = "The gateway could not handle the request."


def _where(route: Optional[str]) -> str:
    return f"route {route!r}" if route is not None else "no route matched"


def contain(call: Any, hook: str, request: Any, route: Optional[str]) -> PluginError:
    """
    Log the exception being handled, naming the plugin, the hook, the route
    being served (`route`: a global plugin's instance serves every route)
    and the request; the request gets a 500.
    """
    _log.failure(
        "Plugin {plugin!r} raised an exception in {hook} ({where}, request {request_id})",
        Failure(),
        level=LogLevel.error,
        plugin=call.plugin,
        route=route,
        where=_where(route),
        hook=hook,
        request_id=request.request_id,
    )
    return PluginError()


def bad_result(call: Any, hook: str, request: Any, route: Optional[str], result: object) -> PluginError:
    _log.error(
        "Plugin {plugin!r} returned {result_type} from {hook}; expected None or a Response "
        "({where}, request {request_id})",
        plugin=call.plugin,
        route=route,
        where=_where(route),
        hook=hook,
        result_type=type(result).__name__,
        request_id=request.request_id,
    )
    return PluginError()
