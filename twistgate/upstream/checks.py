"""
The built-in health checks, registered in ``twistgate.health_checks`` like
any third-party one:

* ``http`` (the default): ``GET <path>`` through the upstream's own
  forwarding path (its pool, endpoints and TLS), healthy on an expected
  status; a short body is read so the connection can be pooled again.
* ``tcp``: healthy when a TCP connection opens; nothing is sent (for
  services that speak no HTTP on a health path, or only TLS).

Both have the public ``check(target)`` of the extension point and the
gateway's internal pair `probe(target)` (on its own `Target`) plus
`verdict(result)` (None when healthy, else the reason), which keeps the
reason ("health check answered 503") for ``last_error``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Tuple

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twistgate.headers import Headers

from twistgate.plugins.extension_points import ExtensionContext
from twistgate.plugins.options import NO_OPTIONS, ReaderOptions, with_options
from twistgate.plugins.views import TargetInfo, target_of
from twistgate.upstream import grpc_health
from twistgate.upstream.discovery import is_address
from twistgate.upstream.health_config import HTTP_CHECK_KEYS, read_http_check

__all__ = ["GrpcCheck", "HttpCheck", "TcpCheck", "grpc", "http", "tcp"]

#: A health probe's body beyond this is not read (the connection is closed instead).
DRAIN_LIMIT = 64 * 1024
#: Longest a TCP connect may take; the health check's `timeout` cancels it sooner.
CONNECT_LIMIT = 30.0

#: send(target, method, path, headers, body) -> Deferred[IResponse]: the upstream's forwarding path.
Send = Callable[[Any, bytes, bytes, Any, Any], Any]


class HttpCheck:
    """``GET path``; healthy on a status in `expected` (inclusive ranges)."""

    def __init__(self, path: str, expected: Tuple[Tuple[int, int], ...], send: Send) -> None:
        self.path = path.encode("ascii")
        self.expected = expected
        self.send = send

    def probe(self, target: Any) -> "Deferred[int]":
        """The status of ``GET path`` on the gateway's `target`."""
        headers = Headers({b"Host": [target.host_header], b"User-Agent": [b"twistgate-health-check"]})
        d = maybeDeferred(self.send, target, b"GET", self.path, headers, None)

        def got(response: Any) -> int:
            # The status is all a probe needs; a short body is read so the
            # connection can be pooled again, a long one is cut.
            response.deliverBody(_Drain())
            return int(response.code)

        return d.addCallback(got)

    def verdict(self, status: int) -> Optional[str]:
        if any(low <= status <= high for low, high in self.expected):
            return None
        return f"health check answered {status}"

    def check(self, target: TargetInfo) -> "Deferred[bool]":
        return self.probe(target_of(target)).addCallback(lambda status: self.verdict(status) is None)


class TcpCheck:
    """Healthy when a TCP connection to the target opens (it is closed at once)."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor

    def probe(self, target: Any) -> "Deferred[bool]":
        host = target.address or target.name
        if is_address(host):
            kind = TCP6ClientEndpoint if ":" in host else TCP4ClientEndpoint
            endpoint: Any = kind(self.reactor, host, target.port, timeout=CONNECT_LIMIT)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, target.port, timeout=CONNECT_LIMIT)

        def connected(protocol: Any) -> bool:
            if protocol.transport is not None:
                protocol.transport.loseConnection()
            return True

        return connectProtocol(endpoint, Protocol()).addCallback(connected)

    def verdict(self, connected: bool) -> Optional[str]:
        return None

    def check(self, target: TargetInfo) -> "Deferred[bool]":
        return self.probe(target_of(target))


@with_options(ReaderOptions(HTTP_CHECK_KEYS, read_http_check, required=("path",)))
def http(options: Mapping[str, Any], context: ExtensionContext) -> HttpCheck:
    """``health_check: {path: /health, expected_statuses: [200-299]}``."""
    send = context.internal
    if send is None:
        send = _side_send(context.http_client)
    return HttpCheck(options["path"], tuple(options.get("expected_statuses", ((200, 399),))), send)


@with_options(NO_OPTIONS)
def tcp(options: Mapping[str, Any], context: ExtensionContext) -> TcpCheck:
    """``health_check: {type: tcp}``: connect only."""
    return TcpCheck(context.clock)


class GrpcCheck:
    """``grpc.health.v1.Health/Check`` through the upstream's HTTP/2 client; healthy when SERVING."""

    def __init__(self, service: str, send: Send) -> None:
        self.service = service
        self.send = send

    def probe(self, target: Any) -> "Deferred[int]":
        return grpc_health.probe(self.send, target, self.service)

    def verdict(self, status: int) -> Optional[str]:
        return None if status == 200 else f"gRPC health check answered {status}"

    def check(self, target: TargetInfo) -> "Deferred[bool]":
        return self.probe(target_of(target)).addCallback(lambda status: self.verdict(status) is None)


@attrs.frozen
class GrpcCheckOptions:
    """``health_check: {type: grpc, grpc_service: NAME}``; an empty name asks about the whole server."""

    grpc_service: str = ""


def grpc(options: Mapping[str, Any], context: ExtensionContext) -> GrpcCheck:
    """``health_check: {type: grpc}`` on an ``h2``/``h2c`` upstream."""
    if context.internal is None:
        raise ValueError("the grpc check runs inside an upstream (type: grpc under upstreams.X.health_check)")
    return GrpcCheck(options.get("grpc_service", ""), context.internal)


grpc.Options = GrpcCheckOptions  # type: ignore[attr-defined]


def _side_send(client: Any) -> Send:
    """The http check outside an upstream (called from code): treq on the side client."""

    def send(target: Any, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        if client is None:
            raise RuntimeError("the http check needs an upstream or an http_client")
        return client.request(method.decode("ascii"), target.url + path.decode("ascii"), headers=headers, allow_redirects=False)

    return send


class _Drain(Protocol):
    """Reads and drops a probe's response body, up to DRAIN_LIMIT bytes."""

    def __init__(self) -> None:
        self.seen = 0

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > DRAIN_LIMIT and self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Any = None) -> None:
        pass
