"""
Client-facing listeners: the server endpoint for each `listeners[]` entry.

Plain listeners are any Twisted server endpoint string.  TLS listeners
(certificates, SNI, ALPN for HTTP/2, client certificates) are built here
too, because the `ssl:` endpoint string cannot require client certificates.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.endpoints import serverFromString

from twistgate.config.model import ConfigError, ConfigIssue, ListenerConfig, Location


@attrs.define
class Listener:
    """A listener's endpoint, and how to re-read its certificates on reload (TLS only)."""

    config: ListenerConfig
    endpoint: Any  # IStreamServerEndpoint
    reload: Optional[Callable[[ListenerConfig], None]] = None


def build_listener(config: ListenerConfig, reactor: Any, *, source: Optional[str] = None, index: int = 0) -> Listener:
    """The endpoint for one listener; raises ConfigError for what cannot be served."""
    if config.tls is not None:
        raise ConfigError(
            [
                ConfigIssue(
                    location=Location(file=source or "<config>", path=f"listeners[{index}].tls"),
                    message="TLS listeners are not implemented in this version yet",
                )
            ]
        )
    return Listener(config=config, endpoint=serverFromString(reactor, config.endpoint))
