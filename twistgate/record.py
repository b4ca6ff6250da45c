"""
What happened to one request, for observers (metrics, access log, stats).

Built once when the client's side is over, and only when some observer is
registered, so a gateway without observability pays nothing for it.  Every
observer gets the same record: treat it as read-only.  (It is a plain
slotted attrs class, not a frozen one: a frozen class pays an
``object.__setattr__`` per field, and a record is made per request.)
"""

from __future__ import annotations

from typing import Any, Optional

import attrs


def latency_seconds(status: int, upstream_head_seconds: Optional[float], duration: float) -> float:
    """
    What latency figures count: the duration, except for a WebSocket (101),
    whose connection may last hours: the time to the switch.
    """
    if status == 101 and upstream_head_seconds is not None:
        return upstream_head_seconds
    return duration


def latency_of(record: "ExchangeRecord") -> float:
    """`ExchangeRecord.latency` of a record made with its fields (tests, embedders), not by `ExchangeRecord.of`."""
    return latency_seconds(record.status, record.upstream_head_seconds, record.finished - record.started)


@attrs.define
class ExchangeRecord:
    request_id: str
    method: str
    path: str  # the path as the client sent it, without query (never a label: unbounded)
    route: Optional[str]  # None when no route matched
    status: int  # what the client got (0 if the client left before any answer)
    error: Optional[str]  # the gateway's error code when it answered itself
    started: float  # clock seconds when the request head was read
    finished: float
    upstream: Optional[str]  # the upstream group's name
    target: Optional[str]  # the last target tried (URL)
    attempts: int  # upstream attempts (retries = attempts - 1)
    upstream_head_seconds: Optional[float]  # from start until the upstream's response head
    bytes_in: int  # request body bytes received
    bytes_out: int  # response body bytes sent
    client_ip: str
    consumer: Optional[str]
    client_gone: bool  # the client left before the response was complete
    state: Any  # the ProxyRequest's state dict (cache status, auth details...)
    protocol: str = "HTTP/1.1"  # the client's: HTTP/1.0, HTTP/1.1 or HTTP/2
    grpc_status: Optional[int] = None  # a gRPC call's status (from the upstream's trailers, or the gateway's own)
    logged: bool = True  # False: the route has `access_log: false`
    listener: str = ""  # the listener the request arrived on
    #: What latency figures count (`latency_seconds`): worked out once, not by each sink that reads it.
    latency: float = attrs.field(default=attrs.Factory(latency_of, takes_self=True))

    @property
    def duration(self) -> float:
        return self.finished - self.started

    @classmethod
    def of(cls, exchange: Any, now: float) -> "ExchangeRecord":
        downstream = exchange.downstream
        preq = exchange.proxy_request
        route = exchange.route
        call = exchange.call
        started = preq.started if preq is not None else now
        target = call.target if call is not None else None
        head_at = call.head_at if call is not None else None
        method = downstream.method
        upstream_head_seconds = (head_at - started) if head_at is not None else None
        status = downstream.code if exchange.answered else 0
        # latency_seconds, inline: a call per request for a comparison.
        latency = upstream_head_seconds if status == 101 and upstream_head_seconds is not None else now - started
        # Positional, in field order: a record is made per request, and keywords cost a lookup each.
        return cls(
            exchange.request_id,
            _METHODS.get(method) or method.decode("latin-1"),
            downstream.path.decode("latin-1"),
            route.name if route is not None else None,
            status,
            exchange.error.code if exchange.error is not None else None,
            started,
            now,
            (
                call.upstream if call is not None and call.upstream is not None
                else route.upstream.name if route is not None and route.upstream is not None else None
            ),
            target.url if target is not None else None,
            call.attempts if call is not None else 0,
            upstream_head_seconds,
            downstream.received_bytes,
            downstream.sent_bytes,
            preq.client_ip if preq is not None else downstream.client[0],
            preq.consumer if preq is not None else None,
            exchange.client_gone,
            preq.state if preq is not None else {},
            _PROTOCOLS.get(downstream.version) or downstream.version.decode("latin-1"),
            exchange.grpc_status,
            route.config.access_log if route is not None else True,
            downstream.listener,
            latency,
        )


_PROTOCOLS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/2": "HTTP/2", b"HTTP/1.0": "HTTP/1.0"}
_METHODS = {m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
