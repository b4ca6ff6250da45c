"""
Calling the per-request hooks of a route: its policies and plugins, as one
chain (`RouteChain`).

The per-request hooks are not called through pluggy's hook caller: pluggy
hooks are synchronous, and ours may return Deferreds or coroutines that must
settle before the next plugin runs.  `build_plugins` precomputes each route's
ordered `_Call` lists once; here they are walked per request.  When every
result is synchronous the returned Deferred has already fired, and the
reactor is never involved.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple

import attrs
import pluggy
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.python.failure import Failure

from twistgate.config.model import Location
from twistgate.errors import GatewayError
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.plugins.call_failures import PluginError, bad_result as _bad_result, contain as _contain

__all__ = ["PluginError", "RouteChain", "RoutePlugins"]

@attrs.frozen(eq=False)
class _Instance:
    """One built plugin: a configured name, for one route or for all."""

    name: str
    route: Optional[str]
    plugin: object
    location: Location


#: `_Call.pick` values that are not an argument's index.
ALL_ARGS = -1  # the implementation takes every argument of the spec, in order
SOME_ARGS = -2  # several, or in another order: `_Call.__call__` picks them


class _Call:
    """
    One hook implementation of one instance, ready to call with the hook's
    arguments.  The chain's synchronous loops call `function` themselves
    when `pick` allows (every argument, or just one: nearly every hook):
    a Python frame fewer per hook than going through `__call__`.
    """

    __slots__ = ("plugin", "route", "function", "picks", "pick", "layer")

    def __init__(
        self,
        instance: _Instance,
        impl: pluggy.HookImpl,
        spec_argnames: Sequence[str],
        layer: int = 0,
    ) -> None:
        self.layer = layer  # the instance's position on its route (stages first)
        self.plugin = instance.name
        self.route = instance.route
        self.function: Callable[..., Any] = impl.function
        argnames = tuple(impl.argnames)
        # Opt-in arguments: pass only (and in the order of) what the
        # implementation declares.
        self.picks: Optional[Tuple[int, ...]] = (
            None
            if argnames == tuple(spec_argnames)
            else tuple(spec_argnames.index(arg) for arg in argnames)
        )
        picks = self.picks
        self.pick = ALL_ARGS if picks is None else picks[0] if len(picks) == 1 else SOME_ARGS

    def __call__(self, args: Tuple[Any, ...]) -> Any:
        picks = self.picks
        if picks is None:
            return self.function(*args)
        if len(picks) == 1:  # e.g. on_request(self, request): the common opt-in
            return self.function(args[picks[0]])
        return self.function(*[args[i] for i in picks])

    def __repr__(self) -> str:
        return f"<_Call {self.plugin}.{self.function.__name__} route={self.route}>"


def _functions_if(calls: Sequence[_Call], usual: Callable[[_Call], bool]) -> Optional[Tuple[Callable[..., Any], ...]]:
    """The calls' functions, if each takes the `usual` arguments and none is there twice (layers are found by function)."""
    functions = tuple(call.function for call in calls)
    once = all(functions.index(function) == index for index, function in enumerate(functions))  # (as the loops find them)
    return functions if calls and once and all(usual(call) for call in calls) else None


def _is_async(result: object) -> bool:
    return isinstance(result, Deferred) or inspect.isawaitable(result)


