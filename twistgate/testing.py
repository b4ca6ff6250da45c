"""
Test helpers that ship with twistgate (as treq ships `treq.testing`): run a
whole gateway in memory, with no sockets and a `Clock` for time.

    gw = GatewayHarness.from_yaml(yaml_text, plugins={"tenant_quota": TenantQuota})
    gw.start()                                    # on_startup, as the gateway runs it
    response = gw.request("GET", "/users/1", headers={"X-Tenant": "acme"})
    assert response.code == 200 and gw.json(response)["path"] == "/users/1"
    gw.advance(86400)                             # a day later, on the gateway's clock
    gw.reload(other_yaml)                         # a reload, as SIGHUP does it
    gw.stop()                                     # on_shutdown

The client side is `treq.testing.StubTreq` against the gateway's resource
(seen through the twisted.web engine's adapter), the upstream side a
`RequestTraversalAgent` per upstream: real twisted.web on both ends,
in-memory transports in between.  The pytest fixtures built on it are in
`twistgate.pytest_plugin`; the gateway under the real ``twistd`` is
`twistgate.testing_twistd`.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import warnings
from typing import Any, Dict, List, Mapping, Optional, Union

import yaml
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.config import load_text
from twistgate.config.model import GatewayConfig, UpstreamConfig
from twistgate.engine.twisted_web import TwistedDownstream
from twistgate.generation import Generation
from twistgate.plugins.hookspecs import PROJECT_NAME
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginContext, PluginRegistry, using_plugins
from twistgate.resource import GatewayResource

__all__ = ["EchoUpstream", "GatewayHarness", "TwistedWebFront", "build_plugin", "result_of"]

#: Added to a test's YAML that has no ``listeners`` / ``upstreams`` (see `GatewayHarness.from_yaml`).
DEFAULT_LISTENERS = 'listeners: [{name: test, endpoint: "tcp:0"}]'
DEFAULT_UPSTREAMS = 'upstreams: {app: {targets: [{url: "http://app.test"}]}}'


def result_of(d: Any) -> Any:
    """
    The result of a Deferred that must have fired already, as trial's
    ``successResultOf``: its value, or its exception raised.  Everything the
    harness does in memory fires at once (or after ``advance``), so a test
    needs no reactor.  A coroutine (what an ``async def`` hook returns) is
    run as a Deferred; any other value is returned as it is, so
    ``result_of(plugin.on_request(request))`` works for sync and async hooks.

    :raises AssertionError: the Deferred has not fired yet.
    """
    if inspect.iscoroutine(d):
        d = Deferred.fromCoroutine(d)
    if not isinstance(d, Deferred):
        return d
    results: List[Any] = []
    d.addBoth(results.append)
    if not results:
        raise AssertionError(f"{d!r} has not fired")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def build_plugin(
    factory: Any,
    options: Optional[Mapping[str, Any]] = None,
    *,
    name: str = "plugin",
    clock: Optional[Any] = None,
    context: Optional[PluginContext] = None,
) -> Any:
    """
    The plugin `factory` makes from `options` written as in the YAML file
    (``{"window": "1d"}``): converted through the factory's declared
    ``Options`` as the configuration loader does, then handed to the
    factory with a `PluginContext` on `clock` (a new `Clock` by default).

    :raises ConfigError: the options are invalid (the same messages as in
        the gateway, located at ``<options>:LINE: NAME.KEY``).
    """
    from twistgate.plugins.options import FreeOptions, convert_options, options_spec

    spec = options_spec(factory)
    given = dict(options or {})
    converted = given if isinstance(spec, FreeOptions) else convert_options(spec, given, where=name)
    if context is None:
        context = PluginContext(name=name, clock=clock if clock is not None else Clock())
    return factory(converted, context)


class EchoUpstream(Resource):
    """
    An upstream that answers every request ``200`` with JSON describing it
    (``method``, ``path`` with the query, ``headers`` as lists of str,
    ``body``) and keeps them in `requests`.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: List[Dict[str, Any]] = []

    def render(self, request: Any) -> bytes:
        seen = {
            "method": request.method.decode("ascii"),
            "path": request.uri.decode("latin-1"),
            "headers": {k.decode("latin-1"): [v.decode("latin-1") for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body": request.content.read().decode("utf-8", "replace") if request.content is not None else "",
        }
        self.requests.append(seen)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(seen).encode("utf-8")


class GatewayHarness:
    """
    A gateway built from `config`, its upstreams served in memory.

    :param upstreams: one `IResource` for every upstream, or one per
        upstream name; default an `EchoUpstream` (``self.upstream``).
    :param clock: the gateway's clock (default a new `Clock`).
    :param agents: upstream name -> any `IAgent` instead (spies, failures).
    :param plugins: plugin name -> factory, besides the built-ins and the
        installed ``twistgate`` entry points (a name given here wins).
    :param listener: the listener name requests arrive on
        (``routes[].listeners``, ``redirect_https``).
    """

    def __init__(
        self,
        config: GatewayConfig,
        upstreams: Union[IResource, Mapping[str, Any], None] = None,
        *,
        clock: Optional[Clock] = None,
        agents: Optional[Mapping[str, Any]] = None,
        plugins: Optional[Mapping[str, Any]] = None,
        listener: str = "",
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self.upstream = upstreams if upstreams is not None else EchoUpstream()
        self._agents: List[RequestTraversalAgent] = []
        explicit = dict(agents or {})

        def agent_for(upstream: UpstreamConfig) -> Any:
            if upstream.name in explicit:
                return explicit[upstream.name]
            resource = self.upstream[upstream.name] if isinstance(self.upstream, Mapping) else self.upstream
            agent = RequestTraversalAgent(resource)
            self._agents.append(agent)
            return agent

        self._plugins = dict(plugins or {})
        registry = PluginRegistry({**BUILTIN_PLUGINS, **self._plugins}, entry_point_group=PROJECT_NAME)
        self.generation = Generation(config, self.clock, agent_for=agent_for, plugin_registry=registry)
        self.resource = GatewayResource(self.generation)
        #: The gateway as twisted.web sees it (for `StubTreq` and `RequestTraversalAgent`).
        self.front = TwistedWebFront(self.resource, listener)
        self.client = StubTreq(self.front)
        self.started = False
        self._reloader: Any = None

    @classmethod
    def from_yaml(
        cls,
        text: str,
        *,
        plugins: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
        **kwargs: Any,
    ) -> "GatewayHarness":
        """
        A harness from YAML text, read as the gateway reads its file (with
        `plugins` known, so their declared options are checked with line
        numbers).  ``listeners`` may be left out, and so may ``upstreams``:
        then one upstream ``app`` is there (served by the `EchoUpstream`).

        :param environ: for ``${NAME}`` (default: empty).
        """
        return cls(_load(text, plugins, environ), plugins=plugins, **kwargs)

    # -- lifecycle -------------------------------------------------------------

    def start(self, *args: Any, **kwargs: Any) -> Any:
        """
        Start the gateway as the service does: its services, then every
        plugin's ``on_startup`` (with this harness as ``gateway``), then
        serve.  Fires (at once, unless a hook waits on the clock) with the
        harness; fails with `PluginStartupError`.  Requests are answered
        without it too, but no plugin has started.

        ``start(method, url, ...)`` is the deprecated name of `send`.
        """
        if args or kwargs:
            warnings.warn("GatewayHarness.start(method, url) is deprecated; use send(method, url)", DeprecationWarning, stacklevel=2)
            return self.send(*args, **kwargs)
        generation = self.generation
        d = generation.start()
        d.addCallback(lambda _: generation.plugins.startup(self, generation.config))

        def started(_: Any) -> "GatewayHarness":
            self.started = True
            return self

        return d.addCallback(started)

    def stop(self) -> "Deferred[None]":
        """Every plugin's ``on_shutdown`` (reverse order), then stop the services and close the pools."""
        generation = self.generation
        d = generation.plugins.shutdown(self)
        if self._reloader is not None:
            d.addCallback(lambda _: self._reloader.stop_retiring())
        d.addCallback(lambda _: generation.stop())
        d.addCallback(lambda _: setattr(self, "started", False))
        return d

    def reload(self, config: Union[str, GatewayConfig], *, environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
        """
        Swap in a new configuration as a reload does (SIGHUP, ``POST
        /admin/reload``): build it (reusing unchanged upstreams), start it
        (``on_startup`` of the new instances), swap, retire the old one
        (``on_shutdown`` once its requests are done).  Plugin state in
        ``context.store`` and plugin metrics carry over.

        :param config: YAML text (as `from_yaml`) or a `GatewayConfig`.
        :return: the reload's outcome (``changes``...).
        :raises AssertionError: the new configuration was rejected (why).
        """
        from twistgate.ops.reload import Reloader

        new = config if isinstance(config, GatewayConfig) else _load(config, self._plugins, environ)
        if self._reloader is None:
            self._reloader = Reloader(
                self.resource, self.generation.ops, self.clock,
                startup=lambda g: g.plugins.startup(self, g.config), shutdown=lambda g: g.plugins.shutdown(self),
                load=lambda source: (new, None), run_blocking=maybeDeferred,
            )  # fmt: skip
        self._reloader.load = lambda source: (new, None)
        outcome = result_of(self._reloader.reload("<harness>", reason="test"))
        if not outcome["ok"]:
            details = "".join(f"\n  {i['text']}" for i in outcome.get("issues", ()))
            raise AssertionError(f"{outcome['message']}{details}")
        self.generation = self.resource.generation
        self.flush()
        return outcome

    # -- traffic ---------------------------------------------------------------

    def flush(self) -> None:
        """Move every pending byte, both hops, until nothing moves."""
        for _ in range(100):
            self.client.flush()
            for agent in self._agents:
                agent.flush()
            self.client.flush()
            if not any(_pending(a) for a in [*self._agents, self.client._agent]):
                return

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """
        Send a request, pump everything, and return the treq response (which
        must have arrived).  `url` may be a path (``/users/1``: host
        ``gw.test``); `kwargs` are treq's (``headers``, ``data``, ``json``...).
        """
        return result_of(self.send(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> Any:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def send(self, method: str, url: str, **kwargs: Any) -> "Deferred[Any]":
        """Send a request and pump once; the Deferred may still be waiting (advance the clock, flush)."""
        if url.startswith("/"):
            url = "http://gw.test" + url
        d = self.client.request(method, url, **kwargs)
        self.flush()
        return d

    def content(self, response: Any) -> bytes:
        """The whole body of `response`."""
        d = response.content()
        self.flush()
        return result_of(d)

    def json(self, response: Any) -> Any:
        """The body of `response`, parsed as JSON."""
        return json.loads(self.content(response))

    def advance(self, seconds: float) -> None:
        """Move the gateway's clock on (timers fire: timeouts, expiries, your ``callLater``), then pump."""
        self.clock.advance(seconds)
        self.flush()


class TwistedWebFront(Resource):
    """The gateway's root as twisted.web's `Site` sees it: each `Request` adapted to a `Downstream`."""

    isLeaf = True

    def __init__(self, root: GatewayResource, listener: str = "") -> None:
        super().__init__()
        self.root = root
        self.listener = listener

    def render(self, request: Any) -> Any:
        self.root.render(TwistedDownstream(request, self.listener))
        return NOT_DONE_YET


def _load(text: str, plugins: Optional[Mapping[str, Any]], environ: Optional[Mapping[str, str]]) -> GatewayConfig:
    text = textwrap.dedent(text)
    try:
        present = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        present = {}  # the loader reports it, with its line
    if isinstance(present, dict):
        # Appended, so the lines of the test's YAML keep their numbers in errors.
        if "listeners" not in present:
            text += "\n" + DEFAULT_LISTENERS + "\n"
        if "upstreams" not in present:
            text += "\n" + DEFAULT_UPSTREAMS + "\n"
    with using_plugins(plugins or {}):
        return load_text(text, filename="gateway.yaml", environ=dict(environ or {}))


def _pending(agent: Any) -> bool:
    return any(
        pump.clientIO.disconnecting is False and (pump.clientIO.stream or pump.serverIO.stream)
        for pump in getattr(agent, "_pumps", ())
    )
