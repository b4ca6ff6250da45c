"""
`Tunnel`: a WebSocket connection relayed byte for byte after the upstream's
``101 Switching Protocols``.

Each side is a plain Twisted protocol on the raw connection the engine
handed over (`ServerRequest.take_over` on the client's side,
`UpstreamResponse.detach` on the upstream's).  Each transport is the other
one's producer, so a reader that cannot keep up pauses the socket of the
writer (memory stays flat), exactly as the response body relay does.

What the gateway adds to the bytes, and only between frames
(`twistgate.websocket.frames`):

* an idle timeout: no byte either way for ``idle_timeout`` closes both
  sides with close code 1001 (reason ``idle timeout``);
* ``max_message_size``: a bigger data message is never forwarded; its sender
  gets close 1009, the other side 1001;
* draining (a reload's old configuration past ``websocket.drain_timeout``,
  or a stop past ``limits.drain_timeout``): 1001 ``going away`` both ways.

When one side's connection ends, the other is closed at once: after what is
queued for it when the end was clean, aborted (reset) when it was not.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from twistgate.engine.writer import SocketWriter
from twistgate.websocket.frames import ABNORMAL, FrameScanner, close_frame

__all__ = ["Tunnel"]

CLIENT, UPSTREAM, GATEWAY = "client", "upstream", "gateway"


class _Side(Protocol):
    """One connection of a tunnel."""

    def __init__(self, tunnel: "Tunnel", name: str, scanner: FrameScanner) -> None:
        self.tunnel = tunnel
        self.name = name
        self.scanner = scanner  # the frames this side sends
        self.peer: Optional["_Side"] = None
        self.pending: Optional[List[bytes]] = []  # bytes for this side before it is connected
        self.received = 0
        self.open = False
        self.stopped = False  # its further bytes are ignored (a refused message)

    def connectionMade(self) -> None:
        self.open = True
        no_delay(self.transport)
        # Straight to the socket while nothing is queued (no reactor turn per frame); once a
        # send is short, through the transport, whose buffer pauses the other side.
        self.out = SocketWriter(self.transport, self.tunnel.clock)
        pending, self.pending = self.pending, None
        for data in pending or ():
            self.out.write(data)

    def dataReceived(self, data: bytes) -> None:
        if self.stopped:
            return
        tunnel = self.tunnel
        tunnel.last = tunnel.clock.seconds()
        self.received += len(data)
        scanner = self.scanner
        data = scanner.feed(data)
        if data:
            self.peer.send(data)  # type: ignore[union-attr]
        if tunnel.closed_by is None and scanner.close_code is not None:
            tunnel.closed_by = self.name  # the first close frame is this side's
        if scanner.too_big:
            self.stopped = True
            tunnel.refuse_message(self)

    def send(self, data: bytes) -> None:
        if self.pending is not None:
            self.pending.append(data)
        elif self.open:
            self.out.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.open = False
        self.tunnel.side_lost(self, reason)

    def close(self, code: Optional[int], reason: bytes) -> None:
        """A close frame of the gateway's own (when between frames), then close the connection."""
        if not self.open:
            return
        transport = self.transport
        if code is not None and self.peer is not None and self.peer.scanner.at_boundary:
            self.out.write(close_frame(code, reason, masked=self.name == UPSTREAM))
        self.out.flush()  # what this pass wrote goes first
        _unregister(transport)
        transport.loseConnection()


