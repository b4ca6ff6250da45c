"""
The gRPC health-checking protocol (``grpc.health.v1.Health/Check``) as an
active health probe: ``health_check: {type: grpc}`` on an ``h2``/``h2c``
upstream.

A probe is one unary call through the upstream's client (the same path as
requests).  The target is healthy when the call ends with ``grpc-status:
0`` and the response says ``SERVING``.  The two messages are tiny protobufs
(one string field, one enum field) encoded here by hand: the gateway needs
no protobuf runtime for them.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone

from twistgate.grpc import NAMES, status_of
from twistgate.headers import Headers
from twistgate.upstream.body import BytesBody

__all__ = ["CHECK_PATH", "GrpcHealthError", "check_request", "parse_check_response", "probe"]

CHECK_PATH = b"/grpc.health.v1.Health/Check"
#: HealthCheckResponse.ServingStatus
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
#: A health answer is tiny; anything longer is not one.
MAX_ANSWER = 4096


class GrpcHealthError(Exception):
    """The target answered the health check, but not SERVING (or not in gRPC at all)."""


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def check_request(service: str) -> bytes:
    """A length-prefixed gRPC message: HealthCheckRequest{service}."""
    name = service.encode("utf-8")
    message = (b"\x0a" + _varint(len(name)) + name) if name else b""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def parse_check_response(data: bytes) -> int:
    """The ``status`` of a length-prefixed HealthCheckResponse (0, UNKNOWN, when absent)."""
    if len(data) < 5 or data[0] != 0:
        raise GrpcHealthError("not an uncompressed gRPC message")
    length = int.from_bytes(data[1:5], "big")
    message = data[5 : 5 + length]
    if len(message) != length:
        raise GrpcHealthError("truncated gRPC message")
    status = 0
    i = 0
    while i < len(message):
        key, i = _read_varint(message, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(message, i)
            if field == 1:
                status = value
        elif wire == 2:
            size, i = _read_varint(message, i)
            i += size
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
        else:
            raise GrpcHealthError("malformed HealthCheckResponse")
    return status


def _read_varint(data: bytes, i: int) -> "tuple[int, int]":
    value = shift = 0
    while True:
        if i >= len(data) or shift > 63:
            raise GrpcHealthError("malformed HealthCheckResponse")
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7


class _Collect(Protocol):
    def __init__(self, done: "Deferred[bytes]") -> None:
        self.done = done
        self.chunks: List[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_ANSWER:
            self.transport.stopProducing()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self.size > MAX_ANSWER:
            self.done.errback(GrpcHealthError("health answer too large"))
        elif reason.check(ResponseDone):
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def probe(request: Callable[..., "Deferred[Any]"], target: Any, service: str) -> "Deferred[int]":
    """
    One ``Health/Check`` call to `target` through `request` (the upstream's
    untraced send); fires with 200 when SERVING, fails otherwise.
    """
    headers = Headers(
        {
            b"Host": [target.host_header],
            b"Content-Type": [b"application/grpc"],
            b"User-Agent": [b"twistgate-health-check"],
        }
    )
    d = request(target, b"POST", CHECK_PATH, headers, BytesBody(check_request(service)))

    def got(response: Any) -> "Deferred[int]":
        body: Deferred[bytes] = Deferred()
        response.deliverBody(_Collect(body))
        return body.addCallback(judge, response)

    def judge(data: bytes, response: Any) -> int:
        if response.code != 200:
            raise GrpcHealthError(f"gRPC health check answered HTTP {response.code}")
        grpc_status = status_of(getattr(response, "trailers", None))
        if grpc_status is None:
            grpc_status = status_of(response.headers)
        if grpc_status != 0:
            name = NAMES.get(grpc_status, str(grpc_status)) if grpc_status is not None else "no grpc-status"
            raise GrpcHealthError(f"gRPC health check failed: {name}")
        serving = parse_check_response(data)
        if serving != 1:
            raise GrpcHealthError(f"gRPC health: {SERVING_STATUS.get(serving, serving)}")
        return 200

    return d.addCallback(got)


def describe_service(service: Optional[str]) -> str:
    return repr(service) if service else "the whole server"
