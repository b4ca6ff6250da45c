"""
Client-facing listeners: the server endpoint for each `listeners[]` entry.

Plain listeners are any Twisted server endpoint string.  A listener with a
``tls`` block wraps that endpoint in TLS built by `twistgate.tls` (the
``ssl:`` endpoint string cannot verify client certificates, choose
certificates by SNI or swap them on reload).  ALPN offers ``h2`` and
``http/1.1``; the same `GatewaySite` serves both.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from zope.interface import implementer

from twistgate.config.model import ConfigError, ConfigIssue, LimitsConfig, ListenerConfig, Location
from twistgate.engine.twisted_web import GatewaySite
from twistgate.tls import PeerTLSFactory, ServerTLS, build_server_contexts

_log = Logger()


@attrs.define
class Listener:
    """A listener's endpoint, and how to re-read its certificates on reload (TLS only)."""

    config: ListenerConfig
    endpoint: Any  # IStreamServerEndpoint
    reload: Optional[Callable[[ListenerConfig], None]] = None


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
    config: ListenerConfig, reactor: Any, *, source: Optional[str] = None, index: int = 0, endpoint: Any = None
) -> Listener:
    """
    The endpoint for one listener; raises ConfigError for what cannot be served.

    :param endpoint: the plain endpoint to serve on instead of binding
        ``config.endpoint`` (a worker's socket adopted from its supervisor);
        the listener's TLS still wraps it.
    """
    if endpoint is None:
        endpoint = serverFromString(reactor, config.endpoint)
    if config.tls is None:
        return Listener(config=config, endpoint=endpoint)
    where = f"listeners[{index}].tls"
    tls = ServerTLS(_contexts(config, source, where))

    def reload(new: ListenerConfig) -> None:
        """Re-read the certificates; on any problem raise ConfigError and keep serving the old ones."""
        if new.tls is None:
            raise ConfigError(
                [
                    ConfigIssue(
                        location=Location(file=source or "<config>", path=where),
                        message=f"listener {config.name!r} cannot drop TLS without a restart",
                    )
                ]
            )
        tls.replace(_contexts(new, source, where))
        _log.info("listener {name}: TLS certificates re-read", name=new.name)

    return Listener(config=config, endpoint=TLSServerEndpoint(endpoint, tls, reactor), reload=reload)


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


def site_for(resource: Any, limits: LimitsConfig, reactor: Any, *, on_connection: Any = None) -> Any:
    """The protocol factory a listener serves `resource` with (the HTTP engine)."""
    return GatewaySite(resource, limits, reactor, on_connection=on_connection)
