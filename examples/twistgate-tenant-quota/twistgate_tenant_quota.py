"""
``tenant_quota``: a daily request quota per tenant, the tenant named by a
request header.  The reference plugin of docs/plugins.md.

* no tenant header: ``400 bad_request``;
* over the quota: ``429 rate_limited`` with ``Retry-After`` (the seconds
  until the next day, UTC, on the gateway's clock);
* otherwise the request goes upstream, and the response says what is left
  in ``X-Quota-Remaining``.

Counts live in ``context.store``: the same for the global instance and a
route's own, kept across reloads, and shared by every gateway process and
node when the store is on Redis.
"""

import dataclasses
import math
from typing import Literal

from twistgate.plugins import BadRequest, ServiceUnavailable, StoreUnavailable, TooManyRequests, hookimpl

DAY = 86400


@dataclasses.dataclass(frozen=True)
class Options:
    daily_limit: int = dataclasses.field(metadata={"doc": "requests per tenant per day (UTC)"})
    header: str = dataclasses.field(default="X-Tenant", metadata={"doc": "the request header naming the tenant"})
    on_store_error: Literal["allow", "deny"] = dataclasses.field(
        default="allow", metadata={"doc": "when the store cannot answer: let requests through, or answer 503"}
    )

    def __post_init__(self):
        if self.daily_limit < 1:
            raise ValueError("daily_limit must be at least 1")


class TenantQuota:
    """A daily request quota per tenant: 400 without a tenant, 429 over the quota."""

    Options = Options

    def __init__(self, options, context):
        self.limit = options["daily_limit"]
        self.header = options["header"]
        self.fail_open = options["on_store_error"] == "allow"
        self.clock, self.store, self.log = context.clock, context.store, context.log
        self.refused = context.metrics.counter("refused", "Requests refused, by route and reason.", ["route", "reason"])

    def today(self):
        """The day's number and the seconds left in it."""
        now = self.clock.seconds()
        return int(now // DAY), DAY - now % DAY

    @hookimpl
    async def on_request(self, request, route):
        tenant = request.headers.get(self.header, "").strip()
        if not tenant:
            self.refused.labels(route=route.name, reason="no_tenant").inc()
            raise BadRequest(f"The {self.header} header is required.")
        day, seconds_left = self.today()
        try:
            used = await self.store.incr(f"{tenant}:{day}", ttl=DAY)
        except StoreUnavailable:
            self.log.warn("quota store unavailable; tenant {tenant} not counted", tenant=tenant, request=request)
            if self.fail_open:
                return
            raise ServiceUnavailable("The quota service is unavailable.")
        if used > self.limit:
            self.refused.labels(route=route.name, reason="over_quota").inc()
            self.log.info("tenant {tenant} is over its daily quota", tenant=tenant, request=request)
            raise TooManyRequests(
                f"Tenant {tenant!r} has used its {self.limit} requests for today.",
                headers=[("Retry-After", str(math.ceil(seconds_left)))],
            )
        request.state["tenant_quota.remaining"] = self.limit - used

    @hookimpl
    def on_response(self, request, response):
        remaining = request.state.get("tenant_quota.remaining")
        if remaining is not None:
            response.headers.setRawHeaders("X-Quota-Remaining", [str(remaining)])

    @hookimpl
    async def admin_get(self, path, query):
        if not path:
            return {"daily_limit": self.limit, "header": self.header}
        day, _ = self.today()
        used = await self.store.get(f"{path}:{day}", 0)
        return {"tenant": path, "used": used, "remaining": max(self.limit - used, 0)}
