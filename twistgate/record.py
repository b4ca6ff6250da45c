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
        # Made per request: the fields are stored as they are worked out, on
        # an instance made without ``__init__`` (passing 23 arguments to it
        # cost as much as the stores), every field set here (tests check it).
        record = _new(cls)
        downstream = exchange.downstream
        preq = exchange.proxy_request
        route = exchange.route
        call = exchange.call
        record.request_id = exchange.request_id
        method = downstream.method
        record.method = _METHODS.get(method) or method.decode("latin-1")
        record.path = downstream.path.decode("latin-1")
        status = record.status = downstream.code if exchange.answered else 0
        error = exchange.error
        record.error = error.code if error is not None else None
        record.finished = now
        record.bytes_in = downstream.received_bytes
        record.bytes_out = downstream.sent_bytes
        record.client_gone = exchange.client_gone
        version = downstream.version
        record.protocol = _PROTOCOLS.get(version) or version.decode("latin-1")
        record.grpc_status = exchange.grpc_status
        record.listener = downstream.listener
        if preq is not None:
            started = record.started = preq.started
            record.client_ip = preq.client_ip
            record.consumer = preq.consumer
            record.state = preq.state
        else:
            started = record.started = now
            record.client_ip = downstream.client[0]
            record.consumer = None
            record.state = {}
        if route is not None:
            record.route = route.name
            record.logged = route.config.access_log
            upstream = route.upstream.name if route.upstream is not None else None
        else:
            record.route = upstream = None
            record.logged = True
        head = None
        if call is not None:
            if call.upstream is not None:
                upstream = call.upstream
            target = call.target
            record.target = target.url if target is not None else None
            record.attempts = call.attempts
            if call.head_at is not None:
                head = call.head_at - started
        else:
            record.target = None
            record.attempts = 0
        record.upstream = upstream
        record.upstream_head_seconds = head
        # latency_seconds, inline: a call per request for a comparison.
        record.latency = head if status == 101 and head is not None else now - started
        return record


_new = object.__new__
_PROTOCOLS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/2": "HTTP/2", b"HTTP/1.0": "HTTP/1.0"}
_METHODS = {m.encode("ascii"): m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
