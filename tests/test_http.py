"""Header rules of one proxy hop."""

from __future__ import annotations

from ipaddress import ip_network

from twistgate.headers import Headers

from twistgate.http import ForwardingPolicy, connection_listed, request_id_from, strip_hop_by_hop


def _raw(*pairs):
    headers = Headers()
    for name, value in pairs:
        headers.addRawHeader(name, value)
    return headers.raw


def test_strip_hop_by_hop_removes_standard_and_listed_headers():
    raw = _raw(
        (b"connection", b"close, X-Foo ,x-bar"),
        (b"x-foo", b"1"),
        (b"X-Bar", b"2"),
        (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"websocket"),
        (b"te", b"trailers"),
        (b"trailer", b"X-T"),
        (b"proxy-authorization", b"secret"),
        (b"proxy-connection", b"keep-alive"),
        (b"x-keep", b"yes"),
    )
    strip_hop_by_hop(raw)
    # Proxy-Authorization is forwarded unless the gateway authenticates with it (issue 18)
    assert list(raw) == [b"Proxy-Authorization", b"X-Keep"]


def test_connection_listed_ignores_close_and_keep_alive():
    assert connection_listed([b"close", b"keep-alive, x-a"]) == [b"X-A"]
    assert connection_listed(None) == []


def test_request_id_from_client_when_sane_else_generated():
    assert request_id_from(Headers({b"X-Request-ID": [b"abc-1"]})) == "abc-1"
    generated = request_id_from(Headers({b"X-Request-ID": [b"bad id\x01"]}))
    assert generated != "bad id\x01" and len(generated) == 24
    assert request_id_from(Headers()) != request_id_from(Headers())


def test_untrusted_peer_cannot_spoof_forwarding_headers():
    policy = ForwardingPolicy([])
    raw = _raw((b"x-forwarded-for", b"1.2.3.4"), (b"forwarded", b"for=1.2.3.4"), (b"x-forwarded-host", b"evil"))
    client = policy.apply(raw, peer="10.0.0.5", scheme="http", host=b"api.example", version=b"HTTP/1.1")
    assert client == "10.0.0.5"
    assert raw[b"X-Forwarded-For"] == [b"10.0.0.5"]
    assert raw[b"X-Forwarded-Host"] == [b"api.example"]
    assert raw[b"Forwarded"] == [b"for=10.0.0.5;host=api.example;proto=http"]
    assert raw[b"Via"] == [b"1.1 twistgate"]


def test_trusted_chain_gives_the_first_untrusted_address_from_the_right():
    policy = ForwardingPolicy([ip_network("10.0.0.0/8")])
    raw = _raw((b"x-forwarded-for", b"198.51.100.7, 10.1.1.1"), (b"x-forwarded-proto", b"https"))
    client = policy.apply(raw, peer="10.0.0.5", scheme="http", host=b"h", version=b"HTTP/1.0")
    assert client == "198.51.100.7"
    assert raw[b"X-Forwarded-For"] == [b"198.51.100.7, 10.1.1.1, 10.0.0.5"]
    assert raw[b"X-Forwarded-Proto"] == [b"https"]  # believed from a trusted proxy
    assert raw[b"Via"] == [b"1.0 twistgate"]


def test_forwarded_quotes_ipv6_and_odd_hosts():
    policy = ForwardingPolicy([])
    raw = _raw()
    policy.apply(raw, peer="::1", scheme="https", host=b"a b", version=b"HTTP/1.1")
    assert raw[b"Forwarded"] == [b'for="[::1]";host="a b";proto=https']


def test_no_host_means_no_forwarded_host_never_an_empty_one():
    """Issue 14 item 8: HTTP/1.0 without Host; a client's own X-Forwarded-Host is not passed either (untrusted)."""
    from ipaddress import ip_network

    raw = {b"X-Forwarded-Host": [b"spoofed.example"]}
    ForwardingPolicy().apply(raw, peer="203.0.113.9", scheme="http", host=b"", version=b"HTTP/1.0")
    assert b"X-Forwarded-Host" not in raw
    assert raw[b"Forwarded"] == [b"for=203.0.113.9;proto=http"]
    trusted = ForwardingPolicy([ip_network("10.0.0.0/8")])
    raw = {}
    trusted.apply(raw, peer="10.0.0.1", scheme="http", host=b"", version=b"HTTP/1.0")
    assert b"X-Forwarded-Host" not in raw and raw[b"Forwarded"] == [b"for=10.0.0.1;proto=http"]
