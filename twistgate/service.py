"""
The gateway as a Twisted service: listeners, the admin listener, demo
backends, hot reload, start and a graceful stop.

Stopping (SIGTERM/SIGINT under twistd) happens in this order: stop accepting
connections; let requests in flight finish, up to `limits.drain_timeout`
(new requests on open keep-alive connections are answered with
`Connection: close`), on every generation still serving; fire
`on_shutdown`; close the upstream pools; close the admin listener.

Reloading (SIGHUP, ``POST /admin/reload``, or the file watcher) is
`twistgate.ops.reload.Reloader`'s job; listeners are not re-bound by a
reload (their TLS certificates are re-read).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Dict, List, Optional, Tuple

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.web.server import Site

from twistgate.config import load_file
from twistgate.config.model import GatewayConfig, ListenerConfig
from twistgate.gateway import Generation
from twistgate.listeners import build_listener
from twistgate.ops.admin import AdminResource
from twistgate.ops.reload import Reloader
from twistgate.ops.runtime import KEY, Operations
from twistgate.resource import GatewayResource
from twistgate.server import GatewaySite

_log = Logger()


class CountingSite(GatewaySite):
    """A listener's site that counts its open connections (for /metrics and /admin/stats)."""

    def __init__(self, resource: Any, limits: Any, reactor: Any, *, listener: str, ops: Operations) -> None:
        super().__init__(resource, limits, reactor)
        self.listener = listener
        self.ops = ops

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        if protocol is None:
            return None
        ops, name = self.ops, self.listener
        ops.connection_opened(name)
        lost = protocol.connectionLost

        def connection_lost(reason: Any) -> None:
            ops.connection_closed(name)
            lost(reason)

        protocol.connectionLost = connection_lost
        return protocol


