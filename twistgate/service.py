"""
The gateway as a Twisted service: its listeners, the admin listener, the demo
backends, hot reload, start and a graceful stop.

Starting: the first generation's services start and its plugins'
``on_startup`` run before any listener accepts a connection.  twistd binds
the ports first, while it may still have privileges
(`privilegedStartService`); they are held, not accepting, until the hooks
are done, so connections made meanwhile wait in the kernel's backlog.  When
a hook fails, nothing is served: the ports close, `ready` fails with the
`PluginStartupError` (naming the plugin and the reason), and
`twistgate.tap` stops the process with a non-zero exit status.  Stopping (SIGTERM/SIGINT under twistd) happens in this
order: stop accepting connections; let requests in flight finish, up to
`limits.drain_timeout` (new requests on open keep-alive connections are
answered with `Connection: close`), on every generation still serving; fire
`on_shutdown`; close the upstream connections; close the admin listener.

Reloading (SIGHUP, ``POST /admin/reload``, or the file watch) is
`twistgate.ops.reload.Reloader`'s job; listeners are not re-bound by a
reload (their TLS certificates are re-read).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, DeferredList, gatherResults, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import deferLater
from twisted.logger import Logger

from twistgate._text import plural
from twistgate._twisted_compat import fail_start_loudly, hold_accepting, listening_port, resume_accepting
from twistgate.config.model import GatewayConfig, ListenerConfig
from twistgate.engine.twisted_web import plain_site
from twistgate.generation import Generation
from twistgate.listeners import LimitedEndpoint, build_listener, factory_for
from twistgate.ops.admin import AdminResource
from twistgate.ops.reload import Reloader, load_prepared
from twistgate.ops.triggers import ReloadTriggers
from twistgate.resource import GatewayResource

_log = Logger()


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
        first = generation if generation is not None else Generation(config, reactor)
        self.ops = first.ops
        self.resource = GatewayResource(first)
        self.reloader = Reloader(
            self.resource,
            self.ops,
            reactor,
            startup=lambda g: g.plugins.startup(self, g.config),
            shutdown=lambda g: g.plugins.shutdown(self),
            after_swap=[self._reload_tls, self._after_reload],
            load=load_prepared,
            run_blocking=_in_thread(reactor),
        )
        self.triggers = ReloadTriggers(reactor, self._reload_logged, handle_signals=handle_signals)
        self.demo: Optional[StreamServerEndpointService] = None
        if config.demo is not None:
            from twistgate.demo import demo_resource

            demo_site = plain_site(demo_resource(reactor), reactor)
            self.demo = self._serve("demo", serverFromString(reactor, config.demo.endpoint), demo_site)
        self.listeners: List[StreamServerEndpointService] = []
        self.tls_reloaders: Dict[str, Any] = {}
        self.rotations: List[Any] = []  # TLS ticket-key rotations, started and stopped with the service
        for index, listener_config in enumerate(config.listeners):
            contexts = first.files.listener_contexts.get(listener_config.name)
            listener = build_listener(listener_config, reactor, source=config.source, index=index, contexts=contexts)
            if listener.reload is not None:
                self.tls_reloaders[listener_config.name] = listener.reload
            if listener.rotation is not None:
                self.rotations.append(listener.rotation)
            name = listener_config.name
            site = factory_for(
                listener_config,
                self.resource,
                config.limits,
                reactor,
                engine=config.engine,
                listener=name,
                on_connection=lambda delta, name=name: self.ops.connection_changed(name, delta),
                on_http2_error=self.ops.metrics.http2_connection_error,
            )
            endpoint = LimitedEndpoint(listener.endpoint, lambda name=name: self.ops.admit_connection(name))
            self.listeners.append(self._serve(f"listener:{name}", endpoint, site))
        self._admin_settings = config.sections.get("admin")
        self.admin: Optional[StreamServerEndpointService] = None
        if self._admin_settings is not None:
            admin_site = plain_site(AdminResource(self), reactor)
            self.admin = self._serve("admin", serverFromString(reactor, self._admin_settings.endpoint), admin_site)
        #: Fires when the gateway serves; fails (with `PluginStartupError`
        #: when a plugin's ``on_startup`` failed) when it will not.
        self.ready: "Deferred[None]" = Deferred()

    def _serve(self, name: str, endpoint: Any, factory: Any) -> StreamServerEndpointService:
        service = StreamServerEndpointService(endpoint, factory)
        service.setName(name)
        fail_start_loudly(service)  # a port in use fails start-up loudly
        service.setServiceParent(self)
        return service

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
        current = self.generation.config.sections.get("admin")
        return current if current is not None else self._admin_settings

    def reload(self, path: Optional[str] = None, *, reason: str = "admin") -> "Deferred[Dict[str, Any]]":
        """Re-read the configuration file and swap it in, or keep the old one (see `Reloader`)."""
        return self.reloader.reload(path, reason=reason)

    def listening_ports(self) -> "Deferred[Dict[str, Any]]":
        """Name -> the `IListeningPort` of each listener and the admin listener, once listening."""
        services = [s for s in self if s.name and s.name != "demo"]
        d = gatherResults([listening_port(s) for s in services])
        return d.addCallback(lambda ports: {s.name: p for s, p in zip(services, ports)})

    # -- start and stop -------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        twistd's first step, before it drops privileges: bind every port
        now (ports below 1024, a port in use fails here, loudly), but accept
        nothing until `startService` has run the plugins' ``on_startup``.
        """
        Service.privilegedStartService(self)
        for svc in self:
            svc.privilegedStartService()
            hold_accepting(svc)

    def startService(self) -> None:
        Service.startService(self)
        self._started = self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        generation = self.generation
        try:
            yield generation.start()
            yield generation.plugins.startup(self, generation.config)
        except Exception as error:
            _log.critical("twistgate is not serving: {error}", error=error)
            yield self._close_held_ports()
            self.ready.errback(error)
            return
        for svc in self:
            svc.startService()  # listens now, unless privilegedStartService bound it already
            resume_accepting(svc)
        for rotation in self.rotations:
            rotation.start()
        self.triggers.install()
        self.triggers.watch(generation.config)
        _log.info(
            "twistgate serving {routes} routes on {listeners}{admin}",
            routes=len(self.config.routes),
            listeners=", ".join(l.endpoint for l in self.config.listeners),
            admin=f"; admin API on {self._admin_settings.endpoint}" if self._admin_settings is not None else "",
        )
        self.ready.callback(None)

    def _close_held_ports(self) -> "Deferred[Any]":
        """Close the ports twistd bound beforehand: the connections waiting on them are reset, never served."""
        held = [svc for svc in self if listening_port(svc) is not None and not svc.running]
        return DeferredList([svc.stopService() for svc in held], consumeErrors=True)

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        self.triggers.uninstall()
        for rotation in self.rotations:
            rotation.stop()
        yield DeferredList([svc.stopService() for svc in self.listeners if svc.running], consumeErrors=True)
        self.resource.draining = True
        yield self._drain()
        yield self.reloader.stop_retiring()
        current = self.generation
        yield current.plugins.shutdown(self)
        yield current.stop()
        for other in (self.demo, self.admin):
            if other is not None and other.running:
                yield other.stopService()
        # Let connection-closing callbacks run before the reactor goes.
        yield deferLater(self.reactor, 0, lambda: None)

    def _drain(self) -> "Deferred[Any]":
        """Wait for the requests in flight on every generation, up to the drain timeout."""
        generations = list(self.ops.generations) or [self.generation]
        count = sum(g.inflight.count for g in generations)
        if not count:
            return DeferredList([])
        _log.info("draining {requests} in flight", requests=plural(count, "request"))
        idle = DeferredList([g.inflight.idle() for g in generations], consumeErrors=True)
        timeout = self.reactor.callLater(self.config.limits.drain_timeout, idle.cancel)

        def over(result: Any) -> Any:
            if timeout.active():
                timeout.cancel()
                return None
            _log.warn("drain timeout: {count} requests still in flight", count=self.ops.in_flight())
            # Open WebSockets get a close frame (1001 going away), not a reset; a moment to send it.
            closing = self.ops.websockets.close_all()
            later = self.reactor.callLater(1.0, closing.cancel)
            return closing.addBoth(lambda _: later.cancel() if later.active() else None)

        return idle.addBoth(over)

    # -- reload ---------------------------------------------------------------

    def _reload_logged(self, reason: str) -> "Deferred[Dict[str, Any]]":
        return self.reload(reason=reason)  # the Reloader logs the outcome

    def _after_reload(self, new: Generation) -> List[str]:
        warnings = []
        admin = new.config.sections.get("admin")
        if (admin.endpoint if admin else None) != (self._admin_settings.endpoint if self._admin_settings else None):
            warnings.append("admin.endpoint changed: the admin listener is not re-bound until a restart")
        old_listeners = [(l.name, l.endpoint) for l in self.config.listeners]
        new_listeners = [(l.name, l.endpoint) for l in new.config.listeners]
        if old_listeners != new_listeners:
            warnings.append("listeners changed: listeners are not re-bound until a restart")
        self.triggers.seen(new.config.source)
        self.triggers.watch(new.config)
        for warning in warnings:
            _log.warn("reload: {warning}", warning=warning)
        return warnings

    def _reload_tls(self, new: Generation) -> List[str]:
        """Re-read each TLS listener's certificates from the new configuration."""
        by_name: Dict[str, ListenerConfig] = {l.name: l for l in new.config.listeners}
        warnings = []
        for name, reload in self.tls_reloaders.items():
            listener = by_name.get(name)
            if listener is None:
                warnings.append(f"listener {name!r} was removed: it keeps serving until a restart")
                continue
            try:
                reload(listener, new.files.listener_contexts.get(name))
            except Exception as error:
                _log.failure("re-reading the certificates of listener {name} failed", name=name)
                warnings.append(f"listener {name!r}: certificates not reloaded: {error}")
        return warnings


def _in_thread(reactor: Any) -> Any:
    """
    Run blocking work (file reads, parsing, hashing) off the reactor thread;
    a reactor without threads (an in-memory one in tests) runs it in place.
    """
    from twisted.internet.defer import maybeDeferred
    from twisted.internet.interfaces import IReactorThreads
    from twisted.internet.threads import deferToThreadPool

    if not IReactorThreads.providedBy(reactor):
        return maybeDeferred

    def run(f: Any, *args: Any) -> "Deferred[Any]":
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return run
