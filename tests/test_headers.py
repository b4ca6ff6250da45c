"""twistgate.headers: one header type for both hops, plugins and policies."""

import pytest

from twistgate.headers import Headers, InvalidHeaderName, canonical_name


def test_names_are_case_insensitive_and_canonical():
    """Any spelling of a name finds the same field, stored as Twisted would write it."""
    headers = Headers()
    headers.addRawHeader(b"x-user-id", b"1")
    headers.addRawHeader(b"X-USER-ID", b"2")
    assert headers.getRawHeaders(b"X-User-Id") == [b"1", b"2"]
    assert list(headers.raw) == [b"X-User-Id"]
    assert canonical_name(b"www-authenticate") == b"WWW-Authenticate"
    assert canonical_name("etag") == b"ETag"


def test_str_names_give_str_values_like_twisted():
    headers = Headers({b"Content-Type": [b"text/plain"]})
    assert headers.getRawHeaders("content-type") == ["text/plain"]
    assert headers.getRawHeaders(b"content-type") == [b"text/plain"]
    assert headers.getRawHeaders("missing", "dflt") == "dflt"


def test_values_never_carry_line_breaks():
    """A plugin setting a value with CR/LF cannot inject a header line."""
    headers = Headers()
    headers.setRawHeaders(b"X-A", [b"one\r\nX-Evil: 1"])
    headers.addRawHeader("X-B", "two\nthree\x00")
    assert headers.raw[b"X-A"] == [b"one X-Evil: 1"]
    assert b"\n" not in headers.raw[b"X-B"][0] and b"\x00" not in headers.raw[b"X-B"][0]


def test_invalid_names_are_refused():
    with pytest.raises(InvalidHeaderName):
        Headers().addRawHeader(b"Bad Name", b"x")
    with pytest.raises(InvalidHeaderName):
        Headers().addRawHeader(b"Bad:Name", b"x")


def test_set_remove_has_and_empty_set_removes():
    headers = Headers.from_pairs([(b"A", b"1"), (b"a", b"2"), (b"B", b"3")])
    assert headers.hasHeader("a") and b"b" in headers and len(headers) == 2
    headers.setRawHeaders(b"A", [])
    assert not headers.hasHeader(b"A")
    headers.removeHeader(b"b")
    assert not headers


def test_copy_is_deep_and_pairs_keep_order():
    headers = Headers.from_pairs([(b"Set-Cookie", b"a=1"), (b"Via", b"x"), (b"set-cookie", b"b=2")])
    clone = headers.copy()
    clone.addRawHeader(b"Set-Cookie", b"c=3")
    assert headers.getRawHeaders(b"Set-Cookie") == [b"a=1", b"b=2"]
    assert list(headers.pairs()) == [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), (b"Via", b"x")]
    assert headers != clone and headers == headers.copy()


def test_get_returns_the_first_value():
    headers = Headers.from_pairs([(b"Accept", b"a"), (b"Accept", b"b")])
    assert headers.get(b"accept") == b"a"
    assert headers.get(b"nope") is None


def test_the_same_header_access_for_plugins_and_extensions():
    """Issue 17 item 7: get(name) and get_all(name) with a str name give str values, in plugins and in extension views alike."""
    from twistgate.messages import ProxyRequest
    from twistgate.plugins.views import RequestInfo

    headers = Headers()
    headers.addRawHeader(b"X-Tenant", "acmé".encode("utf-8"))
    headers.addRawHeader(b"X-Tenant", b"second")
    assert headers.get("x-tenant") == "acmé" and headers.get(b"X-Tenant") == "acmé".encode("utf-8")
    assert headers.get("X-Missing", "") == "" and headers.get_all("X-Missing") == []
    assert headers.get_all("X-TENANT") == ["acmé", "second"]
    view = RequestInfo(ProxyRequest(method=b"GET", path="/", headers=headers)).headers
    assert (view.get("x-tenant"), view.get_all("X-Tenant")) == (headers.get("X-Tenant"), headers.get_all("X-Tenant"))
