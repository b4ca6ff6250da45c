"""The exchange builds its `ProxyRequest` positionally; plugins see the same fields, and may still name them."""

from __future__ import annotations

from typing import Any, List

import pytest

import twistgate.exchange as exchange_module
from tests.seam_wiring import Wired
from twistgate.messages import ProxyRequest, ProxyResponse


def test_the_exchange_fills_every_field_in_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    made: List[Any] = []

    class Seen(ProxyRequest):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(exchange_module, "ProxyRequest", Seen)
    wired = Wired()
    wired.clock.advance(7)
    wired.send(b"GET /x?a=1 HTTP/1.1\r\nHost: GW:8080\r\nX-Request-Id: abc-1\r\n\r\n")
    (request,) = made
    assert (request.method, request.path, request.query, request.uri) == (b"GET", "/x", b"a=1", b"/x?a=1")
    assert (request.host, request.client_ip, request.peer_ip, request.scheme) == ("gw", "192.0.2.7", "192.0.2.7", "http")
    assert (request.request_id, request.params, request.consumer, request.started) == ("abc-1", {}, None, 7.0)
    assert request.route is not None and request.route.name == "all"
    assert request.headers.raw[b"X-Request-Id"] == [b"abc-1"] and "trace" in request.state


def test_plugins_tests_still_make_one_by_name_as_documented() -> None:
    request, response = ProxyRequest(method=b"GET", path="/"), ProxyResponse(status=200)
    assert (request.method, request.path, request.query, request.scheme, request.params) == (b"GET", "/", b"", "http", {})
    assert request.headers.raw == {} and response.status == 200
