"""
The cache stage: a shared HTTP cache (RFC 9111) in front of one route.

``on_request`` answers from the store when a stored response may be used
(fresh, or stale within what the origin and client allow), collapses
concurrent misses of one resource into one upstream fetch, and turns a
stale entry with validators into a conditional request.  ``on_response``
applies a 304 to the stored entry, invalidates after unsafe methods, and
records storable responses with a body filter as they stream to the client.
``on_error`` serves stale responses the origin allowed for errors.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from twisted.python.failure import Failure

from twistgate.config.model import ConfigIssue, RouteConfig
from twistgate.errors import GatewayError
from twistgate.headers import Headers
from twistgate.messages import ProxyRequest, ProxyResponse, Response
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import Policy
from twistgate.policies.cache import respond
from twistgate.policies.cache.capture import Capture
from twistgate.policies.cache.conditional import byte_range, not_modified, restore, same_representation, use_validators
from twistgate.policies.cache.config import CacheStoreConfig, RouteCacheConfig, parse_route
from twistgate.policies.cache.context import CacheContext
from twistgate.policies.cache.directives import NO_REQUEST_DIRECTIVES, request_directives
from twistgate.policies.cache.entry import Entry
from twistgate.policies.cache.invalidation import invalidate_after
from twistgate.policies.cache.keys import field_value, uri_key, variant_key
from twistgate.policies.cache.refresh import BackgroundRefresh, RefreshPath
from twistgate.policies.cache.rules import SAFE_METHODS, fresh_for, stale_if_error, stale_while_revalidate
from twistgate.policies.cache.service import CONTEXT, CacheService
from twistgate.policies.cache.status import BYPASS, HIT, MISS, REVALIDATED, STALE, cache_status
from twistgate.policies.cache.storing import entry_to_store

_PRECONDITIONS = (b"If-Match", b"If-Unmodified-Since")
_ERROR_STATUSES = frozenset({500, 502, 503, 504})


class NotCached(GatewayError):
    """`Cache-Control: only-if-cached` and nothing usable is stored (RFC 9111 §5.2.1.7)."""

    status, code, default_message = 504, "not_cached", "The response is not in the cache."


class CacheStage:
    """The per-route cache; `service` is the gateway-wide store."""

    def __init__(
        self,
        config: RouteCacheConfig,
        upstream: str,
        service: CacheService,
        clock: Any,
        refresh_through: Any = None,
    ) -> None:
        """
        :param upstream: the route's upstream name (part of the cache key).
        :param refresh_through: a `twistgate.upstream.refresh.RefreshPath`
            (how background revalidations reach the upstream), or None: stale
            entries are then revalidated in the foreground only.
        """
        self.config = config
        self.upstream = upstream
        self.service = service
        self.store = service.store
        self.clock = clock
        self.name = service.status_name
        self.key_headers = tuple(name.decode("ascii") for name in config.key_headers)
        self.targets = (service.targets, service.private_fields)
        self.refresh = BackgroundRefresh(service.store, config, clock, service.refreshing, refresh_through, self.targets)

    # -- request ------------------------------------------------------------

    @hookimpl
    def on_request(self, request: ProxyRequest, route: Any) -> Any:
        method = request.method
        if method not in SAFE_METHODS:
            return self._pass(request, "invalidate", "method")
        if method not in self.config.methods:
            return self._pass(request, "bypass", "method")
        headers = request.headers
        if request.state.get("request_body") or request.state.get("upgrade"):
            return self._pass(request, "bypass", "bypass")  # a body we cannot key; a WebSocket handshake
        cc = headers.getRawHeaders(b"Cache-Control") if self.config.client_directives else None
        directives = request_directives(cc) if cc else NO_REQUEST_DIRECTIVES
        if directives.no_store:
            return self._pass(request, "bypass", "request")
        if any(headers.hasHeader(name) for name in _PRECONDITIONS):
            return self._pass(request, "bypass", "bypass")
        context = CacheContext("cache", directives)
        context.authorized = headers.hasHeader(b"Authorization") or (
            request.consumer is not None and not self.config.key_consumer
        )
        context.key = uri_key(self.upstream, request)
        context.extra = self._extra(request)
        request.state[CONTEXT] = context
        collapse = self.config.collapse and method == b"GET" and not headers.hasHeader(b"Range")
        return self._lookup(request, route, context, collapse, collapsed=False)

    def _lookup(self, request: ProxyRequest, route: Any, context: CacheContext, collapse: bool, collapsed: bool) -> Any:
        now = self.clock.seconds()
        assert context.key is not None
        known, entry, context.variant = self.store.lookup(context.key, request.headers, context.extra)
        if entry is not None:
            if fresh_for(entry, context.directives, now):
                return self._serve(request, context, entry, now, hit=True, collapsed=collapsed)
            if stale_while_revalidate(entry, context.directives, now, self.config.stale_while_revalidate):
                self.refresh.start(request, context.key, context.variant, context.extra, entry)
                return self._serve(request, context, entry, now, hit=True, detail="stale-while-revalidate")
            context.stale = entry
            context.fwd = "request" if entry.ttl(now) > 0 and not entry.directives.no_cache else "stale"
        else:
            context.fwd = "vary-miss" if known else "uri-miss"
        if context.directives.only_if_cached:
            raise NotCached()
        if collapse:
            flight = (context.key, context.extra)
            holder = self.service.leases.holder(flight)
            if holder is not None:
                wait = holder.wait(self.clock, self.config.collapse_timeout)
                return wait.addCallback(lambda _: self._lookup(request, route, context, collapse=False, collapsed=True))
            if context.stale is not None or not _conditional(request.headers):
                # (a client's own conditional miss would likely end in a 304 nobody else can use)
                context.lease = self.service.leases.acquire(flight)
        # What Vary will select on: the fields as the client sent them, before
        # forwarding adds Host and revalidation swaps the conditionals.
        context.fields = Headers(dict(request.headers.getAllRawHeaders()))
        if context.stale is not None and context.stale.has_validator:
            context.client_conditionals = use_validators(request.headers, context.stale)
            context.revalidating = True
        context.request_time = now
        return None

    def _pass(self, request: ProxyRequest, mode: str, fwd: str) -> None:
        context = CacheContext(mode)
        context.fwd = fwd
        request.state[CONTEXT] = context
        self._outcome(request, BYPASS)
        return None

    def _extra(self, request: ProxyRequest) -> Tuple[Optional[str], ...]:
        extra = tuple(field_value(request.headers, name) for name in self.key_headers)
        if self.config.key_consumer:
            extra += (request.consumer,)
        return extra

    def _restore_conditionals(self, headers: Headers, context: CacheContext) -> None:
        if context.client_conditionals is not None:
            restore(headers, context.client_conditionals)

    # -- answering from the store ---------------------------------------------

    def _serve(
        self,
        request: ProxyRequest,
        context: CacheContext,
        entry: Entry,
        now: float,
        *,
        hit: bool = False,
        fwd: Optional[str] = None,
        fwd_status: Optional[int] = None,
        collapsed: bool = False,
        detail: Optional[str] = None,
        outcome: Optional[str] = None,
    ) -> Response:
        context.served = True
        ttl = entry.ttl(now)
        if outcome is None:
            outcome = HIT if ttl > 0 and detail is None else STALE
        self._outcome(request, outcome)
        status = cache_status(
            self.name, hit=hit, fwd=fwd, fwd_status=fwd_status, ttl=ttl, collapsed=collapsed, detail=detail
        )
        head = request.method == b"HEAD"
        if not_modified(request.headers, entry, now):
            return respond.not_modified(entry, now, status)
        if request.headers.hasHeader(b"Range"):
            span = byte_range(request.headers, entry, now)
            if span is not None:
                return respond.partial(entry, now, status, span[0], span[1], head)
        return respond.whole(entry, now, status, head)

    def _outcome(self, request: ProxyRequest, outcome: str) -> None:
        request.state["cache"] = outcome
        self.service.count(outcome)

    # -- response -------------------------------------------------------------

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> Optional[Response]:
        answer = self._on_response(request, response)
        if response.from_upstream:
            for name in self.targets[1]:  # addressed to this gateway: read above, never passed on
                response.headers.removeHeader(name)
        return answer

    def _on_response(self, request: ProxyRequest, response: ProxyResponse) -> Optional[Response]:
        context = request.state.get(CONTEXT)
        if context is None or context.served:
            return None  # not ours, or our own answer passing through
        if context.mode == "invalidate":
            if response.from_upstream:
                invalidate_after(self.store, self.upstream, request, response)
            self._tag(response, fwd="method")
            return None
        if context.mode == "bypass":
            self._tag(response, fwd=context.fwd)
            return None
        if not response.from_upstream:
            self._release(context)
            return None
        now = self.clock.seconds()
        status = response.status
        stale = context.stale
        if stale is not None and status == 304 and context.revalidating:
            return self._revalidated(request, context, response, stale, now)
        if stale is not None and status in _ERROR_STATUSES and self._may_serve_stale_on_error(context, stale, now):
            self._release(context)
            self._restore_conditionals(request.headers, context)
            return self._serve(request, context, stale, now, fwd="stale", fwd_status=status, detail="stale-if-error")
        if request.method == b"HEAD":
            self._head_update(context, response, now)
            return self._forwarded(request, context, response, None)
        if status == 304 or (status == 206 and request.headers.hasHeader(b"Range")):
            return self._forwarded(request, context, response, None)  # the client's own conditional / range
        return self._store_later(request, context, response, now)

    def _store_later(self, request: ProxyRequest, context: CacheContext, response: ProxyResponse, now: float) -> None:
        entry, reason, expected = entry_to_store(
            response, self.config, self.targets,
            authorized=context.authorized, request_time=context.request_time, now=now,
        )  # fmt: skip
        if entry is None:
            return self._forwarded(request, context, response, reason)
        key, variant = context.key, variant_key(context.fields or request.headers, entry.vary, context.extra)
        assert key is not None
        capture = Capture(
            entry,
            self.config.max_object_size,
            expected,
            lambda stored: self.store.put(key, variant, stored, self.config.max_variants),
            lambda: self._release(context),
        )
        if response.body_filters is None:
            response.body_filters = []
        response.body_filters.append(capture)
        self._outcome(request, MISS)
        self._tag(response, fwd=context.fwd, fwd_status=response.status, stored=True)
        return None

    def _forwarded(self, request: ProxyRequest, context: CacheContext, response: ProxyResponse, detail: Optional[str]) -> None:
        self._release(context)
        self._outcome(request, MISS)
        self._tag(response, fwd=context.fwd, fwd_status=response.status, detail=detail)
        return None

    def _revalidated(
        self, request: ProxyRequest, context: CacheContext, response: ProxyResponse, stale: Entry, now: float
    ) -> Response:
        """RFC 9111 §4.3.3-4: a 304 freshens the stored response, which then answers."""
        fresh = stale.refreshed_by(response.headers, context.request_time, now, self.config.ttl_for(stale.status))
        assert context.key is not None
        if fresh.directives.no_store or fresh.directives.private:
            self.store.invalidate(context.key)
        else:
            self.store.put(context.key, context.variant, fresh, self.config.max_variants)
        self._release(context)
        self._restore_conditionals(request.headers, context)
        return self._serve(request, context, fresh, now, fwd="stale", fwd_status=304, outcome=REVALIDATED)

    def _head_update(self, context: CacheContext, response: ProxyResponse, now: float) -> None:
        """RFC 9111 §4.3.5: a 200 to HEAD freshens a matching stored GET response, or retires it."""
        stale = context.stale
        if stale is None or response.status != 200 or context.key is None:
            return
        if not same_representation(response.headers, stale):
            self.store.invalidate(context.key)
            return
        fresh = stale.refreshed_by(response.headers, context.request_time, now, self.config.ttl_for(stale.status))
        self.store.put(context.key, context.variant, fresh, self.config.max_variants)

    def _tag(self, response: ProxyResponse, **status: Any) -> None:
        response.headers.addRawHeader(b"Cache-Status", cache_status(self.name, **status))

    def _release(self, context: CacheContext) -> None:
        if context.lease is not None:
            context.lease.release()

    # -- errors ---------------------------------------------------------------

    @hookimpl
    def on_error(self, request: ProxyRequest, failure: Failure) -> Optional[Response]:
        context = request.state.get(CONTEXT)
        if context is None or context.served or context.mode != "cache":
            return None
        self._release(context)
        stale = context.stale
        now = self.clock.seconds()
        upstream_failed = failure.check(GatewayError) and failure.value.status in _ERROR_STATUSES
        if stale is None or not upstream_failed or not self._may_serve_stale_on_error(context, stale, now):
            self._outcome(request, MISS)
            return None
        self._restore_conditionals(request.headers, context)
        return self._serve(request, context, stale, now, fwd="stale", detail="stale-if-error")

    def _may_serve_stale_on_error(self, context: CacheContext, stale: Entry, now: float) -> bool:
        return stale_if_error(stale, context.directives, now, self.config.stale_if_error)


def _conditional(headers: Headers) -> bool:
    return headers.hasHeader(b"If-None-Match") or headers.hasHeader(b"If-Modified-Since")


def _build(route: RouteConfig, services: Any) -> CacheStage:
    timeout = route.timeout if route.timeout is not None else services.config.limits.request_timeout
    path = RefreshPath(services.upstreams[route.upstream], route.preserve_host, timeout)
    return CacheStage(route.policies["cache"], route.upstream, services.cache, services.clock, path)


def _validate(route: RouteConfig, config: Any) -> List[ConfigIssue]:
    section = route.policies["cache"]
    if not route.upstream:
        # Stored responses are keyed by the one upstream that made them.
        what = "a split between upstreams" if route.split else "answers the gateway gives itself"
        return [ConfigIssue(location=section.location, message=f"'cache' needs a route with one 'upstream', not {what}")]
    store = config.sections.get("cache") or CacheStoreConfig()
    if section.max_object_size > store.max_memory:
        message = (
            f"max_object_size ({section.max_object_size} bytes) is larger than the cache's "
            f"max_memory ({store.max_memory} bytes): such responses could never be stored"
        )
        return [ConfigIssue(location=section.location, message=message)]
    return []


#: The shared RFC 9111 cache: inside CORS, auth and rate limiting (each hit is
#: still authorised, limited and given CORS headers), outside the transforms
#: (a stored response is already transformed, and is not transformed twice).
POLICY = Policy(name="cache", key="cache", parse=parse_route, build=_build, validate=_validate)
