"""
Choosing a connection's HTTP engine: HTTP/1.1 or HTTP/2.

`ProtocolSwitchFactory` takes two protocol factories and decides per
connection, on its first bytes:

* TLS: the protocol ALPN negotiated: ``h2`` goes to the HTTP/2 factory,
  anything else (``http/1.1``, or no ALPN at all) to the HTTP/1.1 one;
* cleartext with ``h2c: true``: a connection that starts with the HTTP/2
  preface (prior knowledge, RFC 9113 §3.3) goes to HTTP/2, any other to
  HTTP/1.1.

The chosen protocol is attached to the same transport and sees every byte
from the first; the switch only forwards ``dataReceived`` and
``connectionLost`` after that.  It also counts connections (+1 / -1), so the
engines behind it are built without a counter of their own.  Any HTTP/1.1
engine plugs in as a plain protocol factory.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from twistgate.engine.http2_common import PREFACE

__all__ = ["ProtocolSwitch", "ProtocolSwitchFactory"]


class ProtocolSwitch(Protocol):
    """One connection until its engine is chosen; a pass-through after."""

    def __init__(self, factory: "ProtocolSwitchFactory", addr: Any) -> None:
        self.switch = factory
        self.addr = addr
        self.inner: Optional[Protocol] = None
        self.buffer = b""
        self.timer: Any = None

    def connectionMade(self) -> None:
        switch = self.switch
        if switch.on_connection is not None:
            switch.on_connection(1)
        # A connection that never says anything is closed like an idle one.
        self.timer = switch.clock.callLater(switch.first_byte_timeout, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        inner = self.inner
        if inner is not None:
            inner.dataReceived(data)
            return
        buffer = self.buffer + data
        factory = self._choose(buffer)
        if factory is None:
            self.buffer = buffer  # part of a preface so far
            return
        self.buffer = b""
        self._cancel_timer()
        inner = factory.buildProtocol(self.addr)
        if inner is None:
            self.transport.loseConnection()
            return
        self.inner = inner
        inner.makeConnection(self.transport)
        inner.dataReceived(buffer)

    def _choose(self, buffer: bytes) -> Optional[Factory]:
        switch = self.switch
        negotiated = getattr(self.transport, "negotiatedProtocol", None)
        if negotiated is not None:
            return switch.h2 if negotiated == b"h2" else switch.http1
        if switch.h2c:
            if buffer[: len(PREFACE)] == PREFACE[: len(buffer)]:
                return switch.h2 if len(buffer) >= len(PREFACE) else None
        return switch.http1

    def connectionLost(self, reason: Failure = ConnectionDone()) -> None:  # type: ignore[assignment]
        self._cancel_timer()
        inner, self.inner = self.inner, None
        try:
            if inner is not None:
                inner.connectionLost(reason)
        finally:
            if self.switch.on_connection is not None:
                self.switch.on_connection(-1)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None


class ProtocolSwitchFactory(Factory):
    """
    :param http1: the HTTP/1.1 engine's protocol factory.
    :param h2: the HTTP/2 engine's protocol factory.
    :param h2c: whether a cleartext connection may start with the HTTP/2 preface.
    :param first_byte_timeout: seconds a connection may stay silent before it is closed.
    :param on_connection: called with +1 / -1 as connections open and close.
    """

    def __init__(
        self, http1: Any, h2: Any, *, h2c: bool, clock: Any, first_byte_timeout: float, on_connection: Any = None
    ) -> None:
        self.http1 = http1
        self.h2 = h2
        self.h2c = h2c
        self.clock = clock
        self.first_byte_timeout = first_byte_timeout
        self.on_connection = on_connection

    def doStart(self) -> None:
        super().doStart()
        self.http1.doStart()
        self.h2.doStart()

    def doStop(self) -> None:
        self.http1.doStop()
        self.h2.doStop()
        super().doStop()

    def buildProtocol(self, addr: Any) -> ProtocolSwitch:
        protocol = ProtocolSwitch(self, addr)
        protocol.factory = self
        return protocol
