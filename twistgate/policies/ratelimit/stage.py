"""
The per-route rate-limit stage (order 300, after authentication, so
``request.consumer`` is known).

``on_request`` builds one storage key per limit from the request (no parsing:
the key's parts were resolved when the route was built), asks the backend
for one decision over all of them, and either lets the request through or
raises `RateLimited` (429 with ``Retry-After`` and the rate-limit headers).
``on_response`` and ``on_error`` add the headers to every other answer of
the route (``on_response``, on a one-limit route where no later layer can
read them, as one block of ready header lines: `ProxyResponse.prepared_fields`).  When the backend cannot decide, ``on_backend_error`` says whether
the request goes through (``allow``) or gets a 503 (``deny``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

from twistgate.config.model import RouteConfig

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.errors import GatewayError, RateLimited, ServiceUnavailable
from twistgate.messages import ProxyRequest, ProxyResponse
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import Policy, Sight, keyed_off_forwarding
from twistgate.policies.ratelimit.algorithms import Decision, Limit, Outcome
from twistgate.policies.ratelimit.config import LimitConfig, RateLimitConfig, parse_rate_limit
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable
from twistgate.policies.ratelimit.headers import ONE_LIMIT_NAMES, OneLimitHeaders, decision_headers, policy_header, retry_after, sf_string
from twistgate.errors import add_error_headers
from twistgate.request_keys import key_part

_log = Logger()

#: ``request.state`` key holding this request's `Decision` (records show it too).
STATE_KEY = "rate_limit"

_MAX_KEY_TEXT = 200

#: Keys remembered per consumer (``key: consumer``); cleared when full, so
#: many distinct consumers cost a bounded amount of memory.
_CONSUMERS_KEPT = 4096
_NO_KEYS: Dict[str, str] = {}


class _Policy:
    """One limit of the route, ready to key requests."""

    __slots__ = ("prefix", "parts", "text", "by_consumer")

    def __init__(self, prefix: str, config: LimitConfig) -> None:
        self.prefix = prefix
        self.parts = tuple(key_part(spec) for spec in config.key)
        self.text = self.parts[0] if len(self.parts) == 1 else self._joined
        # ``key: consumer``: an authenticated request's key depends on its
        # consumer name alone, so it is made once per consumer, not per request.
        self.by_consumer: Optional[Dict[str, str]] = {} if tuple(config.key) == ("consumer",) else None

    def _joined(self, request: ProxyRequest) -> str:
        return json.dumps([part(request) for part in self.parts])

    def key(self, request: ProxyRequest) -> str:
        by_consumer = self.by_consumer
        if by_consumer is not None:
            consumer = request.consumer
            if consumer.__class__ is str:  # (None: by address; and 1 == True as dict keys)
                key = by_consumer.get(consumer)
                if key is None:
                    if len(by_consumer) >= _CONSUMERS_KEPT:
                        by_consumer.clear()
                    key = by_consumer[consumer] = self._key(request)
                return key
        return self._key(request)

    def _key(self, request: ProxyRequest) -> str:
        text = self.text(request)
        if len(text) > _MAX_KEY_TEXT:
            text = "#" + hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return self.prefix + text


def _signature(config: LimitConfig, limit: Limit) -> str:
    """Changes when the limit's meaning changes, so old state is not misread."""
    text = f"{limit.algorithm}:{limit.count}:{limit.period_us}:{limit.burst}:{','.join(config.key)}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=4).hexdigest()


