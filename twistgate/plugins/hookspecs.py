"""
The twistgate hook specifications: what a plugin may implement.

A plugin is an object whose methods are decorated with
``@twistgate.plugins.hookimpl`` and named after one of the hooks below.  An
implementation may accept any subset of a hook's arguments, by name (pluggy's
"opt-in arguments"), so hooks can gain arguments without breaking plugins.

The hooks come in two groups:

* lifecycle hooks (`on_startup`, `on_shutdown`), called once per gateway run
  for every plugin instance;
* per-request hooks (`on_request`, `on_response`, `on_error`), called for the
  plugins that apply to the request's route;
* `on_breaker_state_change`, an upstream event;
* `admin_get`, the plugin's read-only page of the admin API.

Every hook may be a plain function or return a
:class:`~twisted.internet.defer.Deferred` or a coroutine (``async def``); the
gateway waits for the result before calling the next implementation.  The
per-request hooks are *not* called through pluggy's hook caller: the gateway
precomputes each route's call list at startup (see `twistgate.plugins.instances`).
The call order is the configuration order, adjusted by ``tryfirst`` and
``trylast``.

See ``docs/plugins.md`` for the author's guide.
"""

from __future__ import annotations

from typing import Any, Awaitable, List, Mapping, Optional, Union

import pluggy
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistgate.config.model import GatewayConfig
from twistgate.messages import ProxyRequest, ProxyResponse, Response, RouteInfo

#: What ``on_request``, ``on_response`` and ``on_error`` may return.
MaybeResponse = Union[None, Response, "Deferred[Optional[Response]]", Awaitable[Optional[Response]]]
#: What the lifecycle hooks may return.
MaybeDone = Union[None, "Deferred[None]", Awaitable[None]]

#: The pluggy project name: markers, hookspecs and the entry point group.
PROJECT_NAME = "twistgate"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# ---------------------------------------------------------------------------
# Lifecycle hooks
# ---------------------------------------------------------------------------


@hookspec
def on_startup(gateway: Any, config: GatewayConfig) -> MaybeDone:
    """
    The gateway is starting, before its listeners accept connections.

    Open connections, warm caches or start timers (on ``context.clock``) here.
    Called once per plugin instance (a plugin configured globally and
    overridden on two routes has three instances), in configuration order.

    Sync or async: return ``None`` or a Deferred/coroutine; the gateway waits
    for it before calling the next plugin.

    Cannot short-circuit.  An exception (raised, or a failed Deferred) stops
    the start: the gateway refuses to run and names the plugin.

    :param gateway: the running gateway (treat it as opaque).
    :param config: the whole, validated `GatewayConfig`.
    :return: ``None``, or a Deferred/coroutine that fires with ``None``.
    """


@hookspec
def on_shutdown(gateway: Any) -> MaybeDone:
    """
    The gateway is stopping, after its listeners have closed.

    Release what `on_startup` acquired.  Called once per plugin instance, in
    the reverse of the startup order, even if `on_startup` failed or was never
    called for this instance: tolerate both.

    Sync or async: return ``None`` or a Deferred/coroutine; the gateway waits
    for it before calling the next plugin.

    Cannot short-circuit.  Exceptions are logged with the plugin's name and
    ignored: every plugin gets its `on_shutdown` call.

    :param gateway: the running gateway (treat it as opaque).
    :return: ``None``, or a Deferred/coroutine that fires with ``None``.
    """


# ---------------------------------------------------------------------------
# Per-request hooks
# ---------------------------------------------------------------------------


@hookspec
def on_request(request: ProxyRequest, route: RouteInfo) -> MaybeResponse:
    """
    A request matched ``route`` and is about to be forwarded upstream.

    Inspect the request, or edit ``request.headers`` / ``request.state`` in
    place.  Implementations are called one after the other in the route's
    plugin order.

    Sync or async: return the value, or a Deferred/coroutine of it; the
    gateway waits for it before calling the next plugin.

    Short-circuits: the first implementation that returns a `Response` answers
    the request; the remaining `on_request` implementations are not called and
    the upstream is not contacted (`on_response` still runs for that answer).
    Raising a `twistgate.errors.GatewayError` (e.g. ``Forbidden``) answers with
    that error.  Any other exception is logged with the plugin's name and the
    client gets a 500 ``plugin_error``.

    :param request: the `ProxyRequest` as it will be forwarded.
    :param route: the matched route: ``route.name`` and ``route.config``
        (its `RouteConfig`).
    :return: ``None`` to continue, a `Response` to answer instead of the
        upstream, or a Deferred/coroutine of either.
    """


