"""
Test helpers that ship with twistgate (as treq ships `treq.testing`): run a
whole gateway in memory, with no sockets and a `Clock` for time.

    gw = GatewayHarness(load_text(yaml), upstreams={"app": MyResource()})
    response = gw.request("GET", "http://gw.test/users/1")
    assert response.code == 200

The client side is `treq.testing.StubTreq` against the gateway's resource
(seen through the twisted.web engine's adapter), the upstream side a
`RequestTraversalAgent` per upstream: real twisted.web on both ends,
in-memory transports in between.  Plugin authors can use it to test a plugin
inside a real gateway.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Union

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.config.model import GatewayConfig, UpstreamConfig
from twistgate.engine.twisted_web import TwistedDownstream
from twistgate.generation import Generation
from twistgate.plugins.registry import BUILTIN_PLUGINS, PluginContext, PluginRegistry
from twistgate.resource import GatewayResource

__all__ = ["GatewayHarness", "TwistedWebFront", "build_plugin", "result_of"]


def result_of(d: "Deferred[Any]") -> Any:
    """The result of a Deferred that must have fired already (trial's successResultOf)."""
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


class GatewayHarness:
    """A gateway built from `config`, its upstreams served by in-memory resources."""

    def __init__(
        self,
        config: GatewayConfig,
        upstreams: Union[IResource, Mapping[str, Any]],
        *,
        clock: Optional[Clock] = None,
        agents: Optional[Mapping[str, Any]] = None,  # upstream name -> IAgent (spies, failures)
        plugins: Optional[Mapping[str, Any]] = None,  # extra plugin name -> factory
    ) -> None:
        self.clock = clock if clock is not None else Clock()
        self._agents: List[RequestTraversalAgent] = []
        explicit = dict(agents or {})

        def agent_for(upstream: UpstreamConfig) -> Any:
            if upstream.name in explicit:
                return explicit[upstream.name]
            resource = upstreams[upstream.name] if isinstance(upstreams, Mapping) else upstreams
            agent = RequestTraversalAgent(resource)
            self._agents.append(agent)
            return agent

        registry = None
        if plugins:
            registry = PluginRegistry({**BUILTIN_PLUGINS, **plugins})
        self.generation = Generation(config, self.clock, agent_for=agent_for, plugin_registry=registry)
        self.resource = GatewayResource(self.generation)
        #: The gateway as twisted.web sees it (for `StubTreq` and `RequestTraversalAgent`).
        self.front = TwistedWebFront(self.resource)
        self.client = StubTreq(self.front)

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
        """Send a request, pump everything, and return the treq response (which must have arrived)."""
        d = self.client.request(method, url, **kwargs)
        self.flush()
        return result_of(d)

    def start(self, method: str, url: str, **kwargs: Any) -> "Deferred[Any]":
        """Send a request and pump once; the caller advances the clock and flushes."""
        d = self.client.request(method, url, **kwargs)
        self.flush()
        return d

    def content(self, response: Any) -> bytes:
        d = response.content()
        self.flush()
        return result_of(d)


class TwistedWebFront(Resource):
    """The gateway's root as twisted.web's `Site` sees it: each `Request` adapted to a `Downstream`."""

    isLeaf = True

    def __init__(self, root: GatewayResource) -> None:
        super().__init__()
        self.root = root

    def render(self, request: Any) -> Any:
        self.root.render(TwistedDownstream(request))
        return NOT_DONE_YET


def _pending(agent: Any) -> bool:
    return any(
        pump.clientIO.disconnecting is False and (pump.clientIO.stream or pump.serverIO.stream)
        for pump in getattr(agent, "_pumps", ())
    )
