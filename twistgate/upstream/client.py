"""
The forwarded hop's HTTP client, behind one small interface.

An upstream group sends every attempt through ``client.request(target,
method, path, headers, body)``, which fires with an `UpstreamResponse`:
Twisted's `IResponse` shape (``code``, ``phrase``, ``length``,
``deliverBody``) with the gateway's own `Headers`, all fields included (the
``Connection`` field too: the names it lists must be dropped on the way
back), and ``trailers``: the trailer fields (`Headers`) once the body has
been delivered to its end, or None (no trailers, or a client that cannot
read them).

Two optional parts, for clients that can (`twistgate.engine.http2_client`):

* ``request(..., interim=callback)``: ``callback(status, headers)`` for each
  1xx response before the final one (103 Early Hints are forwarded to the
  client); a client whose ``request`` has no ``interim`` parameter is
  never given one;
* request trailers: ``body.trailers`` (see `twistgate.engine.api`) sent
  after the body.

The clients:

* `twistgate.engine.http1_client` (the default engine): its own HTTP/1.1
  protocol and pool;
* `twistgate.engine.http2_client`: HTTP/2 (``protocol: h2 | h2c``), a pool
  of multiplexed connections per target;
* `AgentClient` here: any Twisted `IAgent` (the twisted.web engine's pooled
  `Agent`, and the in-memory agents tests use).

Endpoints are built once per target (`endpoint_for`): parsing the URL and
building an endpoint per request would cost a third of Twisted's Agent time.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.web.http_headers import Headers as TwistedHeaders

from twistgate.headers import Headers

__all__ = ["AgentClient", "AgentResponse", "UpstreamClient", "endpoint_for"]


class UpstreamClient(Protocol):
    """What an upstream group sends its attempts through."""

    def request(self, target: Any, method: bytes, path: bytes, headers: Headers, body: Any) -> "Deferred[Any]":
        """
        Send one request to `target`; fires with the response once its head
        arrived.  (A client may also take ``interim=callback``: see above.)
        """

    def close(self) -> "Deferred[Any]":
        """Close idle connections; requests in flight finish."""


def endpoint_for(target: Any, clock: Any, tls_policy: Any, connect_timeout: float) -> Any:
    """
    The client endpoint of `target`: straight to its address when it has one
    (HostnameEndpoint would resolve even a literal, in a thread); TLS checks
    the configured name, whatever the address.
    """
    address = target.address if target.address is not None else None
    if address is None and _is_address(target.name):
        address = target.name
    if address is not None:
        kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
        endpoint: Any = kind(clock, address, target.port, timeout=connect_timeout)
    else:
        endpoint = HostnameEndpoint(clock, target.name.encode("idna"), target.port, timeout=connect_timeout)
    if target.config.scheme == "https":
        name = target.name.encode("ascii") if target.name.isascii() else target.name.encode("idna")
        endpoint = wrapClientTLS(tls_policy.creatorForNetloc(name, target.port), endpoint)
    return endpoint


def _is_address(host: str) -> bool:
    from ipaddress import ip_address

    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def to_twisted_headers(headers: Headers) -> TwistedHeaders:
    converted = TwistedHeaders()
    for name, values in headers.raw.items():
        converted.setRawHeaders(name, values)
    return converted


class AgentResponse:
    """An `IResponse` from a Twisted agent, with the gateway's `Headers`."""

    __slots__ = ("_response", "code", "phrase", "version", "headers", "length")

    trailers = None  # Twisted's client does not read trailer fields

    def __init__(self, response: Any, connection: Optional[list] = None) -> None:
        self._response = response
        self.code: int = response.code
        self.phrase: bytes = response.phrase
        self.version = response.version
        self.headers = Headers()
        self.headers.raw = {name: list(values) for name, values in response.headers.getAllRawHeaders()}
        if connection:
            self.headers.raw[b"Connection"] = list(connection)
        self.length = response.length

    def deliverBody(self, protocol: Any) -> None:
        self._response.deliverBody(protocol)


class AgentClient:
    """
    The hop over any `IAgent`: requests by URL (``target.base + path``).
    `connection_of(response)` may recover the ``Connection`` field Twisted's
    client hides (see `twistgate._twisted_compat.web_client`).
    """

    def __init__(self, agent: Any, connection_of: Optional[Callable[[Any], Optional[list]]] = None) -> None:
        self.agent = agent
        self.connection_of = connection_of

    def request(self, target: Any, method: bytes, path: bytes, headers: Headers, body: Any) -> "Deferred[Any]":
        d = self.agent.request(method, target.base + path, to_twisted_headers(headers), body)
        return d.addCallback(self._wrap)

    def _wrap(self, response: Any) -> AgentResponse:
        connection = self.connection_of(response) if self.connection_of is not None else None
        return AgentResponse(response, connection)

    def close(self) -> "Deferred[Any]":
        return succeed(None)  # the agent's owner closes its pool
