"""
The response body's way from the upstream to the client.

`BodyRelay` streams it with back-pressure: the upstream connection is
registered as the client's producer, so a slow client pauses the upstream
socket and memory stays flat.  Body filters (compression, cache capture) see
every chunk on the way.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH

from twistgate.http import strip_hop_by_hop

__all__ = ["BodyRelay", "applied_codings", "body_ended_cleanly", "discard", "forwarded_trailers", "is_stream", "run_filters"]


def body_ended_cleanly(reason: Failure) -> bool:
    """A body that ended with its framing (or, close-delimited, when the upstream closed)."""
    kind = reason.type
    # The exact types first: Failure.check formats class names for every candidate.
    return kind is ResponseDone or kind is PotentialDataLoss or reason.check(ResponseDone, PotentialDataLoss) is not None


def applied_codings(raw: Any, codings: Any) -> None:
    """
    The transfer codings of an upstream response other than ``chunked``
    (which the client's side frames anew), kept in ``raw``: the gateway does
    not decode them, so it must say they are there (RFC 9112 §6.1).  Such a
    body is read until the upstream closes (§6.3) and goes to an HTTP/1.1
    client as ``Transfer-Encoding: <codings>, chunked``.
    """
    kept = [token for value in codings for token in (t.strip() for t in value.split(b",")) if token and token.lower() != b"chunked"]
    if kept:
        raw[b"Transfer-Encoding"] = [b", ".join(kept)]


def is_stream(length: Any, raw: Any) -> bool:
    """
    Whether an upstream response is a stream: it came without a length
    (`length`: the upstream response's, before any body filter changed the
    framing), or it is ``text/event-stream`` (`raw`: its fields).  The route
    timeout bounds its head only; the read timeout watches its gaps.
    """
    if length is UNKNOWN_LENGTH:
        return True
    media = raw.get(b"Content-Type")
    return media is not None and media[0][:17].lower() == b"text/event-stream"


def run_filters(filters: List[Any], data: bytes, *, final: bool) -> bytes:
    """Pass `data` through each body filter in order; `final` flushes them."""
    for body_filter in filters:
        data = body_filter.write(data) if data else b""
        if final:
            data += body_filter.finish()
    return data


class BodyRelay:
    """
    Streams one upstream body to a `Downstream`; `done(reason)` is called
    once, when the upstream body is over (cleanly or not).  The body
    protocol of an `IResponse` (``makeConnection``, ``dataReceived``,
    ``connectionLost``), slotted: one is made per request.
    """

    __slots__ = ("downstream", "filters", "done", "registered", "transport", "dataReceived")

    def __init__(self, downstream: Any, filters: Optional[List[Any]], done: Callable[[Failure], None]) -> None:
        self.downstream = downstream
        self.filters = filters or None
        self.done = done
        self.registered = False
        self.transport: Any = None
        #: Each chunk of the body: without filters, straight to the client (no frame of the relay's own).
        self.dataReceived: Callable[[bytes], None] = downstream.write if self.filters is None else self._filtered

    def makeConnection(self, transport: Any) -> None:
        self.transport = transport
        self.downstream.register_producer(transport)
        self.registered = True

    def _filtered(self, data: bytes) -> None:
        data = run_filters(self.filters, data, final=False)  # type: ignore[arg-type]
        if data:
            self.downstream.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        downstream = self.downstream
        if self.registered:
            self.registered = False
            downstream.unregister_producer()
        if self.filters is not None:
            if body_ended_cleanly(reason):
                tail = run_filters(self.filters, b"", final=True)
                if tail and not downstream.finished:
                    downstream.write(tail)
            else:
                for body_filter in self.filters:
                    abort = getattr(body_filter, "abort", None)
                    if abort is not None:
                        abort()
        self.done(reason)

    def abort(self) -> None:
        """Stop the upstream body (its connection is closed, not reused)."""
        if self.transport is not None:
            self.transport.stopProducing()


class _Discard(Protocol):
    def connectionMade(self) -> None:
        self.transport.stopProducing()


def discard(response: Any) -> None:
    """Drop an upstream response nobody will read (its connection is closed)."""
    try:
        response.deliverBody(_Discard())
    except Exception:  # pragma: no cover - already delivered
        pass


#: Fields never forwarded as trailers (RFC 9110 §6.5.1): framing, routing, auth, cookies.
NOT_TRAILERS = (
    b"Content-Length", b"Transfer-Encoding", b"Content-Type", b"Content-Encoding", b"Host", b"Authorization",
    b"Set-Cookie", b"Trailer",
)  # fmt: skip


def forwarded_trailers(response: Any) -> Any:
    """An upstream response's trailer fields as the gateway forwards them (None when there are none)."""
    trailers = getattr(response, "trailers", None) if response is not None else None
    if not trailers:
        return None
    raw = trailers.raw
    strip_hop_by_hop(raw, raw.get(b"Connection"))
    for name in NOT_TRAILERS:
        raw.pop(name, None)
    return trailers