@hookspec
def on_response(request: ProxyRequest, response: ProxyResponse) -> MaybeResponse:
    """
    The response head is about to be sent to the client.

    Edit ``response.status``, ``response.reason`` and ``response.headers`` in
    place, or return a `Response` to replace the response entirely (the
    upstream's body is then discarded); later plugins see the replacement.
    Runs for upstream responses and for `Response` values returned by
    `on_request`; errors go to `on_error` instead (a request gets one or the
    other, never both).

    Sync or async: return the value, or a Deferred/coroutine of it; the
    gateway waits for it before calling the next plugin.

    Does not short-circuit: every implementation is called.  Raising a
    `GatewayError` answers with that error; any other exception is logged
    with the plugin's name and the client gets a 500 ``plugin_error`` if
    nothing was sent yet.

    :param request: the `ProxyRequest` that was forwarded.
    :param response: the `ProxyResponse` (head only for upstream responses).
    :return: ``None``, a replacement `Response`, or a Deferred/coroutine of
        either.
    """


@hookspec
def on_error(request: ProxyRequest, failure: Failure) -> MaybeResponse:
    """
    The request failed: a `GatewayError` (404, 401, 429, 502, ...) or an
    unexpected exception.

    Return a `Response` to customise the answer (an HTML error page, a
    different body shape); return ``None`` to leave it to the next plugin and
    finally to the gateway's default JSON error body.

    Sync or async: return the value, or a Deferred/coroutine of it.

    Short-circuits: the first `Response` wins and the remaining `on_error`
    implementations are not called.  Exceptions raised here are logged with
    the plugin's name and ignored.

    :param request: the `ProxyRequest` that failed.
    :param failure: a `twisted.python.failure.Failure`; ``failure.value`` is
        the exception, a `GatewayError` carries ``status`` and ``code``.
    :return: ``None`` or a `Response`, or a Deferred/coroutine of either.
    """


# ---------------------------------------------------------------------------
# Upstream events
# ---------------------------------------------------------------------------


@hookspec
def on_breaker_state_change(upstream: str, target: str, old: str, new: str) -> None:
    """
    A target's circuit breaker changed state (see docs/resilience.md).

    Alert, count or log it.  Called for every plugin instance that
    implements it, when the transition happens (on a request's outcome, or
    on the recovery timer for open -> half_open); the transition is also
    logged by the gateway.

    Synchronous: the return value is ignored; a returned Deferred or
    coroutine is not waited for (its failure is logged).

    Cannot short-circuit or veto the transition.  Exceptions are logged with
    the plugin's name and ignored.

    :param upstream: the upstream's name (``upstreams.<name>``).
    :param target: the target's URL as configured (``http://10.0.0.5:8080``).
    :param old: the state before: ``"closed"``, ``"open"`` or ``"half_open"``.
    :param new: the state after.
    :return: ``None``.
    """


# ---------------------------------------------------------------------------
# The admin API
# ---------------------------------------------------------------------------


@hookspec
def admin_get(path: str, query: Mapping[str, List[str]]) -> Any:
    """
    ``GET /admin/plugins/<name>/<path>`` on the admin listener, behind the
    admin token: a read-only view of the plugin's state (counters, what it
    loaded), for operators and the dashboard.

    Called on one instance: the global one, or with ``?route=NAME`` the one
    that route uses; state shared through ``context.store`` looks the same
    from any instance.  Never called for other methods (405).

    Sync or async: return the value, or a Deferred/coroutine of it.

    Exceptions are logged with the plugin's name and answered with a 500;
    a `GatewayError` is answered as itself.

    :param path: what follows ``/admin/plugins/<name>/`` (str, ``""`` for
        the plugin's root), percent-decoded.
    :param query: the query parameters, ``{name: [values]}`` (str).
    :return: data for a JSON answer (a dict, a list...), ``None`` for a 404,
        a `Response`, or a Deferred/coroutine of one of these.
    """


#: The hooks, in the order above; tests and docs are checked against it.
HOOK_NAMES = (
    "on_startup", "on_shutdown", "on_request", "on_response", "on_error", "on_breaker_state_change", "admin_get",
)  # fmt: skip
