"""
In-process demo backends, so that a first run answers at once.

The gateway's service starts ``Site(demo_resource(clock))`` on
``DemoConfig.endpoint`` (``tcp:5001:interface=127.0.0.1`` by default) when the
config has a ``demo:`` section; ``etc/gw.yaml`` routes ``/api/...`` to it.
Everything is JSON unless noted:

``GET /users``, ``/users/{id}``, ``/orders``, ``/orders/{id}``, ``/products``, ``/products/{id}``
    Small fixed data sets; an unknown id is a 404.
``POST /users``
    Echoes the JSON object it is sent with a fresh ``id`` (201); not stored.
    Invalid JSON is a 400.
``GET /health``
    ``{"status": "ok"}``.
``/echo`` and ``/echo/...`` (any method)
    What arrived: method, path, query, every header value, body length.
``GET /bytes/{n}``
    ``n`` bytes of ``application/octet-stream`` (at most :data:`MAX_BYTES`),
    streamed by a push producer that honours back-pressure.
``GET /slow/{ms}``
    Answers after ``ms`` milliseconds (at most :data:`MAX_SLOW_MS`) on the
    injected clock; the timer is cancelled if the client goes away.

Errors are ``{"error": code, "message": text}`` with a fitting status (404,
405 with ``Allow``, 400, 413), close to the gateway's own error bodies.
"""

from __future__ import annotations

import itertools
import json
from decimal import Decimal
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, cast
from urllib.parse import parse_qs

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

__all__ = [
    "MAX_BYTES",
    "MAX_JSON_BODY",
    "MAX_SLOW_MS",
    "ORDERS",
    "PRODUCTS",
    "USERS",
    "demo_resource",
    "pattern_bytes",
]

MAX_BYTES = 100 * 1024 * 1024
"""The largest ``/bytes/{n}``."""

MAX_SLOW_MS = 120_000
"""The longest ``/slow/{ms}``: beyond the gateway's default 60 s timeout, to show a 504."""

MAX_JSON_BODY = 1024 * 1024
"""The largest body ``POST /users`` reads (413 beyond)."""

Json = Dict[str, Any]

# --------------------------------------------------------------------------
# data sets (fixed; orders refer to users and products, totals are computed)

USERS: Tuple[Json, ...] = (
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "role": "admin"},
    {"id": 2, "name": "Alan Turing", "email": "alan@example.com", "role": "member"},
    {"id": 3, "name": "Grace Hopper", "email": "grace@example.com", "role": "member"},
)

_PRICES = {1: Decimal("49.90"), 2: Decimal("19.99"), 3: Decimal("229.00"), 4: Decimal("8.50")}

PRODUCTS: Tuple[Json, ...] = (
    {"id": 1, "name": "Mechanical keyboard", "price": float(_PRICES[1]), "currency": "EUR", "in_stock": True},
    {"id": 2, "name": "Wireless mouse", "price": float(_PRICES[2]), "currency": "EUR", "in_stock": True},
    {"id": 3, "name": "27-inch monitor", "price": float(_PRICES[3]), "currency": "EUR", "in_stock": False},
    {"id": 4, "name": "USB-C cable", "price": float(_PRICES[4]), "currency": "EUR", "in_stock": True},
)


def _order(order_id: int, user_id: int, status: str, lines: Sequence[Tuple[int, int]]) -> Json:
    total = sum((_PRICES[product] * quantity for product, quantity in lines), Decimal(0))
    return {
        "id": order_id,
        "user_id": user_id,
        "status": status,
        "items": [{"product_id": product, "quantity": quantity} for product, quantity in lines],
        "total": float(total),
        "currency": "EUR",
    }


ORDERS: Tuple[Json, ...] = (
    _order(1, 1, "shipped", [(1, 1), (2, 1)]),
    _order(2, 2, "paid", [(3, 2)]),
    _order(3, 1, "pending", [(4, 3), (2, 1)]),
)

# --------------------------------------------------------------------------
# responses


def _encode(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8") + b"\n"


def _respond(
    request: Request, status: int, body: Union[bytes, object], headers: Optional[Mapping[bytes, bytes]] = None
) -> bytes:
    """Set status and headers for a complete JSON body; return what render() returns."""
    data = body if isinstance(body, bytes) else _encode(body)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(data))
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    # For HEAD keep the real Content-Length but hand Twisted no body (it would log a warning).
    return b"" if request.method == b"HEAD" else data


