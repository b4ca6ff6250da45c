"""Cache-Control parsing: what a directive means, and what makes one invalid (RFC 9111 §5.2)."""

from __future__ import annotations

import pytest

from twistgate.policies.cache.directives import (
    DELTA_MAX,
    first_member,
    parse,
    request_directives,
    response_directives,
    split_list,
)


def test_commas_inside_quotes_do_not_split():
    assert split_list('a, b="x, y", c') == ["a", 'b="x, y"', "c"]
    assert split_list(' , a ,, ') == ["a"]


def test_names_are_case_insensitive_and_first_occurrence_wins():
    """Two max-age values: the first one counts (RFC 9111 §4.2.1), across lines too."""
    assert parse([b"MaX-AgE=10, max-age=20"]) == {"max-age": "10"}
    assert response_directives([b"max-age=1800", b"max-age=1"]).max_age == 1800


@pytest.mark.parametrize(
    "value, max_age",
    [
        (b'max-age="3600"', 3600),  # quoted form accepted
        (b"max-age=003600", 3600),
        (b"max-age='3600'", 0),  # single quotes: invalid, so stale
        (b"max-age=a100", 0),
        (b"max-age=100a", 0),
        (b"max-age=-100", 0),
        (b"max-age=3600.5", 0),
        (b"max-age=99999999999", DELTA_MAX),  # too large: 2^31
        (b"max-age =100", None),  # malformed element: ignored entirely
        (b"max-age= 100", None),
        (b'extension="max-age=100", foo', None),  # the phrase inside a quoted string means nothing
    ],
)
def test_max_age_values(value, max_age):
    assert response_directives([value]).max_age == max_age


def test_max_age_inside_a_quoted_extension_does_not_shadow_the_real_one():
    assert response_directives([b'extension="max-age=100", max-age=1']).max_age == 1
    assert response_directives([b'max-age=1, extension="max-age=100"']).max_age == 1


def test_qualified_no_cache_and_private_name_fields_only():
    """`no-cache="a, b"` stores without a and b; it is not the unqualified directive."""
    d = response_directives([b'no-cache="A, b", private="Set-Cookie", max-age=5'])
    assert not d.no_cache and d.no_cache_fields == {"a", "b"}
    assert not d.private and d.private_fields == {"set-cookie"}
    assert response_directives([b"No-CaChE"]).no_cache
    assert response_directives([b"private"]).private


def test_revalidation_directives_forbid_stale():
    """must-revalidate, proxy-revalidate, s-maxage (§5.2.2.10) and no-cache all forbid serving stale."""
    for value in (b"must-revalidate", b"proxy-revalidate", b"s-maxage=5", b"no-cache"):
        assert response_directives([value]).forbids_stale, value
    assert not response_directives([b"max-age=5, public"]).forbids_stale


def test_stale_extensions_need_seconds():
    d = response_directives([b"stale-while-revalidate=30, stale-if-error=x"])
    assert d.stale_while_revalidate == 30 and d.stale_if_error is None


def test_request_directives():
    r = request_directives([b"no-cache, max-stale, min-fresh=5, only-if-cached, max-age=0, stale-if-error=9"])
    assert r.no_cache and r.only_if_cached
    assert (r.max_stale, r.min_fresh, r.max_age, r.stale_if_error) == (DELTA_MAX, 5, 0, 9)
    assert request_directives([b"max-stale=10"]).max_stale == 10
    assert request_directives([b"no-store"]).no_store


def test_age_uses_the_first_member():
    """RFC 9111 §5.1: a list-valued Age counts by its first member."""
    assert first_member([b"0, 7200"]) == "0"
    assert first_member([b"7200", b"0"]) == "7200"
    assert first_member(None) is None
