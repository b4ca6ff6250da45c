"""
The gateway as a Twisted service: listeners, demo backends, start and a
graceful stop.

Stopping (SIGTERM/SIGINT under twistd) happens in this order: stop accepting
connections; let requests in flight finish, up to `limits.drain_timeout`
(new requests on open keep-alive connections are answered with
`Connection: close`); fire `on_shutdown`; close the upstream pools.
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.server import Site

from twistgate.config.model import GatewayConfig
from twistgate.gateway import Generation
from twistgate.listeners import build_listener
from twistgate.resource import GatewayResource
from twistgate.server import GatewaySite

_log = Logger()


class GatewayService(MultiService):
    """Serves one gateway: its listeners, and the demo backends if configured."""

    def __init__(self, config: GatewayConfig, reactor: Any, generation: Optional[Generation] = None) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.generation = generation if generation is not None else Generation(config, reactor)
        self.resource = GatewayResource(self.generation)
        self.site = GatewaySite(self.resource, config.limits, reactor)
        self.demo: Optional[StreamServerEndpointService] = None
        self.listeners: List[StreamServerEndpointService] = []
        if config.demo is not None:
            from twistgate.demo import demo_resource

            demo_site = Site(demo_resource(reactor), reactor=reactor)
            demo_site.log = lambda request: None  # type: ignore[method-assign]
            self.demo = StreamServerEndpointService(serverFromString(reactor, config.demo.endpoint), demo_site)
            self.demo.setName("demo")
            self.demo.setServiceParent(self)
        self.tls_reloaders = []
        for index, listener_config in enumerate(config.listeners):
            listener = build_listener(listener_config, reactor, source=config.source, index=index)
            if listener.reload is not None:
                self.tls_reloaders.append(listener.reload)
            svc = StreamServerEndpointService(listener.endpoint, self.site)
            svc.setName(f"listener:{listener_config.name}")
            svc._raiseSynchronously = True  # a port in use fails start-up loudly
            svc.setServiceParent(self)
            self.listeners.append(svc)

    def startService(self) -> None:
        Service.startService(self)
        self._started = self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        try:
            yield self.generation.start()
            yield self.generation.plugins.startup(self, self.config)
        except Exception:
            _log.failure("a plugin failed in on_startup; stopping")
            if self.reactor.running:
                self.reactor.stop()
            return
        for svc in self:
            svc.startService()
        _log.info(
            "twistgate serving {routes} routes on {listeners}",
            routes=len(self.config.routes),
            listeners=", ".join(l.endpoint for l in self.config.listeners),
        )

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        yield DeferredList(
            [svc.stopService() for svc in self.listeners if svc.running], consumeErrors=True
        )
        self.resource.draining = True
        inflight = self.generation.inflight
        if inflight.count:
            _log.info("draining {count} requests in flight", count=inflight.count)
            idle = inflight.idle()
            timeout = self.reactor.callLater(self.config.limits.drain_timeout, idle.cancel)
            try:
                yield idle
            except Exception:
                _log.warn("drain timeout: {count} requests still in flight", count=inflight.count)
            else:
                timeout.cancel()
        yield self.generation.plugins.shutdown(self)
        yield self.generation.stop()
        if self.demo is not None and self.demo.running:
            yield self.demo.stopService()
        # Let connection-closing callbacks run before the reactor goes.
        yield deferLater(self.reactor, 0, lambda: None)