class RouteChain:
    """
    The per-request hooks of one route, precomputed.

    Each method calls the route's implementations of that hook in order,
    settling a Deferred or coroutine result before calling the next.  When
    every result is synchronous the returned Deferred has already fired.

    :ivar route: the route's name; ``None`` for the chain of requests that
        matched no route (the global plugins).
    :ivar names: the route's plugin names, in order.
    :ivar empty: no plugin of this route implements a per-request hook: the
        gateway may skip the hook calls altogether.
    """

    __slots__ = ("route", "names", "empty", "_on_request", "_on_response", "_on_error",
                 "_request_functions", "_response_functions", "_deepest_response", "response_lines")  # fmt: skip

    def __init__(
        self,
        *,
        route: Optional[str] = None,
        names: Tuple[str, ...] = (),
        on_request: Tuple[_Call, ...] = (),
        on_response: Tuple[_Call, ...] = (),
        on_error: Tuple[_Call, ...] = (),
    ) -> None:
        self.route = route
        self.names = names
        self._on_request = on_request
        self._on_response = on_response
        self._on_error = on_error
        self.empty = not (on_request or on_response or on_error)
        # The usual route (built-in stages, plugins taking the usual
        # arguments): the functions themselves, called without the
        # per-layer argument picking of the general loops.
        self._request_functions = _functions_if(on_request, lambda call: call.pick == 0)
        self._response_functions = _functions_if(on_response, lambda call: call.pick == ALL_ARGS)
        self._deepest_response = max((call.layer for call in on_response), default=0)
        only = on_response[0].function if len(on_response) == 1 and on_response[0].pick == ALL_ARGS else None
        self.response_lines = getattr(getattr(only, "__self__", None), "response_lines_only", None)  # (all the one layer adds)

    def __repr__(self) -> str:
        return f"<RouteChain {self.route} {list(self.names)}>"

    def order(self, hook: str) -> List[str]:
        """The layers implementing `hook` (``on_request``...), by name, in the order they are called."""
        calls = {"on_request": self._on_request, "on_response": self._on_response, "on_error": self._on_error}[hook]
        return [call.plugin for call in calls]

    # -- on_request ---------------------------------------------------------

    def on_request(self, request: ProxyRequest, route: object) -> "Deferred[Optional[Response]]":
        """
        Call ``on_request`` until one returns a `Response`.

        :return: a Deferred firing with that `Response` (answer it, skip the
            upstream) or ``None`` (forward the request); failing with the
            `GatewayError` a plugin raised, or with `PluginError` when a
            plugin crashed (logged).
        """
        try:
            result = self.on_request_now(request, route)
        except GatewayError:
            return fail()
        return result if isinstance(result, Deferred) else succeed(result)

    def on_request_now(self, request: ProxyRequest, route: object) -> Any:
        """
        `on_request` without a Deferred while every layer answers at once
        (the common case, and the exchange's hot path): returns the
        `Response` or ``None``, or a Deferred of either once a layer is
        asynchronous; raises the `GatewayError` a layer raised (`PluginError`
        for a crash, logged).
        """
        functions = self._request_functions
        if functions is not None:
            for function in functions:
                try:
                    result = function(request)
                except GatewayError:
                    raise
                except Exception:
                    raise _contain(self._on_request[functions.index(function)], "on_request", request, self.route) from None
                if result is not None:
                    return self._request_answer(functions.index(function), result, request, (request, route))
            return None
        calls = self._on_request
        args = (request, route)
        for index, call in enumerate(calls):
            try:
                pick = call.pick
                if pick >= 0:
                    result = call.function(args[pick])
                elif pick == ALL_ARGS:
                    result = call.function(*args)
                else:
                    result = call(args)
            except GatewayError:
                raise
            except Exception:
                raise _contain(call, "on_request", request, self.route) from None
            if result is not None:
                return self._request_answer(index, result, request, args)
        return None

    def _request_answer(self, index: int, result: Any, request: ProxyRequest, args: Tuple[Any, ...]) -> Any:
        """What `on_request_now` returns when layer `index` returned `result`, not None."""
        call = self._on_request[index]
        if isinstance(result, Response):
            request.answered_at = call.layer
            return result
        if _is_async(result):
            return Deferred.fromCoroutine(self._on_request_async(index, result, request, args))
        raise _bad_result(call, "on_request", request, self.route, result)

    async def _on_request_async(
        self, index: int, pending: Any, request: ProxyRequest, args: Tuple[Any, ...]
    ) -> Optional[Response]:
        calls = self._on_request
        while True:
            call = calls[index]
            try:
                result = (await pending) if _is_async(pending) else pending
            except (GatewayError, CancelledError):
                raise
            except Exception:
                raise _contain(call, "on_request", request, self.route) from None
            if isinstance(result, Response):
                request.answered_at = call.layer
                return result
            if result is not None:
                raise _bad_result(call, "on_request", request, self.route, result)
            index += 1
            if index == len(calls):
                return None
            try:
                pending = calls[index](args)
            except GatewayError:
                raise
            except Exception:
                raise _contain(calls[index], "on_request", request, self.route) from None

    # -- on_response --------------------------------------------------------

    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> "Deferred[ProxyResponse]":
        """
        Call ``on_response`` from the innermost layer outwards (the reverse
        of ``on_request``); a returned `Response` replaces the response for
        the following plugins and the client.  When a layer answered the
        request itself (``on_request`` returned a `Response`), only that
        layer and the layers outside it see the response: a cache hit is not
        transformed a second time by the stages between the cache and the
        upstream.

        :return: a Deferred firing with the `ProxyResponse` to send (the same
            object, edited in place, or a replacement made by
            `Response.to_proxy_response`); failing with the `GatewayError` a
            plugin raised, or with `PluginError` when a plugin crashed.
        """
        try:
            result = self.on_response_now(request, response)
        except GatewayError:
            return fail()
        return result if isinstance(result, Deferred) else succeed(result)

    def on_response_now(self, request: ProxyRequest, response: ProxyResponse) -> Any:
        """
        `on_response` without a Deferred while every layer answers at once:
        returns the `ProxyResponse` to send, or a Deferred of it once a layer
        is asynchronous; raises as `on_request_now` does.
        """
        answered_at = request.answered_at
        functions = self._response_functions
        if functions is not None and answered_at >= self._deepest_response:  # every layer sees the response
            for function in functions:
                try:
                    result = function(request, response)
                except GatewayError:
                    raise
                except Exception:
                    raise _contain(self._on_response[functions.index(function)], "on_response", request, self.route) from None
                if result is not None:
                    if isinstance(result, Response):
                        response = result.to_proxy_response()
                        continue
                    return self._response_answer(functions.index(function), result, request, response)
            return response
        for index, call in enumerate(self._on_response):
            if call.layer > answered_at:
                continue  # inside the layer that answered: it never saw this exchange
            try:
                pick = call.pick  # (as in on_request_now)
                if pick == ALL_ARGS:
                    result = call.function(request, response)
                elif pick >= 0:
                    result = call.function((request, response)[pick])
                else:
                    result = call((request, response))
            except GatewayError:
                raise
            except Exception:
                raise _contain(call, "on_response", request, self.route) from None
            if result is None:
                continue
            if isinstance(result, Response):
                response = result.to_proxy_response()
                continue
            return self._response_answer(index, result, request, response)
        return response

    def _response_answer(self, index: int, result: Any, request: ProxyRequest, response: ProxyResponse) -> Any:
        """What `on_response_now` returns when layer `index` returned `result`: neither None nor a `Response`."""
        if _is_async(result):
            return Deferred.fromCoroutine(self._on_response_async(index, result, request, response))
        raise _bad_result(self._on_response[index], "on_response", request, self.route, result)

    async def _on_response_async(
        self, index: int, pending: Any, request: ProxyRequest, response: ProxyResponse
    ) -> ProxyResponse:
        calls = self._on_response
        while True:
            call = calls[index]
            try:
                result = (await pending) if _is_async(pending) else pending
            except (GatewayError, CancelledError):
                raise
            except Exception:
                raise _contain(call, "on_response", request, self.route) from None
            if isinstance(result, Response):
                response = result.to_proxy_response()
            elif result is not None:
                raise _bad_result(call, "on_response", request, self.route, result)
            index += 1
            while index < len(calls) and calls[index].layer > request.answered_at:
                index += 1
            if index == len(calls):
                return response
            try:
                pending = calls[index]((request, response))
            except GatewayError:
                raise
            except Exception:
                raise _contain(calls[index], "on_response", request, self.route) from None

    # -- on_error -----------------------------------------------------------

    def on_error(self, request: ProxyRequest, failure: Failure) -> "Deferred[Optional[Response]]":
        """
        Call ``on_error`` until one returns a `Response`.  Plugins that raise
        (or return something else) are logged and skipped.

        :return: a Deferred firing with the `Response` to send, or ``None``
            for the gateway's default error answer.  It never fails.
        """
        args = (request, failure)
        for index, call in enumerate(self._on_error):
            try:
                result = call(args)
            except Exception:
                _contain(call, "on_error", request, self.route)
                continue
            if result is None:
                continue
            if isinstance(result, Response):
                return succeed(result)
            if _is_async(result):
                return Deferred.fromCoroutine(self._on_error_async(index, result, request, args))
            _bad_result(call, "on_error", request, self.route, result)
        return succeed(None)

    async def _on_error_async(
        self, index: int, pending: Any, request: ProxyRequest, args: Tuple[Any, ...]
    ) -> Optional[Response]:
        calls = self._on_error
        while True:
            call = calls[index]
            try:
                result = (await pending) if _is_async(pending) else pending
            except CancelledError:
                raise
            except Exception:
                _contain(call, "on_error", request, self.route)
                result = None
            if isinstance(result, Response):
                return result
            if result is not None:
                _bad_result(call, "on_error", request, self.route, result)
            index += 1
            if index == len(calls):
                return None
            try:
                pending = calls[index](args)
            except Exception:
                _contain(calls[index], "on_error", request, self.route)
                pending = None


#: The former name of `RouteChain`.
RoutePlugins = RouteChain
