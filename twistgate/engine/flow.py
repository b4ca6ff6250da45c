"""
The two directions of flow control on a server connection.

`WriteFlow` is registered with the transport: a full write buffer pauses
whatever produces the response (an upstream connection).  `ReadFlow` is
what a `StreamingBody` pauses when its buffer is full: the server stops
reading from the client.  Pipelining pauses reading too; the server keeps
one bit per reason and reads again only when none is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

if TYPE_CHECKING:
    from twistgate.engine.http1_server import HTTP1ServerProtocol

__all__ = ["BODY_PAUSE", "PIPELINE_PAUSE", "ReadFlow", "WriteFlow"]

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
