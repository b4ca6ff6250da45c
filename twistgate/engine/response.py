"""
`UpstreamResponse`: an upstream's answer, shaped like Twisted's `IResponse`
so gateway code written for `Agent` keeps working.

Unlike Twisted's, ``headers`` holds every field as received, `Connection`
and `Content-Length` included.  The body is delivered to one protocol
(`deliverBody`); chunks that arrive before that are kept in order.  A
``101`` answer can instead be `detach`ed: its connection then belongs to
the caller (a WebSocket relay) and never returns to the pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple, Union

from twisted.internet.interfaces import IProtocol, IPushProducer
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from zope.interface import implementer

from twistgate.headers import Headers

if TYPE_CHECKING:
    from twistgate.engine.http1_client import HTTP1ClientProtocol

__all__ = ["UpstreamResponse"]



class _Delivered:
    """`UpstreamResponse._protocol` once the body was delivered to its end: deaf to anything late."""

    def dataReceived(self, data: bytes) -> None:
        pass


_DELIVERED: Any = _Delivered()


class UpstreamResponse:
    """
    :ivar code: the status code.
    :ivar phrase: the reason phrase as received.
    :ivar version: ``(b"HTTP", 1, 1)`` like Twisted's.
    :ivar headers: every field as received (names canonical).
    :ivar length: the body length, or `UNKNOWN_LENGTH` (chunked, or until close).
    :ivar whole_body: the whole body, when it had arrived (and ended cleanly)
        in the same read as the head; else None.  It can still be delivered.
    """

    __slots__ = ("code", "phrase", "version", "headers", "length", "request", "whole_body", "held_for", "_connection", "_protocol", "_pending", "_end")

    trailers = None  # this client does not read trailer fields (their absence, said without an AttributeError)

    def __init__(
        self,
        connection: "HTTP1ClientProtocol",
        code: int,
        phrase: bytes,
        version: Tuple[bytes, int, int],
        headers: Headers,
        length: Union[int, object],
    ) -> None:
        self.code = code
        self.phrase = phrase
        self.version = version
        self.headers = headers
        self.length = length
        self.request: Any = None
        self.whole_body: Optional[bytes] = None
        self.held_for: Any = None
        self._connection: Optional["HTTP1ClientProtocol"] = connection
        self._protocol: Optional[IProtocol] = None
        self._pending: Optional[List[bytes]] = []
        self._end: Optional[Failure] = None

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.code} {self.phrase!r}>"

    def deliverBody(self, protocol: IProtocol) -> None:
        """Stream the body to ``protocol`` (makeConnection, dataReceived..., connectionLost)."""
        if self._protocol is not None or self._pending is None:
            raise RuntimeError("the body was delivered already")
        self._protocol = protocol
        protocol.makeConnection(_BodyProducer(self))
        pending, self._pending = self._pending, None
        for chunk in pending:
            protocol.dataReceived(chunk)
        if self._end is not None:
            self._connection = None
            self._protocol = _DELIVERED
            protocol.connectionLost(self._end)

    def report_held(self) -> None:
        """
        The head, held back until its read was parsed, goes to the request
        that waits for it (`held_for`): with `whole_body` when the body came
        in that read too and ended cleanly.
        """
        request, self.held_for = self.held_for, None
        end = self._end
        if end is not None and end.type is ResponseDone:
            pending = self._pending
            self.whole_body = pending[0] if len(pending) == 1 else b"".join(pending)  # type: ignore[arg-type]
        request.head_received(self)

    def detach(self, protocol: IProtocol) -> None:
        """For a ``101``: hand the raw connection (and bytes already read after the head) to ``protocol``."""
        connection = self._connection
        if self.code != 101 or connection is None or self._protocol is not None:
            raise RuntimeError("only an undelivered 101 response can be detached")
        self._connection = None
        self._pending = None
        connection.detach(protocol)

    # fed by the connection

    def _data(self, chunk: bytes) -> None:
        protocol = self._protocol
        if protocol is not None:
            protocol.dataReceived(chunk)
        elif self._pending is not None:
            self._pending.append(chunk)

    def _finished(self, reason: Failure) -> None:
        if self._end is not None:
            return
        self._end = reason
        protocol = self._protocol
        if protocol is not None:
            self._connection = None
            self._protocol = _DELIVERED  # the protocol holds us through its transport: no cycle left behind
            protocol.connectionLost(reason)


@implementer(IPushProducer)
class _BodyProducer:
    """What the body protocol sees as its transport: pausing it pauses the upstream socket."""

    __slots__ = ("_response",)

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def pauseProducing(self) -> None:
        connection = self._response._connection
        if connection is not None:
            connection.pause_body(self._response)

    def resumeProducing(self) -> None:
        connection = self._response._connection
        if connection is not None:
            connection.resume_body(self._response)

    def stopProducing(self) -> None:
        connection = self._response._connection
        if connection is not None:
            connection.stop_body(self._response)

    # Twisted's IResponse body transports also answer these (readBody aborts through them).
    def loseConnection(self) -> None:
        self.stopProducing()

    def abortConnection(self) -> None:
        self.stopProducing()


