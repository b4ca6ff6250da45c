"""
The two directions of flow control on a server connection.

`WriteFlow` is registered with the transport: a full write buffer pauses
whatever produces the response (an upstream connection).  `ReadFlow` is
what a `StreamingBody` pauses when its buffer is full: the server stops
reading from the client.  Pipelining pauses reading too; the server keeps
one bit per reason and reads again only when none is left.

`ConnectionFlow` is the connection's side of both (a base of
`HTTP1ServerProtocol`): back-pressure is one concern, kept apart from
parsing and framing so each can be read, and changed, on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

if TYPE_CHECKING:
    from twistgate.engine.http1_server import HTTP1ServerProtocol

__all__ = ["BODY_PAUSE", "PIPELINE_PAUSE", "ConnectionFlow", "ReadFlow", "WriteFlow"]

BODY_PAUSE = 1
PIPELINE_PAUSE = 2


@implementer(IPushProducer)
class WriteFlow:
    """The transport's producer: pauses and resumes the response's producer."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: "HTTP1ServerProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.writes_paused()

    def resumeProducing(self) -> None:
        self._protocol.writes_resumed()

    def stopProducing(self) -> None:
        self._protocol.writes_stopped()


@implementer(IPushProducer)
class ReadFlow:
    """The client side of a request body: pausing it stops reading from the client."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: "HTTP1ServerProtocol") -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._protocol.pause_reading(BODY_PAUSE)

    def resumeProducing(self) -> None:
        self._protocol.resume_reading(BODY_PAUSE)

    def stopProducing(self) -> None:
        pass


class ConnectionFlow:
    """
    Pausing and resuming a server connection's two directions (see the
    module docstring).  Uses the connection's ``transport``, ``_closing``,
    ``_paused`` (one bit per reason reading is paused), ``_write_paused``
    and ``_producer`` (what writes the current response).
    """

    transport: Any
    _closing: bool
    _paused: int
    _write_paused: bool
    _producer: Optional[IPushProducer]

    def register_producer(self, producer: Optional[IPushProducer]) -> None:
        """``producer`` writes the current response: paused while the client's socket is full."""
        self._producer = producer
        if producer is not None and self._write_paused:
            producer.pauseProducing()

    def pause_reading(self, reason: int) -> None:
        if self._closing:
            return
        if not self._paused:
            self.transport.pauseProducing()
        self._paused |= reason

    def resume_reading(self, reason: int) -> None:
        if self._paused & reason:
            self._paused &= ~reason
            if not self._paused and not self._closing:
                self.transport.resumeProducing()

    def writes_paused(self) -> None:
        self._write_paused = True
        if self._producer is not None:
            self._producer.pauseProducing()

    def writes_resumed(self) -> None:
        self._write_paused = False
        if self._producer is not None:
            self._producer.resumeProducing()

    def writes_stopped(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.stopProducing()
