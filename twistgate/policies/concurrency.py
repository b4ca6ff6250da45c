"""
``concurrency: {limit, key}``: at most ``limit`` requests of one key in
flight on a route at once (nginx's ``limit_conn``, Envoy's max requests);
one more is refused with ``429 concurrency_limited`` and the JSON error body.

The key is ``ip`` (default), ``consumer`` (unauthenticated requests count by
address), ``header:NAME`` (a missing header counts by address) or ``route``
(one count for the whole route).  A slot is taken in ``on_request`` and given
back when the exchange is over, however it ended: answered, refused by a
later layer, failed, timed out or abandoned by the client
(`ProxyRequest.when_done`).  Counts live in memory, per gateway process and
per configuration generation: after a reload the new generation counts
afresh while the old one's requests finish.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import attrs

from twistgate.config._node import Node
from twistgate.config.model import Location, RouteConfig
from twistgate.errors import RateLimited
from twistgate.messages import ProxyRequest
from twistgate.plugins.hookspecs import hookimpl
from twistgate.policies import Policy, Sight, keyed_off_forwarding
from twistgate.request_keys import key_part, read_key_part

__all__ = ["ConcurrencyConfig", "ConcurrencyStage", "POLICY", "parse_concurrency"]

KEYS = ("limit", "key")


@attrs.frozen(kw_only=True)
class ConcurrencyConfig:
    limit: int
    key: str = "ip"  # ip | consumer | route | header:<name>
    location: Location = attrs.field(default=Location(), eq=False)


def parse_concurrency(node: Node) -> Optional[ConcurrencyConfig]:
    fields = node.mapping(KEYS, required=("limit",))
    if fields is None:
        return None
    count = len(node.issues.found)
    limit = fields.read("limit", lambda n: n.integer(min=1), None)
    key = fields.read("key", _key, "ip")
    if limit is None or len(node.issues.found) != count:
        return None
    return ConcurrencyConfig(limit=limit, key=key, location=node.location(at_key=True))


def _key(node: Node) -> Optional[str]:
    text = node.string()
    if text is None:
        return None
    return read_key_part(node, text.strip())


class ConcurrencyStage:
    """Counts the route's requests in flight per key (see the module docstring)."""

    def __init__(self, config: ConcurrencyConfig) -> None:
        self.limit = config.limit
        self.key = key_part(config.key)
        self.in_flight: Dict[str, int] = {}

    @hookimpl
    def on_request(self, request: ProxyRequest) -> None:
        key = self.key(request)
        count = self.in_flight.get(key, 0)
        if count >= self.limit:
            raise RateLimited(
                f"Too many concurrent requests (at most {self.limit} at a time).",
                code="concurrency_limited",
                headers=[("Retry-After", "1")],
            )
        self.in_flight[key] = count + 1
        request.when_done(lambda: self._release(key))

    def _release(self, key: str) -> None:
        count = self.in_flight.get(key, 0) - 1
        if count > 0:
            self.in_flight[key] = count
        else:
            self.in_flight.pop(key, None)  # keys do not accumulate


def _build(route: RouteConfig, services: Any) -> ConcurrencyStage:
    return ConcurrencyStage(route.policies["concurrency"])


def _sight(route: RouteConfig, services: Any) -> Sight:
    """Its key may name a forwarding field (``header:x-forwarded-for``)."""
    return Sight(forwarding=keyed_off_forwarding([route.policies["concurrency"].key]))


#: Requests in flight per key; after authentication (key: consumer) and the rate limit.
POLICY = Policy(name="concurrency", key="concurrency", parse=parse_concurrency, build=_build, sight=_sight)