class GatewayService(MultiService):
    """Serves one gateway: its listeners, the admin API, and the demo backends if configured."""

    def __init__(
        self,
        config: GatewayConfig,
        reactor: Any,
        generation: Optional[Generation] = None,
        *,
        handle_signals: bool = True,
    ) -> None:
        super().__init__()
        self.config = config  # the configuration the service started with (listeners, admin endpoint)
        self.reactor = reactor
        self.handle_signals = handle_signals
        first = generation if generation is not None else Generation(config, reactor)
        ops = first.services.get(KEY)
        self.ops: Operations = ops if ops is not None else Operations(reactor)
        self.ops.adopt(first)
        self.resource = GatewayResource(first)
        self.reloader = Reloader(
            self.resource,
            self.ops,
            reactor,
            startup=lambda g: g.plugins.startup(self, g.config),
            shutdown=lambda g: g.plugins.shutdown(self),
            after_swap=[self._reload_tls, self._after_reload],
            load=load_and_check_listeners,
        )
        self.demo: Optional[StreamServerEndpointService] = None
        self.listeners: List[StreamServerEndpointService] = []
        self.sites: List[CountingSite] = []
        if config.demo is not None:
            from twistgate.demo import demo_resource

            demo_site = Site(demo_resource(reactor), reactor=reactor)
            demo_site.log = lambda request: None  # type: ignore[method-assign]
            self.demo = StreamServerEndpointService(serverFromString(reactor, config.demo.endpoint), demo_site)
            self.demo.setName("demo")
            self.demo.setServiceParent(self)
        self.tls_reloaders: List[Any] = []
        self._tls_listener_names: List[str] = []
        for index, listener_config in enumerate(config.listeners):
            listener = build_listener(listener_config, reactor, source=config.source, index=index)
            if listener.reload is not None:
                self.tls_reloaders.append(listener.reload)
                self._tls_listener_names.append(listener_config.name)
            site = CountingSite(self.resource, config.limits, reactor, listener=listener_config.name, ops=self.ops)
            self.sites.append(site)
            svc = StreamServerEndpointService(listener.endpoint, site)
            svc.setName(f"listener:{listener_config.name}")
            svc._raiseSynchronously = True  # a port in use fails start-up loudly
            svc.setServiceParent(self)
            self.listeners.append(svc)
        self.site = self.sites[0] if self.sites else None
        self._admin_settings = first.services.get("admin")
        self.admin: Optional[StreamServerEndpointService] = None
        if self._admin_settings is not None:
            admin_site = Site(AdminResource(self), reactor=reactor)
            admin_site.displayTracebacks = False
            admin_site.log = lambda request: None  # type: ignore[method-assign]
            self.admin = StreamServerEndpointService(serverFromString(reactor, self._admin_settings.endpoint), admin_site)
            self.admin.setName("admin")
            self.admin._raiseSynchronously = True
            self.admin.setServiceParent(self)
        self._watcher: Optional[LoopingCall] = None
        self._watched: Optional[Tuple[int, int, int]] = None
        self._previous_sighup: Any = None
        self.ready: "Deferred[None]" = Deferred()

    # -- what the admin API reads -------------------------------------------

    @property
    def generation(self) -> Generation:
        """The generation serving new requests."""
        return self.resource.generation

    @property
    def draining(self) -> bool:
        return self.resource.draining

    def admin_settings(self) -> Any:
        """The admin section in force (a reload may rotate the token)."""
        current = self.generation.services.get("admin")
        return current if current is not None else self._admin_settings

    def reload(self, path: Optional[str] = None, *, reason: str = "admin") -> "Deferred[Dict[str, Any]]":
        """Re-read the configuration file and swap it in, or keep the old one (see `Reloader`)."""
        return self.reloader.reload(path, reason=reason)

    def listening_ports(self) -> "Deferred[Dict[str, Any]]":
        """Name -> the `IListeningPort` of each listener and the admin listener, once listening."""
        services = [s for s in self if s.name and s.name != "demo"]
        d = gatherResults([s._waitingForPort for s in services])  # type: ignore[attr-defined]
        return d.addCallback(lambda ports: {s.name: p for s, p in zip(services, ports)})

    # -- start and stop -------------------------------------------------------

    def startService(self) -> None:
        Service.startService(self)
        self._started = self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        generation = self.generation
        try:
            yield generation.start()
            yield generation.plugins.startup(self, generation.config)
        except Exception:
            _log.failure("a plugin failed in on_startup; stopping")
            if self.reactor.running:
                self.reactor.stop()
            return
        for svc in self:
            svc.startService()
        self._install_sighup()
        self._configure_watch(generation)
        _log.info(
            "twistgate serving {routes} routes on {listeners}{admin}",
            routes=len(self.config.routes),
            listeners=", ".join(l.endpoint for l in self.config.listeners),
            admin=f"; admin API on {self._admin_settings.endpoint}" if self._admin_settings is not None else "",
        )
        self.ready.callback(None)

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        self._restore_sighup()
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
        yield DeferredList(
            [svc.stopService() for svc in self.listeners if svc.running], consumeErrors=True
        )
        self.resource.draining = True
        generations = list(self.ops.generations) or [self.generation]
        count = sum(g.inflight.count for g in generations)
        if count:
            _log.info("draining {count} requests in flight", count=count)
            idle = DeferredList([g.inflight.idle() for g in generations], consumeErrors=True)
            timeout = self.reactor.callLater(self.config.limits.drain_timeout, idle.cancel)
            try:
                yield idle
            except Exception:
                _log.warn("drain timeout: {count} requests still in flight", count=self.ops.in_flight())
            else:
                if timeout.active():
                    timeout.cancel()
        yield self.reloader.stop_retiring()
        current = self.generation
        yield current.plugins.shutdown(self)
        yield current.stop()
        if self.demo is not None and self.demo.running:
            yield self.demo.stopService()
        if self.admin is not None and self.admin.running:
            yield self.admin.stopService()
        # Let connection-closing callbacks run before the reactor goes.
        yield deferLater(self.reactor, 0, lambda: None)

    # -- reload triggers ------------------------------------------------------

    def _install_sighup(self) -> None:
        if not self.handle_signals or not hasattr(signal, "SIGHUP"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)

    def _restore_sighup(self) -> None:
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None

    def _on_sighup(self, signum: int, frame: Any) -> None:
        # A signal handler may run at any bytecode: hand over to the reactor.
        self.reactor.callFromThread(self._reload_logged, "SIGHUP")

    def _reload_logged(self, reason: str) -> "Deferred[Dict[str, Any]]":
        return self.reload(reason=reason)  # the Reloader logs the outcome

    def _configure_watch(self, generation: Generation) -> None:
        """Poll the config file when ``reload.watch`` is on (stat only: cheap, never blocking for long)."""
        settings = generation.config.sections.get("reload")
        source = generation.config.source
        wanted = settings is not None and settings.watch and source is not None
        if self._watcher is not None and self._watcher.running:
            self._watcher.stop()
        self._watcher = None
        if not wanted:
            return
        self._watched = _stat(source)
        self._watcher = LoopingCall(self._check_file, source)
        self._watcher.clock = self.reactor
        self._watcher.start(settings.interval, now=False)

    def _check_file(self, source: str) -> Any:
        seen = _stat(source)
        if seen is None or seen == self._watched:
            return None
        self._watched = seen  # a rejected file is not retried until it changes again
        return self.reload(reason="file changed")

    def _after_reload(self, new: Generation) -> List[str]:
        warnings = []
        admin = new.services.get("admin")
        if (admin.endpoint if admin else None) != (self._admin_settings.endpoint if self._admin_settings else None):
            warnings.append("admin.endpoint changed: the admin listener is not re-bound until a restart")
        old_listeners = [(l.name, l.endpoint) for l in self.config.listeners]
        new_listeners = [(l.name, l.endpoint) for l in new.config.listeners]
        if old_listeners != new_listeners:
            warnings.append("listeners changed: listeners are not re-bound until a restart")
        if new.config.source is not None:
            self._watched = _stat(new.config.source)
        self._configure_watch(new)
        for warning in warnings:
            _log.warn("reload: {warning}", warning=warning)
        return warnings

    def _reload_tls(self, new: Generation) -> List[str]:
        """Re-read each TLS listener's certificates from the new configuration."""
        by_name: Dict[str, ListenerConfig] = {l.name: l for l in new.config.listeners}
        warnings = []
        for name, reload in zip(self._tls_listener_names, self.tls_reloaders):
            listener = by_name.get(name)
            if listener is None:
                warnings.append(f"listener {name!r} was removed: it keeps serving until a restart")
                continue
            try:
                reload(listener)
            except Exception as error:
                _log.failure("re-reading the certificates of listener {name} failed", name=name)
                warnings.append(f"listener {name!r}: certificates not reloaded: {error}")
        return warnings


def load_and_check_listeners(path: str) -> GatewayConfig:
    """
    Load a configuration for a reload, and open its TLS listeners'
    certificates and keys as well: a broken certificate rejects the reload
    (the old configuration keeps serving) instead of failing after the swap.
    """
    config = load_file(path)
    check_reactor = MemoryReactorClock()
    for index, listener in enumerate(config.listeners):
        if listener.tls is not None:
            build_listener(listener, check_reactor, source=config.source, index=index)
    return config


def _stat(path: str) -> Optional[Tuple[int, int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
