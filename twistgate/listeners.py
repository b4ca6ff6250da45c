"""
Client-facing listeners: the server endpoint for each `listeners[]` entry.

Plain listeners are any Twisted server endpoint string.  A listener with a
``tls`` block wraps that endpoint in TLS built by `twistgate.tls` (the
``ssl:`` endpoint string cannot verify client certificates, choose
certificates by SNI or swap them on reload).  ALPN offers ``h2`` and
``http/1.1``; `factory_for` sends ``h2`` connections to the HTTP/2 engine
(`twistgate.engine.http2_server`) and the rest to the HTTP/1.1 one, and
does the same on a cleartext listener with ``h2c: true`` for connections
that start with the HTTP/2 preface.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import ServerFactory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from twistgate.config.endpoints import with_default_backlog
from twistgate.config.model import ConfigError, ConfigIssue, LimitsConfig, ListenerConfig, Location, SessionResumptionConfig
from twistgate.engine.buffered_reads import buffered_reads
from twistgate.engine.http2_server import H2ServerFactory
from twistgate.engine.protocol_switch import ProtocolSwitchFactory
from twistgate.engine.http1_server import HTTP1ServerFactory
from twistgate.engine.limits import ServerLimits
from twistgate.engine.twisted_web import GatewaySite
from twistgate.tls.certificate_context import H2_ENABLED
from twistgate.tls.identity import PeerTLSFactory
from twistgate.tls.server_contexts import ServerTLS, build_server_contexts

_log = Logger()


@attrs.define
class Listener:
    """A listener's endpoint, and how to re-read its certificates on reload and rotate its ticket key (TLS only)."""

    config: ListenerConfig
    endpoint: Any  # IStreamServerEndpoint
    reload: Optional[Callable[[ListenerConfig], None]] = None
    rotation: Optional["TicketKeyRotation"] = None


class TicketKeyRotation:
    """
    Automatic rotation of a TLS listener's session-ticket key: every
    ``session_resumption.ticket_key_rotation`` the listener's contexts are
    built afresh from the keys already in memory, so new connections get a
    new random ticket key and an empty session cache; connections already
    open keep theirs.  (pyOpenSSL gives no access to OpenSSL's ticket keys,
    so a ticket issued under the old key is not resumed afterwards: that
    client does one full handshake.)  Runs only while tickets are on.
    """

    def __init__(self, tls: ServerTLS, clock: Any, settings: SessionResumptionConfig, name: str) -> None:
        self.tls = tls
        self.clock = clock
        self.settings = settings
        self.name = name
        self.rotations = 0
        self._call: Optional[LoopingCall] = None
        self._running = False

    def start(self) -> None:
        self._running = True
        self._schedule()

    def stop(self) -> None:
        self._running = False
        self._cancel()

    def reset(self, settings: SessionResumptionConfig) -> None:
        """A reload: the new settings' period from now on (the contexts were just rebuilt anyway)."""
        self.settings = settings
        if self._running:
            self._cancel()
            self._schedule()

    def rotate(self) -> None:
        rebuild = self.tls.contexts.rebuild
        if rebuild is None:
            return
        try:
            self.tls.replace(rebuild())
        except Exception:  # pragma: no cover - the same keys built fine before
            _log.failure("listener {name}: rotating the TLS ticket key failed; keeping the old one", name=self.name)
            return
        self.rotations += 1
        _log.info("listener {name}: TLS session ticket key rotated", name=self.name)

    def _schedule(self) -> None:
        settings = self.settings
        if not (settings.enabled and settings.tickets):
            return
        call = self._call = LoopingCall(self.rotate)
        call.clock = self.clock
        call.start(settings.ticket_key_rotation, now=False)

    def _cancel(self) -> None:
        if self._call is not None and self._call.running:
            self._call.stop()
        self._call = None


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """Any server endpoint, with every accepted connection wrapped in the listener's TLS."""

    def __init__(self, inner: Any, tls: ServerTLS, clock: Any) -> None:
        self.inner = inner
        self.tls = tls
        self.clock = clock

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(PeerTLSFactory(self.tls, False, factory, clock=self.clock))


def build_listener(
    config: ListenerConfig, reactor: Any, *, source: Optional[str] = None, index: int = 0,
    contexts: Any = None, endpoint: Any = None,
) -> Listener:
    """
    The endpoint for one listener; raises ConfigError for what cannot be served.

    :param contexts: its TLS contexts, read beforehand (`twistgate.files`); default: read now.
    :param endpoint: the plain endpoint to serve on instead of binding
        ``config.endpoint`` (a worker's socket adopted from its supervisor);
        the listener's TLS still wraps it.
    """
    if endpoint is None:
        endpoint = serverFromString(reactor, with_default_backlog(config.endpoint))
    endpoint = buffered_reads(endpoint)  # PyPy: reads without a 64 KiB string each
    if config.tls is None:
        return Listener(config=config, endpoint=endpoint)
    where = f"listeners[{index}].tls"
    tls = ServerTLS(contexts if contexts is not None else _contexts(config, source, where))
    rotation = TicketKeyRotation(tls, reactor, config.tls.resumption, config.name)

    def reload(new: ListenerConfig, contexts: Any = None) -> None:
        """Use the new certificates (read beforehand, or now); on any problem raise ConfigError and keep the old ones."""
        if new.tls is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        location=Location(file=source or "<config>", path=where),
                        message=f"listener {config.name!r} cannot drop TLS without a restart",
                    )
                ]
            )
        tls.replace(contexts if contexts is not None else _contexts(new, source, where))
        rotation.reset(new.tls.resumption)
        _log.info("listener {name}: TLS certificates re-read", name=new.name)

    return Listener(config=config, endpoint=TLSServerEndpoint(endpoint, tls, reactor), reload=reload, rotation=rotation)