class RateLimitStage:
    """Limits one route's requests through a shared backend."""

    def __init__(
        self,
        config: RateLimitConfig,
        route_name: str,
        backend: Any,
        *,
        on_backend_error: str = "allow",
        key_prefix: str = "",
        ready_lines: bool = False,
    ) -> None:
        """:param ready_lines: no layer sees the response after this one (`_lines_unseen`): a one-limit route's headers may go as ready lines."""
        self.deny_on_error = on_backend_error == "deny"
        self.limits: Tuple[Limit, ...] = tuple(limit.limit() for limit in config.limits)
        self.policies = tuple(
            _Policy(f"{key_prefix}{route_name}:{index}:{_signature(lc, limit)}:", lc)
            for index, (lc, limit) in enumerate(zip(config.limits, self.limits))
        )
        self.backend = backend
        names = [lc.policy_name() for lc in config.limits]
        self.names = tuple(sf_string(name).encode("ascii") for name in names)
        self.policy = policy_header(names, self.limits)
        # The usual route, one limit: the backend's one-key decision when it
        # has one (memory) and the headers from bytes made now.
        self._one_headers = OneLimitHeaders(self.names[0], self.limits[0], self.policy) if len(self.limits) == 1 else None
        self.ready_lines = ready_lines and self._one_headers is not None
        #: What this layer does on the way back, when it is only that (`RouteChain.response_lines`).
        self.response_lines_only = self.response_lines if self.ready_lines else None

    @property
    def backend(self) -> Any:
        return self._backend

    @backend.setter
    def backend(self, backend: Any) -> None:
        self._backend = backend
        one = getattr(backend, "decide_one", None)
        self._decide_one = one if one is not None and len(self.limits) == 1 else None
        if self._decide_one is not None:  # what it is called with, without an index each request
            self._one_key = self.policies[0].key
            self._one_limit = self.limits[0]
            #: ``key: consumer``: the keys made so far, looked up here without a call to `_Policy.key`.
            by_consumer = self.policies[0].by_consumer
            self._consumer_keys = by_consumer if by_consumer is not None else _NO_KEYS

    def keys(self, request: ProxyRequest) -> List[str]:
        return [policy.key(request) for policy in self.policies]

    @hookimpl
    def on_request(self, request: ProxyRequest) -> Optional["Deferred[None]"]:
        decide_one = self._decide_one
        try:
            if decide_one is not None:
                consumer = request.consumer
                key = self._consumer_keys.get(consumer) if consumer.__class__ is str else None
                result = decide_one(key or self._one_key(request), self._one_limit)
            else:
                result = self._backend.decide(self.keys(request), self.limits)
        except Exception:
            return self._backend_failed(Failure(), request)
        if (result.__class__ is Outcome or result.__class__ is Decision) and result.allowed:  # the usual answer, at once
            request.state[STATE_KEY] = result
            return None
        if isinstance(result, Deferred):
            return result.addCallbacks(self._decided, self._backend_failed, (request,), errbackArgs=(request,))
        self._decided(result, request)
        return None

    def _decided(self, decision: Decision, request: ProxyRequest) -> None:
        request.state[STATE_KEY] = decision
        if not decision.allowed:
            headers = [(b"Retry-After", retry_after(decision))]
            headers += decision_headers(self.names, self.limits, self.policy, decision)
            raise RateLimited(headers=headers)

    def _backend_failed(self, failure: Failure, request: ProxyRequest) -> None:
        """The backend could not decide (an outage is logged by the backend)."""
        if not failure.check(BackendUnavailable):
            _log.failure("rate limiting: the backend failed to decide", failure)
        if self.deny_on_error:
            raise ServiceUnavailable(
                "The rate limit service is unavailable.",
                code="rate_limit_unavailable",
                headers=[("Retry-After", "1")],
            )
        return None

    @hookimpl
    def on_response(self, request: ProxyRequest, response: ProxyResponse) -> None:
        if self.ready_lines:
            response.prepared_fields += self.response_lines(request, response.headers.raw)
            return
        decision = request.state.get(STATE_KEY)
        if decision is None:
            return
        raw = response.headers.raw
        one = self._one_headers
        if one is not None:
            one.write(raw, decision)
            return
        for name, value in decision_headers(self.names, self.limits, self.policy, decision):
            raw[name] = [value]

    def response_lines(self, request: ProxyRequest, raw: Dict[bytes, List[bytes]]) -> bytes:
        """
        The usual route's (`ready_lines`) `on_response`: `OneLimitHeaders.write`'s fields as ready
        lines (one write in the engine too), and ``raw`` (the answer's fields) without the upstream's
        own of those names, which would go out twice.  All this layer does on the way back: the
        exchange may call it alone, without a `ProxyResponse` (`twistgate.plugins.calls.RouteChain.response_lines`).
        """
        decision = request.state.get(STATE_KEY)
        if decision is None:
            return b""
        if (
            b"Ratelimit" in raw  # (five lookups cost less than raw.keys().isdisjoint(ONE_LIMIT_NAMES))
            or b"Ratelimit-Policy" in raw
            or b"X-Ratelimit-Limit" in raw
            or b"X-Ratelimit-Remaining" in raw
            or b"X-Ratelimit-Reset" in raw
        ):
            for name in ONE_LIMIT_NAMES:
                raw.pop(name, None)
        return self._one_headers.lines(decision if decision.__class__ is Outcome else decision.outcomes[0])

    @hookimpl
    def on_error(self, request: ProxyRequest, failure: Failure) -> None:
        """Other errors of the route (401, 502...) carry the headers too."""
        decision = request.state.get(STATE_KEY)
        error = failure.value
        if decision is None or not decision.allowed or not isinstance(error, GatewayError):
            return  # nothing decided yet, or our own 429 (it has them)
        add_error_headers(failure, decision_headers(self.names, self.limits, self.policy, decision))


def _lines_unseen(route: RouteConfig, services: Any) -> bool:
    """
    Whether the rate-limit fields may go as ready lines on ``route``: no layer
    that runs after this one on the response's way out (the policies before
    it, and any plugin) can look at them (`twistgate.chain.blind`).
    """
    from twistgate import chain  # (the chain imports this module)

    return chain.blind(route, services, "response_fields", chain.outside(POLICY))


def _sight(route: RouteConfig, services: Any) -> Sight:
    """A key may name a forwarding field (``header:x-forwarded-for``)."""
    return Sight(forwarding=any(keyed_off_forwarding(limit.key) for limit in route.policies["rate_limit"].limits))


def _build(route: RouteConfig, services: Any) -> RateLimitStage:
    section = services.rate_limiting
    return RateLimitStage(
        route.policies["rate_limit"],
        route.name,
        services.rate_limits,
        on_backend_error=section.on_backend_error,
        key_prefix=section.key_prefix,
        ready_lines=_lines_unseen(route, services),
    )


#: Rate limits (token bucket, fixed and sliding windows) on the memory or Redis backend.
POLICY = Policy(name="rate_limit", key="rate_limit", parse=parse_rate_limit, build=_build, sight=_sight)
