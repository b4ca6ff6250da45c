"""
The HTTP/2 server engine, on the `h2` library (RFC 9113).

Each stream becomes an `H2Stream`, a `twistgate.engine.api.Downstream`
handed to the same handler as HTTP/1.1 requests (the root resource's
``render``), so every route, policy and plugin works alike.

Flow control both ways:

* request bodies: DATA is acknowledged (WINDOW_UPDATE) as the upstream side
  consumes it; while the body's consumer is paused the stream's window is
  not reopened, so a fast client is held by HTTP/2 itself;
* response bodies: DATA is sent as the client's windows allow; what does not
  fit is queued, and past `STREAM_HIGH_WATER` (`http2_server_settings`) the
  registered producer (the upstream connection or stream) is paused until
  the client reopens the window.  A paused TCP transport pauses every
  stream.

The engine's modules: this one builds connections for a listener
(`H2ServerFactory`); `http2_server_settings` holds its numbers and limits,
`http2_server_connection` a connection's lifetime and the events it reads,
`http2_server_output` what a connection sends for its streams,
`http2_server_stream` one request, and `http2_floods` the flood guards.
What the server shares with the client is in `http2_common`.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory

from twistgate.config.model import LimitsConfig
from twistgate.engine.http2_server_connection import H2ServerProtocol
from twistgate.engine.http2_server_settings import H2Settings
from twistgate.engine.http2_server_stream import H2Stream

__all__ = ["H2ServerFactory", "H2ServerProtocol", "H2Stream", "H2Settings"]


class H2ServerFactory(Factory):
    """Builds `H2ServerProtocol`s for one listener (used by `engine.protocol_switch`)."""

    def __init__(
        self,
        handler: Any,
        limits: LimitsConfig,
        clock: Any,
        *,
        on_connection: Any = None,
        on_error: Any = None,
        listener: str = "",
    ) -> None:
        """
        :param on_connection: called with +1 / -1 as connections open and close
            (none when behind a `ProtocolSwitchFactory`, which counts).
        :param on_error: called with the RFC 9113 name of each GOAWAY error code sent.
        :param listener: the listener's name (`H2Stream.listener`).
        """
        self.listener = listener
        self.handler = handler
        self.settings = H2Settings(limits)
        self.clock = clock
        self.on_connection = on_connection
        self.on_error = on_error

    def buildProtocol(self, addr: Any) -> H2ServerProtocol:
        protocol = H2ServerProtocol(self.handler, self.settings, self.clock, self.on_connection, self.on_error)
        protocol.listener = self.listener
        protocol.factory = self
        return protocol