def _error(
    request: Request, status: int, code: str, message: str, headers: Optional[Mapping[bytes, bytes]] = None
) -> bytes:
    return _respond(request, status, {"error": code, "message": message}, headers)


def _text(value: bytes) -> str:
    """Bytes off the wire as text, losslessly (HTTP header bytes are latin-1)."""
    return value.decode("latin-1")


def _number(segment: bytes) -> Optional[int]:
    """A plain non-negative decimal path segment, or None."""
    return int(segment) if segment.isdigit() and len(segment) <= 12 else None


_READ_METHODS = (b"GET", b"HEAD")

_Endpoint = Callable[[Request], Union[bytes, int]]

# --------------------------------------------------------------------------
# /bytes/{n}

_PATTERN = b"0123456789abcdef"
_CHUNK = _PATTERN * (64 * 1024 // len(_PATTERN))


def pattern_bytes(n: int) -> bytes:
    """What ``/bytes/{n}`` sends (for tests): ``0123456789abcdef`` repeated, cut at ``n``."""
    return (_PATTERN * (n // len(_PATTERN) + 1))[:n]


@implementer(IPushProducer)
class _PatternProducer:
    """
    Writes ``size`` pattern bytes to a request in 64 KiB chunks for as long as
    the transport does not pause it; then unregisters and finishes.  Never
    holds more than one chunk.  A push producer on purpose: Twisted drives a
    pull producer through the global cooperator, which would tie this module
    to the global reactor.
    """

    def __init__(self, request: Request, size: int) -> None:
        self._request = request
        self._remaining = size
        self._paused = False
        self._stopped = False
        self._writing = False

    def start(self) -> None:
        self._request.registerProducer(self, True)
        self._request.notifyFinish().addErrback(self._client_gone)
        self._write_until_paused()

    def _client_gone(self, reason: Failure) -> None:
        self._stopped = True

    def _write_until_paused(self) -> None:
        if self._writing:  # resumeProducing() called from inside our own write()
            return
        self._writing = True
        try:
            while self._remaining > 0 and not (self._paused or self._stopped):
                size = min(self._remaining, len(_CHUNK))
                self._remaining -= size
                self._request.write(_CHUNK if size == len(_CHUNK) else _CHUNK[:size])
        finally:
            self._writing = False
        if self._remaining == 0 and not self._stopped:
            self._stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._write_until_paused()

    def stopProducing(self) -> None:
        self._stopped = True


# --------------------------------------------------------------------------
# the resource


class _DemoBackend(Resource):
    """
    One leaf resource that dispatches on the path segments: the whole API is
    the table in :meth:`_route`, which reads more easily than a tree of
    children.
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self._clock = clock
        self._user_ids: Iterator[int] = itertools.count(len(USERS) + 1)
        self._collections: Dict[bytes, Tuple[str, Tuple[Json, ...]]] = {
            b"users": ("user", USERS),
            b"orders": ("order", ORDERS),
            b"products": ("product", PRODUCTS),
        }
        # Pre-encoded bodies: the data never changes.
        self._listings = {name: _encode({name.decode(): list(rows)}) for name, (_, rows) in self._collections.items()}
        self._items = {
            (name, row["id"]): _encode(row) for name, (_, rows) in self._collections.items() for row in rows
        }

    def render(self, request: IRequest) -> Union[bytes, int]:
        req = cast(Request, request)
        trimmed = req.path.strip(b"/")
        endpoint, allowed = self._route(trimmed.split(b"/") if trimmed else [])
        if allowed is not None and req.method not in allowed:
            message = f"{_text(req.method)} is not allowed here"
            return _error(req, 405, "method_not_allowed", message, {b"allow": b", ".join(allowed)})
        return endpoint(req)

    def _route(self, segments: List[bytes]) -> Tuple[_Endpoint, Optional[Sequence[bytes]]]:
        """The endpoint for a path, and the methods it allows (None: any)."""
        head = segments[0] if segments else b""
        if head == b"echo":
            return self._echo, None
        if not segments:
            return self._index, _READ_METHODS
        if segments == [b"health"]:
            return self._health, _READ_METHODS
        if head in self._collections and len(segments) == 1:
            if head == b"users":
                return self._users, (b"GET", b"HEAD", b"POST")
            return partial(self._listing, head), _READ_METHODS
        if head in self._collections and len(segments) == 2:
            return partial(self._item, head, segments[1]), _READ_METHODS
        if head == b"bytes" and len(segments) == 2:
            return partial(self._bytes, segments[1]), _READ_METHODS
        if head == b"slow" and len(segments) == 2:
            return partial(self._slow, segments[1]), _READ_METHODS
        return self._not_found, None

    # -- endpoints

    def _index(self, request: Request) -> bytes:
        return _respond(
            request,
            200,
            {
                "service": "twistgate demo backend",
                "endpoints": [
                    "GET /users",
                    "GET /users/{id}",
                    "POST /users",
                    "GET /orders",
                    "GET /orders/{id}",
                    "GET /products",
                    "GET /products/{id}",
                    "GET /health",
                    "ANY /echo/...",
                    "GET /bytes/{n}",
                    "GET /slow/{ms}",
                ],
            },
        )

    def _not_found(self, request: Request) -> bytes:
        return _error(request, 404, "not_found", f"no demo endpoint at {_text(request.path)}; see GET /")

    def _health(self, request: Request) -> bytes:
        return _respond(request, 200, {"status": "ok"})

    def _users(self, request: Request) -> bytes:
        if request.method == b"POST":
            return self._create_user(request)
        return self._listing(b"users", request)

    def _listing(self, name: bytes, request: Request) -> bytes:
        return _respond(request, 200, self._listings[name])

    def _item(self, name: bytes, segment: bytes, request: Request) -> bytes:
        item_id = _number(segment)
        body = self._items.get((name, item_id)) if item_id is not None else None
        if body is None:
            kind = self._collections[name][0]
            return _error(request, 404, "not_found", f"no {kind} with id {_text(segment)}")
        return _respond(request, 200, body)

    def _create_user(self, request: Request) -> bytes:
        raw = request.content.read(MAX_JSON_BODY + 1)
        if len(raw) > MAX_JSON_BODY:
            return _error(request, 413, "payload_too_large", f"the body must be at most {MAX_JSON_BODY} bytes")
        try:
            fields = json.loads(raw)
        except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
            return _error(request, 400, "invalid_json", f"the body is not valid JSON: {e}")
        if not isinstance(fields, dict):
            return _error(request, 400, "invalid_user", "the body must be a JSON object")
        return _respond(request, 201, {**fields, "id": next(self._user_ids)})

    def _echo(self, request: Request) -> bytes:
        content = request.content
        content.seek(0, 2)
        body_length = content.tell()
        content.seek(0)
        _, _, query = request.uri.partition(b"?")
        headers: Dict[str, List[str]] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers.setdefault(_text(name).lower(), []).extend(_text(v) for v in values)
        peer = request.getClientAddress()
        return _respond(
            request,
            200,
            {
                "method": _text(request.method),
                "path": _text(request.path),
                "query": parse_qs(query.decode("utf-8", "replace"), keep_blank_values=True),
                "query_string": _text(query),
                "http_version": _text(request.clientproto),
                "headers": headers,
                "body_length": body_length,
                "client": peer.host if isinstance(peer, (IPv4Address, IPv6Address)) else None,
            },
        )

    def _bytes(self, segment: bytes, request: Request) -> Union[bytes, int]:
        size = _number(segment)
        if size is None or size > MAX_BYTES:
            return _error(request, 400, "bad_size", f"n must be an integer from 0 to {MAX_BYTES}")
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % size)
        if size == 0 or request.method == b"HEAD":
            return b""
        _PatternProducer(request, size).start()
        return NOT_DONE_YET

    def _slow(self, segment: bytes, request: Request) -> Union[bytes, int]:
        delay_ms = _number(segment)
        if delay_ms is None or delay_ms > MAX_SLOW_MS:
            return _error(request, 400, "bad_delay", f"ms must be an integer from 0 to {MAX_SLOW_MS}")
        body = _respond(request, 200, {"delayed_ms": delay_ms})

        def answer() -> None:
            request.write(body)
            request.finish()

        call: IDelayedCall = self._clock.callLater(delay_ms / 1000.0, answer)

        def client_gone(reason: Failure) -> None:
            if call.active():
                call.cancel()

        request.notifyFinish().addErrback(client_gone)
        return NOT_DONE_YET


def demo_resource(clock: IReactorTime) -> IResource:
    """
    The demo API as one resource, for ``Site(demo_resource(clock))``.

    :param clock: the reactor's time, used by ``/slow/{ms}`` only (a
        :class:`twisted.internet.task.Clock` in tests).
    :return: a leaf resource serving every path in this module's docstring.
    """
    return _DemoBackend(clock)
