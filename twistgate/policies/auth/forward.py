"""
The ``forward`` authenticator: an external service decides (nginx's
``auth_request``, Traefik's ForwardAuth, Envoy's ext_authz over HTTP).

For every request it sends one ``GET`` to ``url`` carrying the configured
``forward_headers`` (credentials: ``Authorization``, ``Cookie``...) and
``X-Forwarded-Method``, ``-Uri`` (as the client sent it), ``-Host``,
``-Proto`` and ``-For`` (as the gateway forwards them).  Then:

* a **2xx** answer lets the request through: the ``copy_headers`` of that
  answer are set on the upstream request (the client's own copies are
  always removed first, on every route, as for every identity header), and
  ``consumer_header`` names the consumer;
* **any other answer** goes back to the client as it is: status, body and
  headers (``WWW-Authenticate``, ``Location`` for a login redirect,
  ``Set-Cookie``...), hop-by-hop and framing fields excepted;
* **no answer** (connection refused or reset, ``timeout``, a body too long
  to pass on): ``503 auth_unavailable``, never a pass.

Redirects are never followed (a 302 is the service's answer to the client),
and no cookie jar is kept between requests.  With ``cache_ttl`` a 2xx is
remembered for that long, keyed by the values of ``forward_headers`` only:
use it when the service decides by the credentials alone, not by the path.
"""

from __future__ import annotations

import http.cookiejar
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from treq.client import HTTPClient
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from twistgate.config._node import Fields, Node
from twistgate.http import HOP_BY_HOP
from twistgate.messages import Response
from twistgate.policies.auth.base import Answered, BackendUnavailable, Identity, header_value, is_token
from twistgate.policies.auth.config import ForwardConfig
from twistgate.policies.auth.parse import header_name, jwks_url as http_url, non_negative

__all__ = ["ForwardAuthenticator", "forward_client", "parse_forward"]

#: The most body of a refusal passed on to the client (login pages are small).
MAX_ANSWER_BODY = 256 * 1024
#: Entries the positive cache keeps at most.
CACHE_SIZE = 10_000

# Never passed on from the service's answer: the gateway frames its own.
_DROP = frozenset(
    name.lower()
    for name in (
        b"Connection", b"Keep-Alive", b"Proxy-Connection", b"Transfer-Encoding", b"Te", b"Trailer", b"Upgrade",
        b"Content-Length", b"Content-Encoding", b"Date", b"Server",
    )
)  # fmt: skip


class _NoCookies(http.cookiejar.CookieJar):
    """A jar that keeps nothing: one client's cookies must never reach another's subrequest."""

    def set_cookie(self, cookie: Any) -> None:
        pass

    def extract_cookies(self, response: Any, request: Any) -> None:
        pass


def forward_client(agent: Any) -> HTTPClient:
    """A treq client over the gateway's side `Agent`, without a cookie jar of its own."""
    return HTTPClient(agent, cookiejar=_NoCookies())


