"""Which responses are stored and when a stored one answers (RFC 9111 §3, §3.5, §4.2.4, RFC 5861)."""

from __future__ import annotations

import pytest

from twistgate.policies.cache.dates import format_http_date
from twistgate.policies.cache.directives import NO_REQUEST_DIRECTIVES, request_directives, response_directives
from twistgate.policies.cache.entry import Entry
from twistgate.policies.cache.rules import fresh_for, refusal, stale_if_error, stale_while_revalidate, worth_storing

NOW = 1_800_000_000.0


def refused(cc="", status=200, expires=False, authorized=False, vary=()):
    return refusal(status, response_directives([cc.encode()] if cc else None), has_expires=expires, authorized=authorized, vary=vary)


def stored(cc, age=0.0):
    return Entry(
        status=200,
        reason=None,
        headers=((b"Cache-Control", cc.encode()), (b"Date", format_http_date(NOW)), (b"ETag", b'"x"')),
        body=b"",
        request_time=NOW,
        response_time=NOW,
        age_lines=(b"%d" % age,),
    )


def req(cc):
    return request_directives([cc.encode()])


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"cc": "max-age=60"}, None),
        ({"cc": "no-store, max-age=60"}, "no-store"),
        ({"cc": "private, max-age=60"}, "private"),
        ({"cc": 'private="set-cookie", max-age=60'}, None),
        ({"cc": "max-age=60", "status": 206}, "status"),
        ({"cc": "max-age=60", "status": 304}, "status"),
        ({"status": 201}, "status"),  # no explicit freshness, not cacheable by default
        ({"status": 201, "expires": True}, None),
        ({"status": 599, "cc": "public"}, None),
        ({"status": 302, "cc": "max-age=5"}, None),
        ({"cc": "max-age=60", "vary": None}, "vary-star"),
        ({"cc": "no-store, must-understand, max-age=5"}, None),  # understood status: no-store was the fallback
        ({"cc": "no-store, must-understand, max-age=5", "status": 299}, "must-understand"),
    ],
)
def test_storability(kwargs, reason):
    assert refused(**kwargs) == reason


def test_authorization_needs_public_s_maxage_or_must_revalidate():
    """RFC 9111 §3.5."""
    assert refused("max-age=60", authorized=True) == "authorization"
    for cc in ("max-age=60, public", "s-maxage=60", "max-age=60, must-revalidate"):
        assert refused(cc, authorized=True) is None, cc


def test_useless_responses_are_not_kept():
    bare = Entry(status=200, reason=None, headers=(), body=b"", request_time=NOW, response_time=NOW)
    assert not worth_storing(bare, 0, 0)
    assert worth_storing(bare, 0, 30)  # kept for stale-if-error
    assert worth_storing(stored("max-age=0"), 0, 0)  # has a validator


def test_fresh_and_the_request_directives():
    e = stored("max-age=100", age=10)
    assert fresh_for(e, NO_REQUEST_DIRECTIVES, NOW)
    assert not fresh_for(e, req("no-cache"), NOW)
    assert not fresh_for(e, req("max-age=5"), NOW)
    assert fresh_for(e, req("max-age=10"), NOW)
    assert not fresh_for(e, req("min-fresh=91"), NOW)
    assert fresh_for(e, req("min-fresh=90"), NOW)
    assert not fresh_for(e, NO_REQUEST_DIRECTIVES, NOW + 90)  # exactly at the lifetime: stale


def test_max_stale_never_overrides_the_origin():
    e = stored("max-age=1")
    assert fresh_for(e, req("max-stale=100"), NOW + 50)
    assert not fresh_for(e, req("max-stale=10"), NOW + 50)
    assert not fresh_for(stored("max-age=1, must-revalidate"), req("max-stale"), NOW + 50)
    assert not fresh_for(stored("no-cache, max-age=100"), NO_REQUEST_DIRECTIVES, NOW)


def test_stale_while_revalidate_window():
    e = stored("max-age=10, stale-while-revalidate=20")
    assert not stale_while_revalidate(e, NO_REQUEST_DIRECTIVES, NOW + 5, 0)  # still fresh: not this rule
    assert stale_while_revalidate(e, NO_REQUEST_DIRECTIVES, NOW + 30, 0)
    assert not stale_while_revalidate(e, NO_REQUEST_DIRECTIVES, NOW + 30.5, 0)
    assert stale_while_revalidate(stored("max-age=10"), NO_REQUEST_DIRECTIVES, NOW + 15, 5)  # route default
    assert not stale_while_revalidate(e, req("no-cache"), NOW + 15, 0)
    assert not stale_while_revalidate(stored("s-maxage=10, stale-while-revalidate=20"), NO_REQUEST_DIRECTIVES, NOW + 15, 0)


def test_stale_if_error_window():
    e = stored("max-age=0, stale-if-error=60")
    assert stale_if_error(e, NO_REQUEST_DIRECTIVES, NOW + 60, 0)
    assert not stale_if_error(e, NO_REQUEST_DIRECTIVES, NOW + 61, 0)
    assert stale_if_error(stored("max-age=0"), req("stale-if-error=30"), NOW + 20, 0)
    assert not stale_if_error(stored("max-age=0"), NO_REQUEST_DIRECTIVES, NOW + 20, 0)  # nobody allowed it
    assert stale_if_error(stored("max-age=0"), NO_REQUEST_DIRECTIVES, NOW + 20, 30)  # the route allows it
    assert not stale_if_error(stored("max-age=0, must-revalidate, stale-if-error=60"), NO_REQUEST_DIRECTIVES, NOW + 1, 0)


def test_no_cache_without_a_validator_is_not_kept():
    """It could only ever be fetched again in full."""
    e = Entry(status=200, reason=None, headers=((b"Cache-Control", b"no-cache, max-age=600"),), body=b"", request_time=NOW, response_time=NOW)
    assert not worth_storing(e, 0, 60)
