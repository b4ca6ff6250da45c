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

from typing import Any, Callable, Dict, List, Optional, Tuple

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
from twistgate.ops.logreopen import LogReopen
from twistgate.ops.probes import can_reach_a_target
from twistgate.ops.audit import audited_reload
from twistgate.ops.reload import Reloader, load_prepared
from twistgate.ops.triggers import ReloadTriggers
from twistgate.resource import GatewayResource
from twistgate.startup import StartupError, listening

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
        listener_endpoint: Optional[Callable[[ListenerConfig, int], Any]] = None,
        admin_endpoint: Optional[str] = None,
        admin_resource: Optional[Callable[["GatewayService"], Any]] = None,
        triggers: bool = True,
        demo: bool = True,
        load: Callable[[str], Any] = load_prepared,
    ) -> None:
        """
        The keyword arguments after ``handle_signals`` place the gateway in a
        worker process (`twistgate.workers.worker`):

        :param listener_endpoint: ``(listener, index) -> endpoint`` instead
            of binding ``listener.endpoint`` (a socket adopted from the supervisor).
        :param admin_endpoint: serve the admin resource here instead of ``admin.endpoint``.
        :param admin_resource: ``service -> Resource`` for the admin listener.
        :param triggers: react to SIGHUP and the file watch (the supervisor does, for workers).
        :param demo: serve the demo backends, when configured.
        :param load: reads and validates a configuration for a reload, and what
            its files hold: ``(config, FileMaterial)``.
        """
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
            load=load,
            run_blocking=_in_thread(reactor),
        )
        self.triggers: Optional[ReloadTriggers] = (
            ReloadTriggers(reactor, self._reload_logged, handle_signals=handle_signals) if triggers else None
        )
        # SIGUSR1 reopens the access log (logrotate); in a worker too: its supervisor passes the signal on.
        self.log_reopen = LogReopen(reactor, self.reopen_logs, handle_signals=handle_signals)
        self.started = False  # listeners accept and the first generation serves (/readyz)
        self._described: Dict[str, Tuple[str, str]] = {}  # service name -> (what, endpoint), for startup errors
        self.demo: Optional[StreamServerEndpointService] = None
        if config.demo is not None and demo:
            from twistgate.demo import demo_resource

            demo_site = plain_site(demo_resource(reactor), reactor)
            self.demo = self._serve(
                "demo", serverFromString(reactor, config.demo.endpoint), demo_site, ("the demo backends", config.demo.endpoint)
            )
        self.listeners: List[StreamServerEndpointService] = []
        self.tls_reloaders: Dict[str, Any] = {}
        self.rotations: List[Any] = []  # TLS ticket-key rotations, started and stopped with the service
        for index, listener_config in enumerate(config.listeners):
            contexts = first.files.listener_contexts.get(listener_config.name)
            inner = listener_endpoint(listener_config, index) if listener_endpoint is not None else None
            listener = build_listener(
                listener_config, reactor, source=config.source, index=index, contexts=contexts, endpoint=inner
            )
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
            described = (f"listener {name!r}", listener_config.endpoint)
            self.listeners.append(self._serve(f"listener:{name}", endpoint, site, described))
        self._admin_settings = config.sections.get("admin")
        self.admin: Optional[StreamServerEndpointService] = None
        if self._admin_settings is not None:
            resource = admin_resource(self) if admin_resource is not None else AdminResource(self)
            admin_site = plain_site(resource, reactor)
            where = admin_endpoint if admin_endpoint is not None else self._admin_settings.endpoint
            self.admin = self._serve("admin", serverFromString(reactor, where), admin_site, ("the admin listener", where))
        #: Fires when the gateway serves; fails (with `PluginStartupError`
        #: when a plugin's ``on_startup`` failed) when it will not.
        self.ready: "Deferred[None]" = Deferred()

    def _serve(self, name: str, endpoint: Any, factory: Any, described: Tuple[str, str]) -> StreamServerEndpointService:
        service = StreamServerEndpointService(endpoint, factory)
        service.setName(name)
        fail_start_loudly(service)  # a port in use fails start-up loudly
        service.setServiceParent(self)
        self._described[name] = described
        return service

    # -- what the admin API reads -------------------------------------------

    @property
    def generation(self) -> Generation:
        """The generation serving new requests."""
        return self.resource.generation

    @property
    def draining(self) -> bool:
        return self.resource.draining

    def readiness(self) -> Tuple[bool, str]:
        """
        ``/readyz``: whether new requests are served now, and why not; with
        ``admin.ready_requires_healthy_target``, also not while no route
        that forwards can reach a healthy target (`twistgate.ops.probes`).
        """
        if self.draining:
            return False, "draining"
        if not self.started:
            return False, "starting"
        settings = self.admin_settings()
        if getattr(settings, "ready_requires_healthy_target", False) and not can_reach_a_target(self.generation):
            return False, "no_healthy_target"
        return True, "ready"

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

    def reopen_logs(self) -> None:
        """SIGUSR1 (logrotate): every live generation reopens its access log file."""
        for generation in list(self.ops.generations) or [self.generation]:
            access_log = getattr(generation.services, "access_log", None)
            if access_log is not None:
                access_log.reopen()

    # -- start and stop -------------------------------------------------------

    def privilegedStartService(self) -> None:
        """
        twistd's first step, before it drops privileges: bind every port
        now (ports below 1024, a port in use fails here, loudly), but accept
        nothing until `startService` has run the plugins' ``on_startup``.
        """
        Service.privilegedStartService(self)
        for svc in self:
            self._bind(svc.privilegedStartService, svc)
            hold_accepting(svc)

    def _bind(self, start: Any, svc: Any) -> None:
        """Start (bind) one listening service; a port that cannot be opened is one clear `StartupError`."""
        what, endpoint = self._described.get(svc.name, (svc.name, "?"))
        listening(what, endpoint, start)

    def startService(self) -> None:
        Service.startService(self)
        self._started = self._start()

    @inlineCallbacks
    def _start(self) -> Any:
        generation = self.generation
        try:
            if self.admin is not None:
                self._open(self.admin)  # /livez, and /readyz saying "starting", while the hooks run
            yield generation.start()
            yield generation.plugins.startup(self, generation.config)
            for svc in self:
                if svc is not self.admin:
                    self._open(svc)
        except Exception as error:
            if not isinstance(error, StartupError):
                _log.critical("twistgate is not serving: {error}", error=error)
            yield self._close_held_ports()
            self.ready.errback(error)
            return
        for rotation in self.rotations:
            rotation.start()
        self.ops.history.start()
        if self.triggers is not None:
            self.triggers.install()
            self.triggers.watch(generation.config)
        self.log_reopen.install()
        self.started = True
        _log.info(
            "twistgate serving {routes} on {listeners}{admin}",
            routes=plural(len(self.config.routes), "route"),
            listeners=", ".join(l.endpoint for l in self.config.listeners),
            admin=f"; admin API on {self._admin_settings.endpoint}" if self._admin_settings is not None else "",
        )
        self.ready.callback(None)

    def _open(self, svc: Any) -> None:
        """Listen now (unless `privilegedStartService` bound the port already), and accept."""
        self._bind(svc.startService, svc)
        resume_accepting(svc)

    def _close_held_ports(self) -> "Deferred[Any]":
        """Close the ports twistd bound beforehand: the connections waiting on them are reset, never served."""
        held = [svc for svc in self if listening_port(svc) is not None and (not svc.running or svc is self.admin)]
        return DeferredList([svc.stopService() for svc in held], consumeErrors=True)

    @inlineCallbacks
    def stopService(self) -> Any:
        Service.stopService(self)
        if self.triggers is not None:
            self.triggers.uninstall()
        for rotation in self.rotations:
            rotation.stop()
        self.ops.history.stop()
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
        # The Reloader logs the outcome; the audit trail records who started it.
        return audited_reload(self.ops.audit, self.reload, reason)

    def _after_reload(self, new: Generation) -> List[str]:
        warnings = []
        admin = new.config.sections.get("admin")
        if (admin.endpoint if admin else None) != (self._admin_settings.endpoint if self._admin_settings else None):
            warnings.append("admin.endpoint changed: the admin listener is not re-bound until a restart")
        old_listeners = [(l.name, l.endpoint) for l in self.config.listeners]
        new_listeners = [(l.name, l.endpoint) for l in new.config.listeners]
        if old_listeners != new_listeners:
            warnings.append("listeners changed: listeners are not re-bound until a restart")
        if self.triggers is not None:
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
