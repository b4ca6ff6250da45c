"""
`UpgradeExchange`: an `Exchange` for a request carrying ``Upgrade``.

A WebSocket handshake (RFC 6455 §4.1: HTTP/1.1 ``GET``, ``Upgrade:
websocket``, ``Connection: upgrade``, no body) is routed, authenticated,
limited and passed through every policy like any request; its
``Connection: Upgrade`` and ``Upgrade`` fields, which the hop-by-hop rules
remove from every other request, go upstream with it (the
``Sec-WebSocket-*`` fields were never hop-by-hop).  Before it is sent, the
WebSocket caps are checked (``websocket.max_connections``, the route's and
the gateway's: 503 beyond).  When the upstream answers ``101``, the 101 goes
to the client (through the route's ``on_response`` layers) and the engine
hands both connections over to a `Tunnel`; any other answer is relayed as
usual.  The exchange is over (its record, access line and in-flight count)
only when the tunnel is.

Any other ``Upgrade`` (``h2c``...) is not a WebSocket handshake: its upgrade
fields are removed, as for every request, and the upstream answers plain
HTTP.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from twisted.python.failure import Failure

from twistgate.engine.framing import connection_tokens
from twistgate.errors import GatewayError, ServiceUnavailable
from twistgate.exchange import Exchange
from twistgate.relay import discard
from twistgate.websocket.config import settings_for
from twistgate.websocket.tunnel import Tunnel

__all__ = ["UPGRADE", "UpgradeExchange", "websocket_upgrade"]

#: ``request.state[UPGRADE]``: ``"websocket"`` on a WebSocket handshake (the cache passes it by);
#: once the connection is over, ``request.state[OUTCOME]`` holds its close code and closing side.
UPGRADE = "upgrade"
OUTCOME = "websocket"


class WebSocketUnsupported(GatewayError):
    status, code, default_message = 501, "websocket_unsupported", "WebSocket connections cannot be relayed here."


class WebSocketLimit(ServiceUnavailable):
    code, default_message = "websocket_limit", "Too many WebSocket connections are open."


def websocket_upgrade(downstream: Any) -> Optional[List[bytes]]:
    """The client's ``Upgrade`` values when `downstream` is a WebSocket handshake, else None."""
    raw = downstream.headers.raw
    upgrade = raw.get(b"Upgrade")
    if not upgrade or downstream.method != b"GET" or downstream.version != b"HTTP/1.1" or downstream.body is not None:
        return None
    if b"websocket" not in connection_tokens(upgrade) or b"upgrade" not in connection_tokens(raw.get(b"Connection")):
        return None
    return list(upgrade)


class UpgradeExchange(Exchange):
    """An `Exchange` that can become a WebSocket `Tunnel` (see the module docstring)."""

    __slots__ = ("websocket", "upgrade", "upgrade_reply", "tunnel", "slot", "ended")

    def __init__(self, generation: Any, downstream: Any) -> None:
        super().__init__(generation, downstream)
        self.upgrade = websocket_upgrade(downstream)
        self.websocket = self.upgrade is not None
        self.upgrade_reply: Optional[List[bytes]] = None
        self.tunnel: Optional[Tunnel] = None
        self.slot: Optional[str] = None  # the route whose WebSocket slot this exchange holds
        self.ended: Any = None  # the client side's outcome, held until the tunnel is over

    def _keep_handshake(self, raw: Dict[bytes, List[bytes]], request: Any) -> None:
        """Called by `Exchange.start` once hop-by-hop fields are gone: the handshake's go back."""
        raw[b"Connection"] = [b"Upgrade"]
        raw[b"Upgrade"] = self.upgrade  # type: ignore[assignment]
        request.state[UPGRADE] = "websocket"

    # -- before the upstream ------------------------------------------------------

    def _forward(self) -> None:
        route = self.route
        if not self.websocket or route is None or route.destination is None:
            super()._forward()
            return
        refusal = self._refusal(route)
        if refusal is not None:
            self._fail(Failure(refusal))
            return
        settings = self._settings()
        if not self.generation.ops.websockets.reserve(route.name, settings.route_limit, settings.gateway_limit):
            self._fail(Failure(WebSocketLimit(headers=[("Retry-After", "1")])))
            return
        self.slot = route.name
        super()._forward()

    def _refusal(self, route: Any) -> Optional[GatewayError]:
        if getattr(self.downstream, "take_over", None) is None:
            return WebSocketUnsupported(
                "This listener's HTTP engine cannot hand a connection over (engine: twisted); "
                "WebSocket needs engine: httptools."
            )
        if any(upstream.config.protocol != "http1" for upstream, _ in route.destination.arms):
            return WebSocketUnsupported("WebSocket needs an HTTP/1.1 upstream (protocol: http1).")
        return None

    def _settings(self) -> Any:
        route = self.route
        assert route is not None
        return settings_for(self.generation.config.sections.get("websocket"), route.config.policies.get("websocket"))

    # -- the upstream's answer ---------------------------------------------------------

    def _got_response(self, response: Any) -> None:
        if self.websocket and response.code == 101:
            self.upgrade_reply = response.headers.raw.get(b"Upgrade")  # before the hop-by-hop fields go
        super()._got_response(response)

    def _send(self, response: Any) -> None:
        upstream_response = self.upstream_response
        if (
            response.status != 101
            or not self.websocket
            or not response.from_upstream
            or upstream_response is None
            or self.client_gone
            or self.answered
        ):
            super()._send(response)
            return
        detach = getattr(upstream_response, "detach", None)
        if detach is None:
            self.upstream_response = None
            discard(upstream_response)
            self._fail(Failure(GatewayError("The upstream switched protocols on a connection that cannot be handed over.")))
            return
        self.answered = True
        self.response = response
        self._cancel_timer()  # the route timeout bounds the handshake; the tunnel has its idle timeout
        generation = self.generation
        raw = response.headers.raw
        self._own_fields(raw)
        raw[b"Connection"] = [b"Upgrade"]
        raw[b"Upgrade"] = self.upgrade_reply or [b"websocket"]
        settings = self._settings()
        tunnel = self.tunnel = Tunnel(generation.clock, settings.idle_timeout, settings.max_message_size, self._tunnel_over)
        generation.ops.websockets.opened(tunnel, self.slot, generation)
        downstream = self.downstream
        downstream.write_head(101, response.reason, response.headers)
        downstream.take_over(tunnel.client)  # writes the 101; the request is over for the engine
        detach(tunnel.upstream)
        tunnel.start()

    # -- the end -------------------------------------------------------------------------

    def _finished(self, result: Any) -> None:
        tunnel = self.tunnel
        if tunnel is not None and not tunnel.over:
            self.ended = result  # the 101 went out: the exchange lasts as long as the connection
            return
        if self.slot is not None and tunnel is None:
            self.generation.ops.websockets.release(self.slot)  # refused or failed before a tunnel
            self.slot = None
        super()._finished(result)

    def _tunnel_over(self, tunnel: Tunnel) -> None:
        self.generation.ops.websockets.closed(tunnel)
        self.slot = None
        downstream = self.downstream
        downstream.received_bytes = tunnel.bytes_up  # what the access line and metrics report
        downstream.sent_bytes = tunnel.bytes_down
        if self.proxy_request is not None:
            self.proxy_request.state[OUTCOME] = {"close_code": tunnel.close_code, "closed_by": tunnel.closed_by}
        super()._finished(self.ended)
