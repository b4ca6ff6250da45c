"""
What policies and plugins see of one request/response exchange.

`ProxyRequest` and `ProxyResponse` are deliberately mutable, slotted objects
(as mitmproxy's flows and Envoy's header maps are): policies edit the headers
that will be sent in place, and building a new frozen value per policy would
cost allocations on the hot path for nothing.  `Response` is the frozen value
a plugin returns to answer instead of the upstream; `RouteInfo` is what a
plugin learns about the route that matched.

Types, for plugin authors: header names and values are bytes
(`twistgate.headers.Headers`; its Twisted-style methods also accept str
names and then give str values); ``method`` and ``query`` are bytes;
``path``, ``host``, ``client_ip``, ``peer_ip``, ``scheme``, ``request_id``
and ``consumer`` are str.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

import attrs
from twisted.logger import Logger

from twistgate.headers import Headers, fields_into

if TYPE_CHECKING:  # the configuration package needs this module: no import cycle at run time
    from twistgate.config.model import RouteConfig

HeaderInput = Union[
    Mapping[Union[str, bytes], Union[str, bytes]],
    Iterable[Tuple[Union[str, bytes], Union[str, bytes]]],
]


def _to_bytes(value: Union[str, bytes]) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def _header_pairs(headers: HeaderInput) -> Tuple[Tuple[bytes, bytes], ...]:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((_to_bytes(k), _to_bytes(v)) for k, v in items)


_NOT_ANSWERED = 1 << 30
_log = Logger()


class ProxyRequest:
    """
    The request as the gateway will forward it.

    :ivar method: the request method, e.g. ``b"GET"``.
    :ivar path: the normalised path (percent-encoded, no query), after the
        route's rewrites once routing has run.
    :ivar query: the raw query string without ``?`` (``b""`` when absent); kept
        byte for byte.
    :ivar headers: the headers that will be sent upstream (hop-by-hop headers
        already removed); edit them in place.
    :ivar host: the Host the client asked for (lower-case, without port).
    :ivar client_ip: the client address as believed through ``trusted_proxies``.
    :ivar peer_ip: the address of the TCP peer.
    :ivar scheme: ``"http"`` or ``"https"`` as the client used it.
    :ivar request_id: the ``X-Request-ID`` (the client's or a generated one).
    :ivar params: values of the route's ``{param}`` segments.
    :ivar consumer: the authenticated identity, if any.
    :ivar route: the `RouteInfo` of the route the request matched (``None``
        when it matched none: then only ``on_error`` runs).
    :ivar state: free space for plugins to pass data between hooks.
    :ivar started: the gateway clock's time when the request head was read.
    :ivar uri: the request target as the client sent it, in origin form
        (path and query, before normalisation or any rewrite).
    """

    __slots__ = (
        "method",
        "path",
        "query",
        "headers",
        "host",
        "client_ip",
        "peer_ip",
        "scheme",
        "request_id",
        "params",
        "consumer",
        "route",
        "state",
        "started",
        "answered_at",
        "uri",
        "finishers",
        "prepared_fields",
    )

    # Not keyword-only: the exchange makes one per request positionally (14 keywords cost
    # ~0.3 us to match); plugins' tests name them, as documented, and that stays so.
    def __init__(
        self,
        method: bytes,
        path: str,
        query: bytes = b"",
        headers: Optional[Headers] = None,
        host: str = "",
        client_ip: str = "",
        peer_ip: str = "",
        scheme: str = "http",
        request_id: str = "",
        params: Optional[Dict[str, str]] = None,
        consumer: Optional[str] = None,
        started: float = 0.0,
        uri: bytes = b"",
        route: "Optional[RouteInfo]" = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers if headers is not None else Headers()
        self.host = host
        self.client_ip = client_ip
        self.peer_ip = peer_ip
        self.scheme = scheme
        self.request_id = request_id
        self.params = params if params is not None else {}
        self.consumer = consumer
        self.route = route
        self.state: Dict[str, Any] = {}
        self.started = started
        #: The route layer (stage or plugin position) whose on_request
        #: answered; on_response then unwinds only the layers outside it.
        self.answered_at = _NOT_ANSWERED
        self.uri = uri
        #: Callables for when the exchange is over (`when_done`); None while there are none.
        self.finishers: Optional[List[Any]] = None
        #: The gateway's own fields for the upstream as ready header lines, not in `headers`: on a
        #: route whose layers never look at them nobody reads them before they go (`twistgate.chain.forwarding_blind`).
        self.prepared_fields = b""

    def spell_out_fields(self) -> None:
        """`prepared_fields` set into `headers`, for a client that writes the head from the fields (HTTP/2, Agent, a traced attempt)."""
        if self.prepared_fields:
            fields_into(self.headers.raw, self.prepared_fields)
            self.prepared_fields = b""

    def when_done(self, callback: Any) -> None:
        """
        Call ``callback()`` once when the exchange is over, however it ended
        (answered, refused, failed, or the client went away): for what a
        layer holds for the request's duration (a concurrency slot).
        """
        if self.finishers is None:
            self.finishers = []
        self.finishers.append(callback)

    def run_done(self) -> None:
        """Call the `when_done` callbacks, once (the exchange does, when it is over)."""
        callbacks, self.finishers = self.finishers, None
        for callback in callbacks or ():
            try:
                callback()
            except Exception:
                _log.failure("a when_done callback failed for request {request_id}", request_id=self.request_id)

    @property
    def target(self) -> bytes:
        """The request target sent upstream: path plus raw query."""
        path = self.path.encode("ascii")
        return path + b"?" + self.query if self.query else path

    def __repr__(self) -> str:
        return f"<ProxyRequest {self.method.decode('ascii', 'replace')} {self.path} id={self.request_id}>"


class ProxyResponse:
    """
    The response head on its way back to the client (the body streams behind
    it).  `on_response` hooks may edit `status`, `reason` and `headers` in
    place, and append to `body_filters` to see or transform the body.  `body` is set only for responses the gateway made itself (plugin
    answers, errors); upstream bodies are streamed and are ``None`` here.
    """

    __slots__ = ("status", "reason", "headers", "body", "from_upstream", "body_filters", "prepared_fields")

    # Not keyword-only: the exchange relays every upstream answer positionally (keywords cost a lookup each).
    def __init__(
        self,
        status: int,
        headers: Optional[Headers] = None,
        reason: Optional[bytes] = None,
        body: Optional[bytes] = None,
        from_upstream: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.from_upstream = from_upstream
        #: Objects with ``write(data) -> bytes`` and ``finish() -> bytes``
        #: (and optionally ``abort()``) that every body chunk passes through,
        #: in order: compression, cache capture.  A filter that changes the
        #: length removes Content-Length when it adds itself.
        self.body_filters: Optional[List[Any]] = None
        #: Fields a layer wrote as ready header lines, not into `headers`, because no layer after it reads
        #: them (the rate limit's, `twistgate.policies.ratelimit.stage`): a one-write answer sends them as
        #: they are; every other way out spells them out first (`spell_out_fields`).
        self.prepared_fields = b""

    def spell_out_fields(self) -> None:
        """`prepared_fields` set into `headers`, for an answer that goes out from the fields (streamed, HTTP/2, twisted.web)."""
        if self.prepared_fields:
            fields_into(self.headers.raw, self.prepared_fields)
            self.prepared_fields = b""

    def __repr__(self) -> str:
        return f"<ProxyResponse {self.status} upstream={self.from_upstream}>"


@attrs.frozen(kw_only=True)
class Response:
    """
    A complete response a plugin returns to answer a request itself
    (short-circuiting the upstream) or to replace the upstream's response.
    """

    status: int = 200
    headers: Tuple[Tuple[bytes, bytes], ...] = attrs.field(default=(), converter=_header_pairs)
    body: bytes = attrs.field(default=b"", converter=_to_bytes)

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: HeaderInput = ()) -> "Response":
        """A JSON response; ``Content-Type`` is set for you."""
        pairs = _header_pairs(headers) + ((b"Content-Type", b"application/json"),)
        return cls(status=status, headers=pairs, body=json.dumps(data).encode("utf-8"))

    def to_proxy_response(self) -> ProxyResponse:
        headers = Headers()
        for name, value in self.headers:
            headers.addRawHeader(name, value)
        return ProxyResponse(status=self.status, headers=headers, body=self.body)


@attrs.frozen
class RouteInfo:
    """
    The route a request matched, as plugins see it (``on_request``'s ``route``).

    :ivar name: the route's ``name``.
    :ivar config: the route's whole validated configuration (`RouteConfig`);
        its ``plugins`` holds each plugin's own section.
    :ivar upstream: the name of the upstream group it forwards to (a
        ``split`` route's first arm; ``""`` for a route that answers itself
        with ``redirect`` or ``respond``).
    """

    name: str
    config: "RouteConfig"
    upstream: str