def _contexts(config: ListenerConfig, source: Optional[str], where: str) -> Any:
    assert config.tls is not None
    try:
        return build_server_contexts(config.tls, where=where)
    except ConfigError as error:
        if source is None:
            raise
        # Configs built from text carry "<config>"; name the real file.
        raise ConfigError(
            [
                attrs.evolve(issue, location=attrs.evolve(issue.location, file=source))
                if issue.location.file == "<config>"
                else issue
                for issue in error.issues
            ]
        ) from None


def server_limits(limits: LimitsConfig) -> ServerLimits:
    """The HTTP/1.1 engine's limits from the ``limits:`` section."""
    return ServerLimits(
        max_request_line=limits.max_request_line,
        max_header_bytes=limits.max_header_bytes,
        max_headers=limits.max_headers,
        max_request_body=limits.max_request_body,
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        idle_timeout=limits.idle_timeout,
    )


def site_for(
    resource: Any,
    limits: LimitsConfig,
    reactor: Any,
    *,
    engine: str = "httptools",
    secure: bool = False,
    on_connection: Any = None,
    listener: str = "",
) -> Any:
    """
    The HTTP/1.1 protocol factory for `resource`: the engine on httptools,
    or (``engine: twisted``) twisted.web's; each request reaches
    ``resource.render`` as a `twistgate.engine.api.Downstream` that knows
    its listener's name.  The body read before routing is bounded by the
    serving generation's ``body_cap`` (the largest any route allows), and
    the engine's own answers (400, 408, 413...) carry what ``defaults``
    gives the gateway's answers.
    """
    body_cap = lambda: resource.generation.body_cap  # noqa: E731
    own_headers = lambda secure: resource.generation.own_answers.headers(secure)  # noqa: E731
    if engine == "twisted":
        return GatewaySite(
            resource, limits, reactor, on_connection=on_connection, listener=listener, body_cap=body_cap,
            own_headers=own_headers,
        )  # fmt: skip
    return HTTP1ServerFactory(
        resource.render,
        limits=server_limits(limits),
        clock=reactor,
        secure=secure,
        on_connection=on_connection,
        listener=listener,
        body_cap=body_cap,
        own_headers=own_headers,
    )


def serves_http2(config: ListenerConfig) -> bool:
    """Whether a listener speaks HTTP/2: ALPN h2 on TLS, or cleartext with ``h2c: true``."""
    if config.tls is not None:
        return config.tls.http2 and H2_ENABLED
    return config.h2c


def factory_for(
    config: ListenerConfig,
    resource: Any,
    limits: LimitsConfig,
    reactor: Any,
    *,
    engine: str = "httptools",
    listener: str = "",
    on_connection: Any = None,
    on_http2_error: Any = None,
) -> Any:
    """
    The protocol factory of one listener: HTTP/1.1 alone, or behind a
    `ProtocolSwitchFactory` that sends HTTP/2 connections (ALPN ``h2``, or
    the cleartext preface with ``h2c: true``) to the HTTP/2 engine.
    """
    secure = config.tls is not None
    if not serves_http2(config):
        return site_for(
            resource, limits, reactor, engine=engine, secure=secure, on_connection=on_connection, listener=listener
        )
    return ProtocolSwitchFactory(
        site_for(resource, limits, reactor, engine=engine, secure=secure, listener=listener),
        H2ServerFactory(resource, limits, reactor, on_error=on_http2_error, listener=listener),
        h2c=config.h2c and config.tls is None,
        clock=reactor,
        first_byte_timeout=limits.idle_timeout,
        on_connection=on_connection,
    )


@implementer(IStreamServerEndpoint)
class LimitedEndpoint:
    """
    ``limits.max_connections``: any server endpoint whose factory builds no
    protocol for a connection `admit()` refuses, so the reactor closes it at
    once, before TLS or HTTP cost anything.  It wraps the outermost factory
    (a TLS listener's too), so it works for any HTTP engine that reports its
    connections (the ``on_connection`` count the limit compares against).
    """

    def __init__(self, inner: Any, admit: Callable[[], bool]) -> None:
        self.inner = inner
        self.admit = admit

    def listen(self, factory: Any) -> Any:
        return self.inner.listen(_LimitedFactory(factory, self.admit))


class _LimitedFactory(ServerFactory):
    def __init__(self, wrapped: Any, admit: Callable[[], bool]) -> None:
        self.wrapped = wrapped
        self.admit = admit

    def logPrefix(self) -> str:
        prefix = getattr(self.wrapped, "logPrefix", None)
        return prefix() if prefix is not None else self.wrapped.__class__.__name__

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        if not self.admit():
            return None  # the listening port closes the socket
        return self.wrapped.buildProtocol(addr)
