"""
Tests for twistgate.plugins.instances: building plugins from configuration and
calling their hooks.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from typing import Any, List, Optional

import attrs
import pytest
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from twistgate.config.model import (
    ConfigError,
    GatewayConfig,
    ListenerConfig,
    Location,
    PluginSection,
    RouteConfig,
)
from twistgate.errors import Forbidden, RouteNotFound
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.plugins import (
    GatewayPlugins,
    PluginContext,
    PluginError,
    PluginRegistry,
    PluginStartupError,
    build_plugins,
    hookimpl,
)
from twistgate.plugins.hookspecs import HOOK_NAMES
from twistgate.testing import result_of

# -- helpers -----------------------------------------------------------------



def failure_of(d: Deferred) -> Failure:
    """The Failure of an already-failed Deferred (trial's failureResultOf)."""
    results: List[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    assert isinstance(results[0], Failure), f"the Deferred succeeded with {results[0]!r}"
    return results[0]


def section(name: str, options: Optional[dict] = None, *, enabled: bool = True, line: int = 1, path: str = "") -> PluginSection:
    return PluginSection(
        name=name,
        enabled=enabled,
        options=options or {},
        location=Location(file="gw.yaml", line=line, path=path or f"plugins.{name}"),
    )


def route_config(name: str, *plugins: PluginSection) -> RouteConfig:
    return RouteConfig(name=name, path=f"/{name}/*", upstream="backend", plugins=plugins)


def gateway_config(plugins=(), routes=()) -> GatewayConfig:
    return GatewayConfig(
        listeners=(ListenerConfig(name="public", endpoint="tcp:0"),),
        plugins=tuple(plugins),
        routes=tuple(routes),
    )


@attrs.frozen
class Route:
    name: str
    config: RouteConfig


def request(path: str = "/", request_id: str = "req-1") -> ProxyRequest:
    return ProxyRequest(method=b"GET", path=path, client_ip="127.0.0.1", request_id=request_id)


def context_factory(name: str) -> PluginContext:
    return PluginContext(name=name, clock=Clock(), http_client=None)


def build(config: GatewayConfig, **factories: Any) -> GatewayPlugins:
    return build_plugins(config, context_factory, registry=PluginRegistry(factories))


class Recorder:
    """A plugin that records its calls in a shared list and returns canned results."""

    def __init__(self, name: str, calls: list, results: Optional[dict] = None) -> None:
        self.name = name
        self.calls = calls
        self.results = results or {}

    def _result(self, hook: str) -> Any:
        result = self.results.get(hook)
        return result() if callable(result) else result

    @hookimpl
    def on_startup(self, gateway, config):
        self.calls.append((self.name, "on_startup"))
        return self._result("on_startup")

    @hookimpl
    def on_shutdown(self, gateway):
        self.calls.append((self.name, "on_shutdown"))
        return self._result("on_shutdown")

    @hookimpl
    def on_request(self, request, route):
        self.calls.append((self.name, "on_request"))
        return self._result("on_request")

    @hookimpl
    def on_response(self, request, response):
        self.calls.append((self.name, "on_response"))
        return self._result("on_response")

    @hookimpl
    def on_error(self, request, failure):
        self.calls.append((self.name, "on_error"))
        return self._result("on_error")


def recorders(calls: list, **results: dict) -> dict:
    """Factories named after ``results``' keys, each making a `Recorder`."""
    return {
        name: (lambda options, context, name=name, hooks=hooks: Recorder(name, calls, hooks))
        for name, hooks in results.items()
    }


def single_route(*names: str, calls: list, **results: dict):
    """Build global plugins ``names`` and return the one route's `RoutePlugins`."""
    config = gateway_config([section(n) for n in names], [route_config("r")])
    plugins = build(config, **recorders(calls, **results))
    return plugins.for_route("r"), Route("r", config.routes[0])


def raise_(error: BaseException):
    def raiser():
        raise error

    return raiser


# -- one test per hook ---------------------------------------------------------


def test_plugin_hooks_have_tests():
    """Every hook has a test_hook_<name> (datasette's rule)."""
    missing = [h for h in HOOK_NAMES if f"test_hook_{h}" not in globals()]
    assert missing == []


def test_hook_on_startup():
    """on_startup gets the gateway and config, instance by instance in config order, awaited one at a time."""
    calls: list = []
    pending: Deferred = Deferred()
    config = gateway_config(
        [section("a"), section("b")],
        [route_config("r", section("a", {"x": 1}), section("c"))],
    )
    seen = []

    class Watcher:
        @hookimpl
        def on_startup(self, gateway, config):
            seen.append((gateway, config))

    plugins = build(
        config,
        **recorders(calls, a={"on_startup": lambda: pending}, b={}),
        c=lambda options, context: Watcher(),
    )
    gateway = object()
    d = plugins.startup(gateway, config)
    assert not d.called
    assert calls == [("a", "on_startup")]  # b waits for a's Deferred
    pending.callback(None)
    assert result_of(d) is None
    # global a, global b, route r's own a, route-only c
    assert calls == [("a", "on_startup"), ("b", "on_startup"), ("a", "on_startup")]
    assert seen == [(gateway, config)]


def test_on_startup_failure_names_the_plugin():
    """A failing on_startup fails startup() with PluginStartupError; later plugins are not started."""
    calls: list = []
    config = gateway_config([section("a"), section("b")])
    plugins = build(config, **recorders(calls, a={"on_startup": raise_(OSError("port busy"))}, b={}))
    with capturedLogs() as events:
        failure = failure_of(plugins.startup(object(), config))
    assert failure.check(PluginStartupError)
    assert failure.value.plugin == "a"
    assert "'a'" in str(failure.value) and "port busy" in str(failure.value)
    assert calls == [("a", "on_startup")]
    assert [e["plugin"] for e in events if "log_failure" in e] == ["a"]


def test_hook_on_shutdown():
    """on_shutdown runs on every instance in reverse order; failures are logged and swallowed."""
    calls: list = []
    pending: Deferred = Deferred()
    config = gateway_config([section("a"), section("b"), section("c")])
    plugins = build(
        config,
        **recorders(
            calls,
            a={},
            b={"on_shutdown": raise_(RuntimeError("boom"))},
            c={"on_shutdown": lambda: pending},
        ),
    )
    with capturedLogs() as events:
        d = plugins.shutdown(object())
        assert calls == [("c", "on_shutdown")]
        pending.errback(RuntimeError("async boom"))
        assert result_of(d) is None
    assert calls == [("c", "on_shutdown"), ("b", "on_shutdown"), ("a", "on_shutdown")]
    logged = [(e["plugin"], e["log_failure"].getErrorMessage()) for e in events if "log_failure" in e]
    assert logged == [("c", "async boom"), ("b", "boom")]


def test_hook_on_request():
    """on_request receives the request and the route; None from everyone means forward."""
    seen = []

    class Seer:
        @hookimpl
        def on_request(self, request, route):
            seen.append((request, route))
            request.headers.setRawHeaders(b"X-Seen", [b"yes"])

    config = gateway_config([section("seer")], [route_config("r")])
    route = Route("r", config.routes[0])
    plugins = build(config, seer=lambda options, context: Seer()).for_route("r")
    req = request()
    d = plugins.on_request(req, route)
    assert d.called  # synchronous all the way: no reactor involved
    assert result_of(d) is None
    assert seen == [(req, route)]
    assert req.headers.getRawHeaders(b"X-Seen") == [b"yes"]


def test_hook_on_response():
    """on_response may edit the response in place; the same object comes back."""

    class Stamp:
        @hookimpl
        def on_response(self, request, response):
            response.headers.setRawHeaders(b"X-Stamp", [b"1"])
            response.status = 299

    config = gateway_config([section("stamp")], [route_config("r")])
    plugins = build(config, stamp=lambda options, context: Stamp()).for_route("r")
    response = ProxyResponse(status=200, from_upstream=True)
    assert result_of(plugins.on_response(request(), response)) is response
    assert response.status == 299
    assert response.headers.getRawHeaders(b"X-Stamp") == [b"1"]


def test_hook_on_error():
    """on_error can answer with its own Response; the first one wins."""
    calls: list = []
    page = Response(status=404, body=b"<h1>nothing here</h1>")
    plugins, _ = single_route(
        "quiet", "pages", "late", calls=calls,
        quiet={}, pages={"on_error": page}, late={"on_error": Response(status=500)},
    )
    assert result_of(plugins.on_error(request(), Failure(RouteNotFound()))) is page
    assert [c for c in calls if c[1] == "on_error"] == [("quiet", "on_error"), ("pages", "on_error")]


# -- on_request ------------------------------------------------------------------


def test_first_response_short_circuits():
    """The first Response answers: later plugins are not called."""
    calls: list = []
    answer = Response(status=418)
    plugins, route = single_route("a", "b", "c", calls=calls, a={}, b={"on_request": answer}, c={})
    assert result_of(plugins.on_request(request(), route)) is answer
    assert calls == [("a", "on_request"), ("b", "on_request")]


def test_async_results_are_awaited_in_order():
    """A Deferred result is settled before the next plugin runs; a coroutine likewise."""
    calls: list = []
    clock = Clock()

    async def coroutine_none():
        await deferLater(clock, 1.0, lambda: None)
        calls.append(("b", "done"))
        return None

    plugins, route = single_route(
        "a", "b", "c", calls=calls,
        a={"on_request": lambda: deferLater(clock, 1.0, lambda: None)},
        b={"on_request": coroutine_none},
        c={"on_request": lambda: succeed(Response(status=201))},
    )
    d = plugins.on_request(request(), route)
    assert calls == [("a", "on_request")] and not d.called
    clock.advance(1)
    assert calls == [("a", "on_request"), ("b", "on_request")] and not d.called
    clock.advance(1)
    assert result_of(d).status == 201
    assert calls == [("a", "on_request"), ("b", "on_request"), ("b", "done"), ("c", "on_request")]


def test_async_def_hook():
    """An ``async def`` implementation works like a synchronous one."""

    class Async:
        @hookimpl
        async def on_request(self, request):
            return Response(status=202)

    config = gateway_config([section("x")], [route_config("r")])
    plugins = build(config, x=lambda options, context: Async()).for_route("r")
    assert result_of(plugins.on_request(request(), None)).status == 202


def test_raising_plugin_gives_plugin_error_and_is_logged():
    """An unexpected exception: logged with the plugin and hook names, the request fails with PluginError (500)."""
    calls: list = []
    plugins, route = single_route("a", "bad", "c", calls=calls, a={}, bad={"on_request": raise_(KeyError("secret"))}, c={})
    with capturedLogs() as events:
        failure = failure_of(plugins.on_request(request(request_id="abc"), route))
    assert failure.check(PluginError)
    assert failure.value.status == 500 and failure.value.code == "plugin_error"
    assert "secret" not in failure.value.message
    assert ("c", "on_request") not in calls
    [event] = [e for e in events if "log_failure" in e]
    assert (event["plugin"], event["hook"], event["request_id"]) == ("bad", "on_request", "abc")
    assert event["log_failure"].check(KeyError)


def test_a_global_plugin_failure_names_the_route_being_served():
    """Issue 17 item 5: a global plugin's one instance serves every route; its failures name the route that was served, not "None"."""
    calls: list = []
    bad = {"on_request": raise_(KeyError("x")), "on_response": lambda: "nonsense", "on_error": raise_(KeyError("y"))}
    config = gateway_config([section("bad")], [route_config("users"), route_config("orders")])
    plugins = build(config, **recorders(calls, bad=bad))
    with capturedLogs() as events:
        failure_of(plugins.for_route("users").on_request(request(request_id="r1"), Route("users", config.routes[0])))
        failure_of(plugins.for_route("orders").on_response(request(request_id="r2"), ProxyResponse(status=200)))
        result_of(plugins.for_route(None).on_error(request(request_id="r3"), Failure(RouteNotFound())))
    logged = [(e["plugin"], e["hook"], e["route"], e["request_id"]) for e in events if e.get("plugin") == "bad"]
    assert logged == [
        ("bad", "on_request", "users", "r1"),
        ("bad", "on_response", "orders", "r2"),
        ("bad", "on_error", None, "r3"),
    ]
    texts = [formatEvent(e) for e in events if e.get("plugin") == "bad"]
    assert "route 'users', request r1" in texts[0] and "route 'orders', request r2" in texts[1]
    assert "no route matched, request r3" in texts[2]


def test_a_global_plugin_startup_failure_says_which_instance():
    """The lifecycle log says "the global instance" or names the route whose instance failed."""
    config = gateway_config([section("g")], [route_config("r", section("own"))])
    fail = {"on_startup": raise_(OSError("no"))}
    for name, words in (("g", "the global instance"), ("own", "the instance of route 'r'")):
        plugins = build(config, **recorders([], **{name: fail, ("own" if name == "g" else "g"): {}}))
        with capturedLogs() as events:
            failure_of(plugins.startup(None, config))
        [event] = [e for e in events if e.get("hook") == "on_startup"]
        assert words in formatEvent(event)


def test_failing_deferred_gives_plugin_error():
    """A Deferred that fails is contained like a raised exception."""
    calls: list = []
    pending: Deferred = Deferred()
    plugins, route = single_route("a", calls=calls, a={"on_request": lambda: pending})
    d = plugins.on_request(request(), route)
    with capturedLogs() as events:
        pending.errback(ZeroDivisionError())
    assert failure_of(d).check(PluginError)
    assert [e["plugin"] for e in events if "log_failure" in e] == ["a"]


def test_gateway_error_passes_through():
    """A GatewayError (sync or async) answers with that very error, unlogged."""
    calls: list = []

    async def deny():
        raise Forbidden("nope")

    for result in (raise_(Forbidden("nope")), deny):
        plugins, route = single_route("a", "b", calls=calls, a={"on_request": result}, b={})
        with capturedLogs() as events:
            failure = failure_of(plugins.on_request(request(), route))
        assert failure.check(Forbidden) and failure.value.message == "nope"
        assert events == []
    assert ("b", "on_request") not in calls


def test_wrong_return_type_is_a_plugin_error():
    calls: list = []
    plugins, route = single_route("a", calls=calls, a={"on_request": lambda: {"status": 200}})
    with capturedLogs() as events:
        assert failure_of(plugins.on_request(request(), route)).check(PluginError)
    assert [e["result_type"] for e in events] == ["dict"]


def test_opt_in_arguments():
    """An implementation may take a subset of the arguments, in any order."""
    seen = []

    class Partial:
        @hookimpl
        def on_request(self, route, request):
            seen.append(("on_request", route, request))

        @hookimpl
        def on_response(self, response):
            seen.append(("on_response", response))

        @hookimpl
        def on_error(self):
            seen.append(("on_error",))

    config = gateway_config([section("p")], [route_config("r")])
    plugins = build(config, p=lambda options, context: Partial()).for_route("r")
    req, response = request(), ProxyResponse(status=200)
    plugins.on_request(req, "ROUTE")
    plugins.on_response(req, response)
    plugins.on_error(req, Failure(RouteNotFound()))
    assert seen == [("on_request", "ROUTE", req), ("on_response", response), ("on_error",)]



def test_one_argument_implementations_get_the_argument_they_name():
    """The chain calls a one-argument implementation itself (no `_Call` layer): the right argument, either one."""
    seen = []

    class Route:
        @hookimpl
        def on_request(self, route):
            seen.append(("on_request", route))

        @hookimpl
        def on_response(self, request):
            seen.append(("on_response", request))

    class Both:
        @hookimpl
        def on_request(self, request, route):
            seen.append(("both", request, route))

        @hookimpl
        def on_response(self, request, response):
            seen.append(("both", request, response))

    config = gateway_config([section("a"), section("b")], [route_config("r")])
    plugins = build(config, a=lambda options, context: Route(), b=lambda options, context: Both()).for_route("r")
    req, response = request(), ProxyResponse(status=200)
    assert plugins.on_request_now(req, "ROUTE") is None
    assert plugins.on_response_now(req, response) is response
    assert seen == [("on_request", "ROUTE"), ("both", req, "ROUTE"), ("both", req, response), ("on_response", req)]


def test_tryfirst_and_trylast():
    """Config order, except that tryfirst implementations come first and trylast ones last."""
    order = []

    def plugin(name, **opts):
        class P:
            @hookimpl(**opts)
            def on_request(self):
                order.append(name)

        return lambda options, context: P()

    config = gateway_config([section(n) for n in "abcd"], [route_config("r")])
    plugins = build(config, a=plugin("a", trylast=True), b=plugin("b"), c=plugin("c", tryfirst=True), d=plugin("d"))
    plugins.for_route("r").on_request(request(), None)
    assert order == ["c", "b", "d", "a"]


def test_not_called_through_pluggy():
    """Per-request hooks bypass pluggy's hook caller (hot path)."""
    calls: list = []
    config = gateway_config([section("a")], [route_config("r")])
    plugins = build(config, **recorders(calls, a={}))
    monitored = []
    plugins.manager.add_hookcall_monitoring(lambda name, impls, kwargs: monitored.append(name), lambda *a: None)
    route_plugins = plugins.for_route("r")
    route_plugins.on_request(request(), None)
    route_plugins.on_response(request(), ProxyResponse(status=200))
    route_plugins.on_error(request(), Failure(RouteNotFound()))
    assert monitored == []
    assert len(calls) == 3


# -- on_response ------------------------------------------------------------------


def test_on_response_replacement_seen_by_later_plugins():
    """on_response unwinds: the plugin configured first sees the response last, after a replacement."""
    seen = []

    class Replace:
        @hookimpl
        def on_response(self, response):
            return Response.json({"replaced": True}, status=203)

    class Later:
        @hookimpl
        async def on_response(self, response):
            seen.append(response)
            response.headers.setRawHeaders(b"X-Later", [b"1"])

    config = gateway_config([section("later"), section("replace")], [route_config("r")])
    plugins = build(config, replace=lambda o, c: Replace(), later=lambda o, c: Later()).for_route("r")
    original = ProxyResponse(status=200, from_upstream=True)
    result = result_of(plugins.on_response(request(), original))
    assert result is not original and seen == [result]
    assert result.status == 203 and result.body == b'{"replaced": true}'
    assert result.headers.getRawHeaders(b"X-Later") == [b"1"]
    assert result.headers.getRawHeaders(b"Content-Type") == [b"application/json"]


def test_on_response_exception_is_contained():
    calls: list = []
    plugins, _ = single_route("a", "b", calls=calls, a={"on_response": raise_(ValueError("x"))}, b={})
    with capturedLogs() as events:
        assert failure_of(plugins.on_response(request(), ProxyResponse(status=200))).check(PluginError)
    assert [(e["plugin"], e["hook"]) for e in events if "log_failure" in e] == [("a", "on_response")]


def test_on_response_async_chain():
    calls: list = []
    pending: Deferred = Deferred()
    # on_response unwinds: b (configured last, innermost) runs first.
    plugins, _ = single_route("a", "b", calls=calls, a={}, b={"on_response": lambda: pending})
    response = ProxyResponse(status=200)
    d = plugins.on_response(request(), response)
    assert calls == [("b", "on_response")]
    pending.callback(Response(status=410))
    assert result_of(d).status == 410
    assert calls == [("b", "on_response"), ("a", "on_response")]


# -- on_error ---------------------------------------------------------------------


def test_on_error_exceptions_are_logged_and_ignored():
    calls: list = []

    async def crash():
        raise RuntimeError("async")

    plugins, _ = single_route(
        "a", "b", "c", calls=calls,
        a={"on_error": raise_(RuntimeError("sync"))}, b={"on_error": crash}, c={"on_error": None},
    )
    with capturedLogs() as events:
        assert result_of(plugins.on_error(request(), Failure(RouteNotFound()))) is None
    assert [c[0] for c in calls] == ["a", "b", "c"]
    assert [e["plugin"] for e in events if "log_failure" in e] == ["a", "b"]


def test_on_error_receives_the_failure():
    received = []

    class Catch:
        @hookimpl
        def on_error(self, failure):
            received.append(failure)
            if failure.check(RouteNotFound):
                return Response(status=404, body=b"custom")
            return None

    config = gateway_config([section("catch")], [route_config("r")])
    plugins = build(config, catch=lambda o, c: Catch())
    failure = Failure(RouteNotFound())
    # for_route(None): the global plugins, for requests that matched no route.
    assert result_of(plugins.for_route(None).on_error(request(), failure)).body == b"custom"
    assert result_of(plugins.for_route("r").on_error(request(), Failure(Forbidden()))) is None
    assert received[0] is failure


# -- configuration: global, override, disable --------------------------------------


def options_recorder(built: list):
    class Plain:
        def __init__(self, name, options):
            self.name, self.options = name, dict(options)

        @hookimpl
        def on_request(self, request):
            return None

    def factory(name):
        def make(options, context):
            plugin = Plain(context.name, options)
            built.append(plugin)
            return plugin

        return make

    return factory


def test_global_override_and_disable():
    """Global applies everywhere; a route section replaces it (own options, same position) or disables it."""
    built: list = []
    make = options_recorder(built)
    config = gateway_config(
        [section("a", {"v": "global"}), section("b", {"v": "global"})],
        [
            route_config("plain"),
            route_config("override", section("c", {"v": "own"}), section("a", {"v": "route"})),
            route_config("disable", section("a", enabled=False)),
        ],
    )
    plugins = build(config, a=make("a"), b=make("b"), c=make("c"))
    assert plugins.for_route("plain").names == ("a", "b")
    assert plugins.for_route("override").names == ("a", "b", "c")
    assert plugins.for_route("disable").names == ("b",)
    assert [(p.name, p.options) for p in built] == [
        ("a", {"v": "global"}),
        ("b", {"v": "global"}),
        ("c", {"v": "own"}),
        ("a", {"v": "route"}),
    ]
    assert plugins.for_route(None).names == ("a", "b")
    registered = plugins.manager.get_plugins()
    assert all(p in registered for p in built)


def test_global_disabled_is_not_built():
    built: list = []
    make = options_recorder(built)
    config = gateway_config(
        [section("a", {"v": 1}, enabled=False)],
        [route_config("plain"), route_config("on", section("a", {"v": 2}))],
    )
    plugins = build(config, a=make("a"))
    assert [p.options for p in built] == [{"v": 2}]
    assert plugins.for_route("plain").empty
    assert plugins.for_route("on").names == ("a",)


def test_empty():
    """`empty` is True when no plugin of the route implements a per-request hook."""

    class LifecycleOnly:
        @hookimpl
        def on_startup(self):
            pass

    config = gateway_config([section("life")], [route_config("r"), route_config("s", section("ip_allow", {"deny": ["10.0.0.0/8"]}))])
    plugins = build_plugins(
        config, context_factory, registry=PluginRegistry({"life": lambda o, c: LifecycleOnly(), "ip_allow": "twistgate.plugins.ip_allow:make_plugin"})
    )
    assert plugins.for_route("r").empty
    assert not plugins.for_route("s").empty
    assert build(gateway_config(routes=[route_config("r")])).for_route("r").empty
    with pytest.raises(KeyError):
        plugins.for_route("nope")


def test_context_factory_gets_the_plugin_name():
    names = []

    def factory(name):
        names.append(name)
        return context_factory(name)

    config = gateway_config([section("a")], [route_config("r", section("a"))])
    build_plugins(config, factory, registry=PluginRegistry(recorders([], a={})))
    assert names == ["a", "a"]


# -- configuration errors --------------------------------------------------------


def test_unknown_plugin_name():
    config = gateway_config(
        [section("ip_alow", line=7)],
        [route_config("r", section("maintenanse", enabled=False, line=12, path="routes[0].plugins.maintenanse"))],
    )
    with pytest.raises(ConfigError) as raised:
        build_plugins(config, context_factory)
    first, second = raised.value.issues
    assert first.location.line == 7
    assert "unknown plugin 'ip_alow'" in first.message
    assert "did you mean 'ip_allow'?" in first.message
    assert "ip_allow" in first.message and "maintenance" in first.message
    # a disabled section is still checked: a typo would disable nothing
    assert second.location.path == "routes[0].plugins.maintenanse"
    assert "did you mean 'maintenance'?" in second.message


def test_bad_options_are_config_issues_at_the_section():
    config = gateway_config(
        [section("ip_allow", {"cidrs": ["10.0.0.0/33"]}, line=3)],
        [route_config("r", section("maintenance", {"retry_after": "soon"}, line=9))],
    )
    with pytest.raises(ConfigError) as raised:
        build_plugins(config, context_factory)
    issues = {issue.location.line: issue.message for issue in raised.value.issues}
    assert set(issues) == {3, 9}
    assert "ip_allow" in issues[3] and "10.0.0.0/33" in issues[3]
    assert "maintenance" in issues[9] and "retry_after" in issues[9]
    assert "gw.yaml:9" in str(raised.value)


def test_factory_crash_is_a_config_issue():
    def crash(options, context):
        raise RuntimeError("cannot reach the license server")

    with pytest.raises(ConfigError, match="RuntimeError: cannot reach the license server"):
        build(gateway_config([section("x")]), x=crash)


def test_misspelled_hook_and_wrong_arguments():
    class Misspelled:
        @hookimpl
        def on_requests(self, request):
            pass

    class WrongArgs:
        @hookimpl
        def on_response(self, req, response):
            pass

    class Wrapper:
        @hookimpl(wrapper=True)
        def on_request(self, request):
            return (yield)

    config = gateway_config([section("m", line=1), section("w", line=2), section("wr", line=3)])
    with pytest.raises(ConfigError) as raised:
        build(config, m=lambda o, c: Misspelled(), w=lambda o, c: WrongArgs(), wr=lambda o, c: Wrapper())
    issues = {issue.location.line: issue.message for issue in raised.value.issues}
    assert "unknown hook 'on_requests'" in issues[1] and "did you mean 'on_request'?" in issues[1]
    assert "'req'" in issues[2] and "\n" not in issues[2]
    assert "wrapper" in issues[3]


def test_hook_methods_without_hookimpl_are_refused():
    """Issue 17 item 4: a method named after a hook but not marked @hookimpl is a configuration error, not silently ignored."""
    import pluggy

    class Forgot:
        def on_request(self, request):
            return Response(status=403)

        @hookimpl
        def on_response(self, response):
            pass

    class OtherMarker:
        @pluggy.HookimplMarker("datasette")
        def on_error(self, request, failure):
            pass

    class Helper:  # other method names are the plugin's own business
        def on_requests_seen(self):
            pass

    config = gateway_config([section("f", line=1), section("o", line=2), section("h", line=3)])
    with pytest.raises(ConfigError) as raised:
        build(config, f=lambda o, c: Forgot(), o=lambda o, c: OtherMarker(), h=lambda o, c: Helper())
    issues = {issue.location.line: issue.message for issue in raised.value.issues}
    assert sorted(issues) == [1, 2]
    assert "plugin 'f': on_request() is not marked with @hookimpl" in issues[1]
    assert "from twistgate.plugins" in issues[1]
    assert "plugin 'o': on_error() is not marked with @hookimpl" in issues[2]


def test_duplicate_section():
    with pytest.raises(ConfigError, match="configured twice"):
        build(gateway_config([section("a"), section("a", line=2)]), **recorders([], a={}))


def test_entry_points_are_loaded_lazily(tmp_path, monkeypatch):
    """Only configured names are imported; a broken one is a config issue."""
    (tmp_path / "lazy_plugin_mod.py").write_text(
        "import twistgate.plugins as p\n"
        "IMPORTED = True\n"
        "class Plugin:\n"
        "    @p.hookimpl\n"
        "    def on_request(self):\n"
        "        return None\n"
        "def make(options, context):\n"
        "    return Plugin()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = PluginRegistry(
        {
            "lazy": EntryPoint("lazy", "lazy_plugin_mod:make", "twistgate"),
            "broken": EntryPoint("broken", "no_such_module_for_twistgate:make", "twistgate"),
            "unused": "also_no_such_module:make",
        }
    )
    assert registry.names() == ("broken", "lazy", "unused")
    assert "lazy_plugin_mod" not in sys.modules
    plugins = build_plugins(gateway_config([section("lazy")], [route_config("r")]), context_factory, registry=registry)
    assert "lazy_plugin_mod" in sys.modules
    assert plugins.for_route("r").names == ("lazy",)
    with pytest.raises(ConfigError, match="'broken' could not be loaded: ModuleNotFoundError"):
        build_plugins(gateway_config([section("broken")]), context_factory, registry=registry)
    monkeypatch.delitem(sys.modules, "lazy_plugin_mod")


def test_default_registry_has_the_builtins():
    names = PluginRegistry.default().names()
    assert "ip_allow" in names and "maintenance" in names


def test_cancellation_is_not_a_plugin_error():
    """Cancelling the hook call (client went away) cancels the plugin's Deferred; nothing is logged."""
    calls: list = []
    pending: Deferred = Deferred()
    plugins, route = single_route("a", "b", calls=calls, a={"on_request": lambda: pending}, b={})
    d = plugins.on_request(request(), route)
    with capturedLogs() as events:
        d.cancel()
    assert pending.called  # cancelled too
    assert failure_of(d).check(CancelledError)
    assert events == []
    assert calls == [("a", "on_request")]


def test_hook_on_breaker_state_change():
    """Breaker transitions reach every implementation, with the arguments it asks for; failures are contained."""
    from twisted.web.resource import Resource

    from twistgate.config import load_text
    from twistgate.testing import GatewayHarness

    seen: list = []

    class Watcher:
        @hookimpl
        def on_breaker_state_change(self, upstream, target, old, new):
            seen.append((upstream, target, old, new))

    class Broken:
        @hookimpl
        def on_breaker_state_change(self, new):
            raise RuntimeError("pager down")

    class Down(Resource):
        isLeaf = True

        def render(self, request):
            request.setResponseCode(503)
            return b"down"

    config = load_text(
        'listeners: [{name: p, endpoint: "tcp:0"}]\n'
        "upstreams:\n  app:\n    targets: [{url: 'http://a:80'}]\n"
        "    circuit_breaker: {failure_threshold: 1, recovery_timeout: 5s}\n"
        "routes: [{name: r, path: /, upstream: app}]\n"
        "plugins: {broken: {}, watcher: {}}\n"
    )
    gw = GatewayHarness(
        config, Down(), plugins={"watcher": lambda options, context: Watcher(), "broken": lambda options, context: Broken()}
    )
    with capturedLogs() as events:
        assert gw.request("GET", "http://gw/").code == 503
        gw.clock.advance(5)
    assert seen == [("app", "http://a", "closed", "open"), ("app", "http://a", "open", "half_open")]
    assert [e.get("plugin") for e in events if "log_failure" in e] == ["broken", "broken"]


def test_on_response_unwinds_in_reverse_and_skips_layers_inside_an_answer():
    """An onion: on_response runs innermost first; an answer unwinds from the layer that gave it outwards."""
    order = []

    def layer(name, answer=False):
        class Layer:
            @hookimpl
            def on_request(self, request):
                order.append(("request", name))
                return Response(status=200, body=name.encode()) if answer else None

            @hookimpl
            def on_response(self, response):
                order.append(("response", name))

        return lambda o, c: Layer()

    config = gateway_config([section("outer"), section("middle"), section("inner")], [route_config("r")])
    plugins = build(config, outer=layer("outer"), middle=layer("middle"), inner=layer("inner")).for_route("r")
    req = request()
    assert result_of(plugins.on_request(req, None)) is None
    result_of(plugins.on_response(req, ProxyResponse(status=200, from_upstream=True)))
    assert order == [
        ("request", "outer"), ("request", "middle"), ("request", "inner"),
        ("response", "inner"), ("response", "middle"), ("response", "outer"),
    ]  # fmt: skip

    order.clear()
    plugins = build(config, outer=layer("outer"), middle=layer("middle", answer=True), inner=layer("inner")).for_route("r")
    req = request()
    answer = result_of(plugins.on_request(req, None))
    result_of(plugins.on_response(req, answer.to_proxy_response()))
    assert order == [("request", "outer"), ("request", "middle"), ("response", "middle"), ("response", "outer")]


def test_hook_admin_get():
    """admin_get is called on the global instance, or on the instance a route uses; it gets the path and the query it asks for."""

    class Page:
        def __init__(self, label):
            self.label = label

        @hookimpl
        def admin_get(self, path, query):
            return {"instance": self.label, "path": path, "query": dict(query)}

    class NoPage:
        @hookimpl
        def on_request(self, request):
            pass

    made = iter(["global", "own"])
    config = gateway_config(
        [section("page"), section("plain")],
        [route_config("uses_global"), route_config("own", section("page")), route_config("off", section("page", enabled=False))],
    )
    plugins = build(config, page=lambda o, c: Page(next(made)), plain=lambda o, c: NoPage())
    call = plugins.admin_call("page")
    assert call(("tenants/acme", {"v": ["1"]})) == {"instance": "global", "path": "tenants/acme", "query": {"v": ["1"]}}
    assert plugins.admin_call("page", "own")(("", {}))["instance"] == "own"
    assert plugins.admin_call("page", "uses_global")(("", {}))["instance"] == "global"
    assert plugins.admin_call("page", "off") is None
    assert plugins.admin_call("plain") is None and plugins.admin_call("nope") is None
    assert [(i.name, i.route) for i in plugins.instances] == [("page", None), ("plain", None), ("page", "own")]


def _layers_taking(usual: bool):
    """
    Layer factories whose hooks take the usual arguments (``on_request(request)``,
    ``on_response(request, response)``: the chain calls their functions in a
    shortcut loop) or others (the general loops).  `script` says, per layer
    name, what ``on_request`` does: "answer", "raise", "defer" (a Deferred
    of None), "replace" (on_response returns a new Response).
    """
    order = []
    clock = Clock()

    def layer(name, script=""):
        def requested(request):
            order.append(("request", name))
            if script == "answer":
                return Response(status=200, body=name.encode())
            if script == "raise":
                raise KeyError("secret")
            if script == "defer":
                return deferLater(clock, 1.0, lambda: None)
            return None

        def responded(response):
            order.append(("response", name, response.status))
            return Response(status=299) if script == "replace" else None

        if usual:
            class Layer:
                @hookimpl
                def on_request(self, request):
                    return requested(request)

                @hookimpl
                def on_response(self, request, response):
                    return responded(response)
        else:
            class Layer:  # type: ignore[no-redef]
                @hookimpl
                def on_request(self, request, route):
                    return requested(request)

                @hookimpl
                def on_response(self, response):
                    return responded(response)

        return lambda o, c: Layer()

    return order, clock, layer


@pytest.mark.parametrize("usual", [True, False], ids=["shortcut", "general"])
def test_the_usual_arguments_shortcut_behaves_as_the_general_loops(usual):
    """Answers, unwinding, failures, Deferreds and replacements: the same whichever loop calls the layers."""
    order, clock, layer = _layers_taking(usual)
    config = gateway_config([section("outer"), section("middle"), section("inner")], [route_config("r")])

    def chain(**scripts):
        return build(config, **{name: layer(name, scripts.get(name, "")) for name in ("outer", "middle", "inner")}).for_route("r")

    plugins = chain(inner="replace")
    req = request()
    assert plugins.on_request_now(req, None) is None
    sent = plugins.on_response_now(req, ProxyResponse(status=200, from_upstream=True))
    assert sent.status == 299  # inner's replacement, seen by the outer layers
    assert order == [
        ("request", "outer"), ("request", "middle"), ("request", "inner"),
        ("response", "inner", 200), ("response", "middle", 299), ("response", "outer", 299),
    ]  # fmt: skip

    order.clear()
    plugins, req = chain(middle="answer"), request()
    answer = plugins.on_request_now(req, None)
    assert answer.body == b"middle"
    plugins.on_response_now(req, answer.to_proxy_response())
    assert order == [("request", "outer"), ("request", "middle"), ("response", "middle", 200), ("response", "outer", 200)]

    order.clear()
    plugins = chain(middle="raise")
    with capturedLogs() as events:
        failure = failure_of(plugins.on_request(request(request_id="abc"), None))
    assert failure.check(PluginError) and order == [("request", "outer"), ("request", "middle")]
    [event] = [e for e in events if "log_failure" in e]
    assert (event["plugin"], event["hook"], event["request_id"]) == ("middle", "on_request", "abc")

    order.clear()
    plugins = chain(outer="defer")
    d = plugins.on_request(request(), None)
    assert order == [("request", "outer")] and not d.called
    clock.advance(1)
    assert result_of(d) is None and order == [("request", "outer"), ("request", "middle"), ("request", "inner")]