class Tunnel:
    """
    Both directions of one WebSocket connection.

    :param on_end: called once, with the tunnel, when both sides are closed.
    """

    def __init__(self, clock: Any, idle_timeout: float, max_message_size: int, on_end: Callable[["Tunnel"], None]) -> None:
        self.clock = clock
        self.idle_timeout = idle_timeout
        self.on_end = on_end
        self.client = _Side(self, CLIENT, FrameScanner(max_message_size))
        self.upstream = _Side(self, UPSTREAM, FrameScanner(max_message_size))
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self.started = self.last = clock.seconds()  # last: when a byte last passed, either way
        #: Who ended it: the side that sent the first close frame, else the
        #: side whose connection ended first, or the gateway.
        self.closed_by: Optional[str] = None
        self.gateway_code: Optional[int] = None  # the code the gateway closed with
        self.over = False
        self._timer: Any = None
        self._lost = 0

    # -- what observers read ----------------------------------------------------

    @property
    def bytes_up(self) -> int:
        """Client to upstream."""
        return self.client.received

    @property
    def bytes_down(self) -> int:
        """Upstream to client."""
        return self.upstream.received

    @property
    def close_code(self) -> int:
        """The first close frame's code (the closing side's), the gateway's own, or 1006: no close frame."""
        if self.closed_by == GATEWAY:
            return self.gateway_code  # type: ignore[return-value]
        side = self.client if self.closed_by == CLIENT else self.upstream
        code = side.scanner.close_code
        return code if code is not None else ABNORMAL

    # -- lifetime -----------------------------------------------------------------

    def start(self) -> None:
        """Both sides are connected: each transport becomes the other's producer; the idle timer starts."""
        client, upstream = self.client.transport, self.upstream.transport
        if self.client.open and self.upstream.open:
            _register(client, upstream)
            _register(upstream, client)
        self._timer = self.clock.callLater(self.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self._timer = None
        if self.over:
            return
        now = self.clock.seconds()
        due = self.last + self.idle_timeout
        if now < due:
            self._timer = self.clock.callLater(due - now, self._idle_check)
            return
        self.shut(1001, b"idle timeout")

    def shut(self, code: int, reason: bytes, *, to_client: Optional[int] = None, to_upstream: Optional[int] = None) -> None:
        """
        The gateway ends the connection: its close frames (each where a
        frame may go), then both connections close.  `code` is the one
        recorded; each side gets its own if given.
        """
        if self.over:
            return
        if self.closed_by is None:
            self.closed_by = GATEWAY
            self.gateway_code = code
        self.client.close(to_client if to_client is not None else code, reason)
        self.upstream.close(to_upstream if to_upstream is not None else code, reason)

    def refuse_message(self, sender: _Side) -> None:
        """`sender` began a message over ``max_message_size``: 1009 to it, 1001 to the other side."""
        if sender is self.client:
            self.shut(1009, b"message too big", to_upstream=1001)
        else:
            self.shut(1009, b"message too big", to_client=1001)

    def side_lost(self, side: _Side, reason: Optional[Failure]) -> None:
        self._lost += 1
        if self.closed_by is None:
            self.closed_by = side.name
        peer = side.peer
        assert peer is not None
        if peer.open:
            transport = peer.transport
            _unregister(transport)
            if reason is None or reason.check(ConnectionDone):
                peer.out.flush()
                transport.loseConnection()  # what was queued for it goes first
            else:
                peer.out.discard()
                transport.abortConnection()  # reset: the other side learns at once
        elif peer.pending is not None:
            peer.pending = None  # never connected: nothing to wait for
            self._lost += 1
        if self._lost >= 2:
            self._end()

    def abandon(self) -> None:
        """The upstream side never came (the client left first, or it could not be detached)."""
        if self.upstream.pending is not None:
            self.upstream.pending = None
            self.side_lost(self.upstream, None)

    def _end(self) -> None:
        if self.over:
            return
        self.over = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self.on_end(self)


def _register(consumer: Any, producer: Any) -> None:
    try:
        consumer.registerProducer(producer, True)
    except RuntimeError:  # another producer is still registered
        consumer.unregisterProducer()
        consumer.registerProducer(producer, True)


def _unregister(transport: Any) -> None:
    # A transport with a (paused) producer resumes it instead of closing once drained.
    if getattr(transport, "producer", None) is not None:
        transport.unregisterProducer()


def no_delay(transport: Any) -> None:
    """Frames go out at once (no Nagle wait for the previous one's ACK): an echo is a round trip."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except Exception:  # not a TCP socket (a test transport)
            pass
