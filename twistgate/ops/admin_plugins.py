"""
``/admin/plugins/``: the plugin instances of the serving generation, and
``/admin/plugins/NAME/...``, that plugin's own ``admin_get`` pages (see
`twistgate.plugins.hookspecs`), behind the admin token like the rest.

`PluginPages` answers them for one `twistgate.ops.admin.AdminResource`,
whose JSON and error answers it uses.
"""

from __future__ import annotations

from typing import Any, Dict
from urllib.parse import unquote

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET

from twistgate.errors import GatewayError
from twistgate.messages import Response
from twistgate.ops.admin_errors import NotFound
from twistgate.ops.admin_views import query_arg

__all__ = ["PluginPages"]

_log = Logger()


class PluginPages:
    """The plugin pages of one admin resource."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin

    def render(self, request: Any, rest: list, request_id: str) -> Any:
        """
        ``/admin/plugins/``: the plugin instances; ``/admin/plugins/NAME/...``:
        that plugin's ``admin_get`` (see `twistgate.plugins.hookspecs`).
        """
        plugins = self.admin.runtime.generation.plugins
        if not rest or rest == [b""]:
            listed: Dict[str, Any] = {}
            for instance in plugins.instances:
                entry = listed.setdefault(instance.name, {"name": instance.name, "instances": [], "admin": False})
                entry["instances"].append({"route": instance.route})
                entry["admin"] = plugins.admin_call(instance.name) is not None
            return self.admin._json(request, {"generation": self.admin.runtime.ops.number, "plugins": list(listed.values())})
        name = unquote(rest[0].decode("utf-8", "replace"))
        route = query_arg(request.args, b"route")
        call = plugins.admin_call(name, route)
        if call is None:
            where = f" on route {route!r}" if route is not None else ""
            raise NotFound(f"No plugin {name!r} with an admin page{where}.")
        path = unquote("/".join(part.decode("utf-8", "replace") for part in rest[1:]))
        query = {
            key.decode("utf-8", "replace"): [v.decode("utf-8", "replace") for v in values]
            for key, values in request.args.items()
        }
        answer = maybeDeferred(lambda: _settled(call((path, query))))
        answer.addCallback(self._answer, request, name)
        answer.addErrback(self._failed, request, request_id, call)
        return NOT_DONE_YET

    def _answer(self, result: Any, request: Any, name: str) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if result is None:
            raise NotFound(f"Plugin {name!r} has nothing at this path.")
        if isinstance(result, Response):
            request.setResponseCode(result.status)
            for header, value in result.headers:
                request.responseHeaders.addRawHeader(header, value)
            request.write(result.body)
            request.finish()
            return
        self.admin._send(request, result)

    def _failed(self, failure: Any, request: Any, request_id: str, call: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        if failure.check(GatewayError):
            error = failure.value
        else:
            _log.failure(
                "Plugin {plugin!r} raised an exception in admin_get (request {request_id})",
                failure, plugin=call.plugin, hook="admin_get", route=call.route, request_id=request_id,
            )  # fmt: skip
            error = GatewayError()
        request.write(self.admin._error(request, error, request_id))
        request.finish()


def _settled(result: Any) -> Any:
    """A coroutine as a Deferred; anything else as it is."""
    import inspect

    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result