class _Collect(Protocol):
    """Reads a body up to `limit` bytes; beyond it the connection is dropped and the read fails."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: List[bytes] = []
        self.size = 0
        self.done: Deferred[Optional[bytes]] = Deferred(lambda _: self._stop())

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self._stop()
            if not self.done.called:
                self.done.callback(None)  # too long to pass on
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(b"".join(self.chunks))

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class ForwardAuthenticator:
    kind = "forward"

    def __init__(self, config: ForwardConfig, client: Any, clock: Any) -> None:
        self.config = config
        self.name = config.name
        self.client = client
        self.clock = clock
        self.url = config.url.encode("ascii")
        self.forward = tuple(name.encode("ascii") for name in config.forward_headers)
        self.copy = tuple(name.encode("ascii") for name in config.copy_headers)
        self.consumer = config.consumer_header.encode("ascii") if config.consumer_header else None
        self.cache: "OrderedDict[Tuple[Any, ...], Tuple[float, Identity]]" = OrderedDict()

    # -- the authenticator interface ------------------------------------------

    def credentials(self, request: Any) -> Tuple[Any, ...]:
        """What the service sees of the client's credentials (never None: the service always decides)."""
        raw = request.headers.raw
        return tuple(tuple(raw.get(name) or ()) for name in self.forward)

    def verify(self, request: Any, credentials: Tuple[Any, ...]) -> Any:
        ttl = self.config.cache_ttl
        if ttl:
            hit = self.cache.get(credentials)
            if hit is not None and hit[0] > self.clock.seconds():
                return hit[1]
        headers = self._subrequest_headers(request)
        d = self.client.request("GET", self.url, headers=headers, allow_redirects=False, unbuffered=True)
        timer = self.clock.callLater(self.config.timeout, d.cancel)
        d.addCallback(self._answered, timer)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure) and not result.check(Answered):
                raise BackendUnavailable(f"the authorization service did not answer: {result.getErrorMessage()}")
            return result

        d.addBoth(settled)
        if ttl:
            d.addCallback(self._remember, credentials)
        return d

    def strip(self, request: Any) -> None:
        """
        The forwarded headers go upstream unchanged (remove them with
        ``headers:`` if needed), except ``Proxy-Authorization``: credentials
        for a proxy, which the gateway has just used.
        """
        if any(name.lower() == b"proxy-authorization" for name in self.forward):
            request.headers.removeHeader(b"Proxy-Authorization")

    def challenge(self, error: Any) -> Optional[bytes]:
        return None  # the service's own answer carries its challenge

    # -- the subrequest ----------------------------------------------------------

    def _subrequest_headers(self, request: Any) -> Any:
        raw = request.headers.raw
        headers = {}
        for name in self.forward:
            values = raw.get(name)
            if values:
                headers[name] = list(values)
        headers[b"X-Forwarded-Method"] = [request.method]
        headers[b"X-Forwarded-Uri"] = [request.uri or request.target]
        for name in (b"X-Forwarded-Host", b"X-Forwarded-Proto", b"X-Forwarded-For"):
            values = raw.get(name)
            if values:
                headers[name] = [b", ".join(values)]
        if b"X-Forwarded-Host" not in headers and request.host:
            headers[b"X-Forwarded-Host"] = [request.host.encode("idna")]
        headers.setdefault(b"X-Forwarded-Proto", [request.scheme.encode("ascii")])
        headers.setdefault(b"X-Forwarded-For", [request.client_ip.encode("ascii")])
        headers[b"X-Request-Id"] = [request.request_id.encode("ascii")]
        return headers

    def _answered(self, response: Any, timer: Any) -> Any:
        collect = _Collect(MAX_ANSWER_BODY)
        response.deliverBody(collect)
        if 200 <= response.code < 300:
            return collect.done.addCallback(lambda _: self._identity(response.headers))
        return collect.done.addCallback(self._refusal, response)

    def _identity(self, headers: Any) -> Identity:
        found: List[Tuple[bytes, bytes]] = []
        for name in self.copy:
            for value in headers.getRawHeaders(name) or ():
                if header_value(value.decode("latin-1")) is not None:
                    found.append((name, value))
        consumer = None
        if self.consumer is not None:
            values = headers.getRawHeaders(self.consumer)
            consumer = values[0].decode("utf-8", "replace") if values else None
        return Identity(
            consumer=consumer or "",
            authenticator=self.name,
            kind=self.kind,
            details={"authenticator": self.name, "type": self.kind, "consumer": consumer},
            headers=tuple(found),
        )

    def _refusal(self, body: Optional[bytes], response: Any) -> None:
        if body is None:
            raise BackendUnavailable("the authorization service's answer is too long to pass on")
        pairs = [
            (name, value)
            for name, values in response.headers.getAllRawHeaders()
            if name.lower() not in _DROP
            for value in values
        ]
        raise Answered(Response(status=response.code, headers=pairs, body=body), f"answered {response.code}")

    def _remember(self, identity: Identity, credentials: Tuple[Any, ...]) -> Identity:
        cache = self.cache
        cache[credentials] = (self.clock.seconds() + self.config.cache_ttl, identity)
        cache.move_to_end(credentials)
        while len(cache) > CACHE_SIZE:
            cache.popitem(last=False)
        return identity


# -- configuration ----------------------------------------------------------------


def parse_forward(fields: Fields, common: Dict[str, Any]) -> Optional[ForwardConfig]:
    """``type: forward``: its own keys (the common ones are read by `twistgate.policies.auth.parse`)."""
    owner = fields.owner
    if "url" not in fields:
        owner.issues.add(owner.location(at_key=True).line, f"{owner.path}.url", "required key 'url' is missing")
        return None
    url = fields.read("url", http_url, None)
    forward = fields.read("forward_headers", _forwarded_names, ("Authorization", "Cookie"))
    copy = fields.read("copy_headers", _header_names, ())
    consumer = fields.read("consumer_header", header_name, None)
    if url is None:
        return None
    return ForwardConfig(
        url=url,
        forward_headers=forward,
        copy_headers=copy,
        consumer_header=consumer,
        timeout=fields.read("timeout", Node.duration, 2.0),
        cache_ttl=fields.read("cache_ttl", non_negative, 0.0),
        **common,
    )


# Sent to the authorization service by the gateway itself, or framing.
_SET_BY_GATEWAY = {name.lower() for name in HOP_BY_HOP} | {
    b"host", b"content-length", b"x-request-id", b"x-forwarded-method", b"x-forwarded-uri",
    b"x-forwarded-host", b"x-forwarded-proto", b"x-forwarded-for",
}  # fmt: skip


def _forwarded_names(node: Node) -> Optional[Tuple[str, ...]]:
    """Request headers passed to the authorization service (credentials allowed)."""
    found: List[str] = []
    for item in node.sequence() or ():
        text = item.string()
        if text is None:
            return None
        if not is_token(text):
            item.issue(f"{text!r} is not a valid HTTP header name")
            return None
        if text.lower().encode("ascii") in _SET_BY_GATEWAY:
            item.issue(f"{text!r} is sent by the gateway itself")
            return None
        found.append(text)
    return tuple(found)


def _header_names(node: Node) -> Optional[Tuple[str, ...]]:
    """Identity headers: never one the gateway manages (they are removed from every client request)."""
    found: List[str] = []
    for item in node.sequence() or ():
        name = header_name(item)
        if name is None:
            return None
        found.append(name)
    return tuple(found)
