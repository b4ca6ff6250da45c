"""
Whether an upstream response may be stored, and as what `Entry`: the
storability rules (`twistgate.policies.cache.rules.refusal`), the route's
size limit, event streams, and whether the entry would ever be reused.
The stage then records the body as it streams (`capture.Capture`).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twistgate.fields import first_int
from twistgate.headers import Headers
from twistgate.messages import ProxyResponse
from twistgate.policies.cache.config import RouteCacheConfig
from twistgate.policies.cache.entry import Entry
from twistgate.policies.cache.keys import vary_names
from twistgate.policies.cache.rules import refusal, worth_storing
from twistgate.policies.cache.targeted import headers_lookup, policy

__all__ = ["entry_to_store"]


def entry_to_store(
    response: ProxyResponse,
    config: RouteCacheConfig,
    targets: Tuple[Any, Any],
    *,
    authorized: bool,
    request_time: float,
    now: float,
) -> Tuple[Optional[Entry], Optional[str], Optional[int]]:
    """
    The entry to record `response` as (its body still empty), or None and
    why not (the ``Cache-Status`` detail: ``size``, ``event-stream``,
    ``not-reusable`` or a `refusal`); and the length it declares, if any.

    :param targets: the stage's (targeted ``Cache-Control`` fields, private
        fields) pair.
    :param authorized: the request carried credentials (RFC 9111 §3.5).
    """
    headers = response.headers
    directives, targeted = policy(headers_lookup(headers), targets[0])
    vary = vary_names(headers.getRawHeaders(b"Vary"))
    reason = refusal(
        response.status,
        directives,
        has_expires=headers.hasHeader(b"Expires") and not targeted,
        authorized=authorized,
        vary=vary,
        listed=config.lists(response.status),
    )
    expected = first_int(headers.getRawHeaders(b"Content-Length"))
    if reason is None and expected is not None and expected > config.max_object_size:
        reason = "size"
    if reason is None and event_stream(headers):
        reason = "event-stream"  # never ends, and every client must see each event as it comes
    entry: Optional[Entry] = None
    if reason is None:
        assert vary is not None
        entry = Entry.from_response(
            response.status, response.reason, headers, directives, b"",
            request_time=request_time, response_time=now, default_ttl=config.ttl_for(response.status),
            vary=vary, listed=config.lists(response.status), targets=targets,
        )
        if not worth_storing(entry, config.stale_while_revalidate, config.stale_if_error):
            reason = "not-reusable"
    if reason is not None or entry is None:
        return None, reason, expected
    return entry, None, expected


def event_stream(headers: Headers) -> bool:
    """A ``text/event-stream`` response (Server-Sent Events): never stored."""
    types = headers.getRawHeaders(b"Content-Type")
    return bool(types) and types[0].split(b";", 1)[0].strip().lower() == b"text/event-stream"
