"""
Targeted cache-control fields (RFC 9213): CDN-Cache-Control and the
gateway's own Twistgate-Cache-Control decide over Cache-Control and Expires.
"""

from __future__ import annotations

import pytest

from tests.cache.conftest import Gateway
from tests.config_helpers import config_loader
from twistgate.policies.cache.targeted import parse_dictionary


def test_cdn_cache_control_wins_over_cache_control():
    """Browsers are told not to cache; the shared cache in front of the origin may, for 60 s."""
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")], b"hello")
    first = gw.get()
    gw.later(30)
    second = gw.get()
    assert len(gw.origin.seen) == 1 and second.body == b"hello"
    assert second.cache_status == "twistgate; hit; ttl=30"
    # both fields go on: CDN-Cache-Control is for any CDN in front, Cache-Control for browsers
    assert first.header("CDN-Cache-Control") == "max-age=60" and second.header("Cache-Control") == "no-store"


def test_a_targeted_field_can_forbid_what_cache_control_allows():
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "public, max-age=600"), ("CDN-Cache-Control", "no-store")])
    gw.get()
    gw.get()
    assert len(gw.origin.seen) == 2


def test_a_targeted_field_replaces_expires_too():
    gw = Gateway()
    gw.origin.answer(200, [("Expires", "Thu, 01 Jan 2099 00:00:00 GMT"), ("CDN-Cache-Control", "max-age=10")])
    gw.get()
    gw.later(11)
    assert gw.get().cache_status.startswith("twistgate; fwd=stale")


def test_the_gateways_own_field_comes_first_and_is_not_passed_on():
    gw = Gateway()
    gw.origin.answer(
        200,
        [("Cache-Control", "no-store"), ("CDN-Cache-Control", "no-store"), ("Twistgate-Cache-Control", "max-age=60")],
    )
    first = gw.get()
    second = gw.get()
    assert len(gw.origin.seen) == 1
    for reply in (first, second):
        assert reply.header("Twistgate-Cache-Control") is None
        assert reply.header("CDN-Cache-Control") == "no-store"


def test_an_invalid_targeted_field_is_ignored():
    """RFC 9213 §2.1: a field that does not parse as a Dictionary is as if absent: Cache-Control applies."""
    gw = Gateway()
    gw.origin.answer(200, [("Cache-Control", "max-age=60"), ("CDN-Cache-Control", "Max-Age=5, ,")])
    gw.get()
    gw.later(30)
    assert gw.get().cache_status == "twistgate; hit; ttl=30"


def test_the_field_name_is_configurable_and_cdn_cache_control_can_be_ignored():
    gw = Gateway(extra="cache: {targeted_field: Edge-Cache-Control, cdn_cache_control: false}")
    gw.origin.answer(200, [("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")])
    gw.get()
    gw.get()
    assert len(gw.origin.seen) == 2  # CDN-Cache-Control is not ours now
    gw.origin.answer(200, [("Cache-Control", "no-store"), ("Edge-Cache-Control", "max-age=60")])
    gw.get("/other")
    reply = gw.get("/other")
    assert len(gw.origin.seen) == 3 and reply.header("Edge-Cache-Control") is None


def test_revalidation_keeps_the_targeted_policy():
    gw = Gateway()
    gw.origin.answer(200, [("Twistgate-Cache-Control", "max-age=10"), ("ETag", '"v1"'), ("Cache-Control", "no-store")])
    gw.get()
    gw.later(11)
    gw.origin.answer(304, [("ETag", '"v1"')], b"")
    reply = gw.get()
    assert reply.status == 200 and reply.cache_status.startswith("twistgate; fwd=stale; fwd-status=304")
    gw.later(5)
    assert gw.get().cache_status == "twistgate; hit; ttl=5"  # still 10 s from the stored targeted field


@pytest.mark.parametrize(
    "text, parsed",
    [
        ("max-age=60", {"max-age": "60"}),
        ("max-age=60, must-revalidate", {"max-age": "60", "must-revalidate": None}),
        ("no-store=?0, max-age=5", {"max-age": "5"}),
        ("no-store=?1", {"no-store": None}),
        ('private="set-cookie"', {"private": "set-cookie"}),
        ('max-age="60"', {"max-age": "invalid"}),  # an Integer is required: invalid means stale now
        ("max-age=-1", {"max-age": "invalid"}),
        ("max-age=6.5", {"max-age": "invalid"}),
        ("max-age=60;a=1, public", {"max-age": "60", "public": None}),
        ("max-age=1, max-age=2", {"max-age": "2"}),  # RFC 8941: the last one wins
        ("Max-Age=60", None), ("", None), ("max-age=60,", None), ("max-age=@", None), ("max-age 60", None),
    ],
)
def test_dictionary_parsing(text, parsed):
    assert parse_dictionary(text) == parsed


def test_config():
    load, issues = config_loader('listeners: [{name: p, endpoint: "tcp:0"}]\n')
    service = load("cache: {targeted_field: false}\n").sections["cache"]
    assert service.targets == (b"cdn-cache-control",) and service.private_fields == ()
    assert load("cache: {}\n").sections["cache"].targets == (b"twistgate-cache-control", b"cdn-cache-control")
    assert issues("cache: {targeted_field: 'a b'}\n")[0][1] == "cache.targeted_field"
    assert issues("cache: {targeted_field: true}\n")[0][1] == "cache.targeted_field"
