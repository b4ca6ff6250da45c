"""
The background revalidation of `stale-while-revalidate` (RFC 5861 §3): a
fetch outside any client's exchange.  It goes through the route's upstream
group like a forwarded request (same targets, pool and read timeout), is
bounded by the route timeout, reads at most `max_object_size` bytes of
body, and runs once per variant at a time.
"""

from __future__ import annotations

from typing import Any, Hashable, List, Optional, Set, Tuple

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twistgate.headers import Headers

from twistgate.policies.cache.conditional import use_validators
from twistgate.policies.cache.config import RouteCacheConfig
from twistgate.policies.cache.entry import NO_TARGETS, Entry, Targets
from twistgate.policies.cache.keys import UriKey, VariantKey, variant_key, vary_names
from twistgate.policies.cache.rules import refusal
from twistgate.policies.cache.store import MemoryStore
from twistgate.messages import ProxyRequest
from twistgate.policies.cache.targeted import headers_lookup, policy
from twistgate.http import strip_hop_by_hop
from twistgate.upstream.group import UpstreamCall

_log = Logger()
_ERROR_STATUSES = frozenset({500, 502, 503, 504})


class _Collect(Protocol):
    def __init__(self, limit: int, done: "Deferred[Optional[bytes]]") -> None:
        self.limit = limit
        self.done = done
        self.chunks: List[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.chunks = []
            self.transport.stopProducing()
        else:
            self.chunks.append(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        whole = reason.check(ResponseDone, PotentialDataLoss) and self.size <= self.limit
        self.done.callback(b"".join(self.chunks) if whole else None)


def fetch(
    upstream: Any, request: ProxyRequest, clock: Any, timeout: float, limit: int, preserve_host: bool = False
) -> "Deferred[Tuple[Any, Optional[bytes]]]":
    """Send `request`; fire with (the upstream response, its body or None if incomplete/too big)."""
    forwarded = upstream.forward(request, None, UpstreamCall(), preserve_host)
    reading: List[_Collect] = []

    def expire() -> None:
        if not reading:
            forwarded.cancel()
        elif reading[0].transport is not None:
            reading[0].transport.stopProducing()  # the body is late: give up on it

    timer = clock.callLater(timeout, expire)

    def got(response: Any) -> "Deferred[Tuple[Any, Optional[bytes]]]":
        strip_hop_by_hop(response.headers.raw)
        body: Deferred[Optional[bytes]] = Deferred()
        reading.append(_Collect(limit, body))
        response.deliverBody(reading[0])
        return body.addCallback(lambda data: (response, data))

    def settled(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return forwarded.addCallback(got).addBoth(settled)


@attrs.frozen
class RefreshPath:
    """How a route's revalidations reach its upstream: the group, Host handling, the route's timeout."""

    upstream: Any  # twistgate.upstream.group.Upstream
    preserve_host: bool
    timeout: float


class BackgroundRefresh:
    """Refreshes stale entries for one route, at most one fetch per variant at a time."""

    def __init__(
        self,
        store: MemoryStore,
        config: RouteCacheConfig,
        clock: Any,
        running: Set[Hashable],
        path: Optional[RefreshPath],
        targets: Targets = NO_TARGETS,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.running = running  # shared by every route of the gateway
        self.path = path
        self.targets = targets

    def start(self, request: ProxyRequest, key: UriKey, variant: VariantKey, extra: Tuple[Any, ...], entry: Entry) -> None:
        path = self.path
        flight = (key, variant)
        if path is None or flight in self.running:
            return
        self.running.add(flight)
        headers = Headers({name: list(lines) for name, lines in request.headers.getAllRawHeaders()})
        for name in (b"Range", b"If-Range"):
            headers.removeHeader(name)
        use_validators(headers, entry)
        preserve_host = path.preserve_host
        if preserve_host:
            headers.setRawHeaders(b"Host", [request.host.encode("latin-1")])
        copy = ProxyRequest(
            method=b"GET",
            path=request.path,
            query=request.query,
            headers=headers,
            host=request.host,
            client_ip=request.client_ip,
            peer_ip=request.peer_ip,
            scheme=request.scheme,
            request_id=request.request_id,
            params=request.params,
            consumer=request.consumer,
            route=request.route,
        )
        sent = self.clock.seconds()
        d = fetch(path.upstream, copy, self.clock, path.timeout, self.config.max_object_size, preserve_host)
        d.addCallback(self._done, key, variant, extra, entry, copy, sent)
        d.addErrback(
            lambda f: _log.info("background revalidation of {path} failed: {reason}", path=request.path, reason=f.getErrorMessage())
        )
        d.addBoth(lambda _: self.running.discard(flight))

    def _done(
        self,
        result: Tuple[Any, Optional[bytes]],
        key: UriKey,
        variant: VariantKey,
        extra: Tuple[Any, ...],
        entry: Entry,
        sent_request: ProxyRequest,
        sent: float,
    ) -> None:
        response, body = result
        now = self.clock.seconds()
        headers = response.headers
        config = self.config
        if response.code == 304:
            self.store.put(key, variant, entry.refreshed_by(headers, sent, now, config.ttl_for(entry.status)), config.max_variants)
            return
        if response.code in _ERROR_STATUSES:
            return  # keep serving the stale one for as long as it is allowed
        directives, targeted = policy(headers_lookup(headers), self.targets[0])
        vary = vary_names(headers.getRawHeaders(b"Vary"))
        reason = refusal(
            response.code,
            directives,
            has_expires=headers.hasHeader(b"Expires") and not targeted,
            authorized=sent_request.headers.hasHeader(b"Authorization") or (
                sent_request.consumer is not None and not config.key_consumer
            ),
            vary=vary,
            listed=config.lists(response.code),
        )
        if reason is not None or body is None or vary is None:
            self.store.remove(key, variant, entry)  # outdated, and nothing to replace it with
            return
        fresh = Entry.from_response(
            response.code, response.phrase, headers, directives, body,
            request_time=sent, response_time=now, default_ttl=config.ttl_for(response.code), vary=vary,
            listed=config.lists(response.code), targets=self.targets,
        )
        self.store.put(key, variant_key(sent_request.headers, vary, extra), fresh, config.max_variants)
