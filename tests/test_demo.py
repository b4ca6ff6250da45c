"""
Tests for twistgate.demo: every endpoint through StubTreq (a real Agent and a
real Site over in-memory transports, no sockets), plus back-pressure through
a real HTTPChannel on a StringTransport.
"""

from __future__ import annotations

import json
from typing import Any, List, Tuple

import pytest
from treq.testing import StubTreq
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived
from twisted.web.server import Site

from twistgate.demo import MAX_BYTES, MAX_SLOW_MS, ORDERS, PRODUCTS, USERS, demo_resource, pattern_bytes
from twistgate.testing import result_of

BASE = "http://demo.invalid"



@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stub(clock: Clock) -> StubTreq:
    return StubTreq(demo_resource(clock))


def call(stub: StubTreq, method: str, path: str, **kwargs: Any) -> Tuple[Any, bytes]:
    """Make a request that the demo answers synchronously; return (response, body)."""
    response = result_of(stub.request(method, BASE + path, **kwargs))
    return response, result_of(stub.content(response))


def call_json(stub: StubTreq, method: str, path: str, **kwargs: Any) -> Tuple[Any, Any]:
    response, body = call(stub, method, path, **kwargs)
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert response.length == len(body)  # the Agent keeps Content-Length out of .headers
    return response, json.loads(body)


class _BoundedTransport(StringTransport):
    """A StringTransport that pauses its producer when its buffer is full, as a socket's does."""

    buffer_size = 16 * 1024

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.io.getvalue()) > self.buffer_size:
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data = self.value()
        self.clear()
        return data


def _connect(clock: Clock) -> Tuple[Any, _BoundedTransport]:
    channel = Site(demo_resource(clock), reactor=MemoryReactorClock()).buildProtocol(None)
    transport = _BoundedTransport()
    channel.makeConnection(transport)
    return channel, transport


def raw_exchange(clock: Clock, request: bytes) -> Tuple[bytes, bytes]:
    """Feed raw request bytes to a real HTTPChannel; return the response's (head, body)."""
    channel, transport = _connect(clock)
    channel.dataReceived(request)
    head, _, body = transport.drain().partition(b"\r\n\r\n")
    return head + b"\r\n", body


# -- the fixed data sets


def test_health(stub: StubTreq) -> None:
    """GET /health is the fixed ok body."""
    response, body = call_json(stub, "GET", "/health")
    assert (response.code, body) == (200, {"status": "ok"})


def test_index_lists_endpoints(stub: StubTreq) -> None:
    """GET / tells a first-time user what there is."""
    response, body = call_json(stub, "GET", "/")
    assert response.code == 200
    assert "GET /users/{id}" in body["endpoints"]


@pytest.mark.parametrize("name,rows", [("users", USERS), ("orders", ORDERS), ("products", PRODUCTS)])
def test_listing(stub: StubTreq, name: str, rows: Any) -> None:
    """GET /<collection> answers {"<collection>": [...]} with every row; a trailing slash is fine."""
    for path in (f"/{name}", f"/{name}/"):
        response, body = call_json(stub, "GET", path)
        assert response.code == 200
        assert body == {name: list(rows)}
        assert len(body[name]) >= 3


@pytest.mark.parametrize("name,rows", [("users", USERS), ("orders", ORDERS), ("products", PRODUCTS)])
def test_item(stub: StubTreq, name: str, rows: Any) -> None:
    """GET /<collection>/{id} answers that one row."""
    response, body = call_json(stub, "GET", f"/{name}/2")
    assert response.code == 200
    assert body == next(row for row in rows if row["id"] == 2)


@pytest.mark.parametrize("path", ["/users/99", "/orders/0", "/products/abc", "/users/-1"])
def test_unknown_item_is_404_json(stub: StubTreq, path: str) -> None:
    """An id that is not in the set (or not a number) is a JSON 404."""
    response, body = call_json(stub, "GET", path)
    assert response.code == 404
    assert body["error"] == "not_found"
    assert path.rsplit("/", 1)[1] in body["message"]


def test_user_one(stub: StubTreq) -> None:
    """The user that etc/gw.yaml's README example shows."""
    _, body = call_json(stub, "GET", "/users/1")
    assert body == {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "role": "admin"}


def test_orders_refer_to_users_and_products() -> None:
    """Every order's user and products exist, and its total is the sum of its lines."""
    users = {u["id"] for u in USERS}
    prices = {p["id"]: p["price"] for p in PRODUCTS}
    for order in ORDERS:
        assert order["user_id"] in users
        total = sum(prices[item["product_id"]] * item["quantity"] for item in order["items"])
        assert order["total"] == pytest.approx(total)
    assert all(isinstance(p["price"], float) for p in PRODUCTS)


def test_unknown_path_is_404_json(stub: StubTreq) -> None:
    """A path the demo does not serve is a JSON 404 naming the path."""
    response, body = call_json(stub, "GET", "/nope/deeper")
    assert response.code == 404
    assert body["error"] == "not_found"
    assert "/nope/deeper" in body["message"]


@pytest.mark.parametrize(
    "method,path,allow",
    [("DELETE", "/users/1", "GET, HEAD"), ("PUT", "/health", "GET, HEAD"), ("DELETE", "/users", "GET, HEAD, POST")],
)
def test_wrong_method_is_405_with_allow(stub: StubTreq, method: str, path: str, allow: str) -> None:
    """Methods an endpoint does not take are a JSON 405 with Allow."""
    response, body = call_json(stub, method, path)
    assert response.code == 405
    assert body["error"] == "method_not_allowed"
    assert response.headers.getRawHeaders("allow") == [allow]


def test_head_has_length_and_no_body(stub: StubTreq, clock: Clock) -> None:
    """HEAD answers the GET's headers, Content-Length included, without a body."""
    _, get_body = call(stub, "GET", "/products")
    head, body = raw_exchange(clock, b"HEAD /products HTTP/1.1\r\nHost: demo\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: %d\r\n" % len(get_body) in head
    assert body == b""


# -- POST /users


def test_create_user_echoes_with_new_ids(stub: StubTreq) -> None:
    """POST /users answers 201 with the fields sent and a fresh id each time."""
    response, body = call_json(stub, "POST", "/users", json={"name": "Barbara Liskov", "email": "bl@example.com"})
    assert response.code == 201
    assert body == {"name": "Barbara Liskov", "email": "bl@example.com", "id": len(USERS) + 1}
    _, second = call_json(stub, "POST", "/users", json={"name": "Edsger Dijkstra"})
    assert second["id"] == len(USERS) + 2


def test_create_user_is_not_stored(stub: StubTreq) -> None:
    """The demo data stays fixed: a created user is not listed afterwards."""
    call_json(stub, "POST", "/users", json={"name": "Ken Thompson"})
    _, body = call_json(stub, "GET", "/users")
    assert body == {"users": list(USERS)}


@pytest.mark.parametrize("data", [b"{not json", b"", b"\xff\xfe"])
def test_create_user_invalid_json_is_400(stub: StubTreq, data: bytes) -> None:
    """A body that is not JSON is a JSON 400."""
    response, body = call_json(stub, "POST", "/users", data=data, headers={"content-type": "application/json"})
    assert response.code == 400
    assert body["error"] == "invalid_json"


def test_create_user_needs_an_object(stub: StubTreq) -> None:
    """Valid JSON that is not an object is a 400 too."""
    response, body = call_json(stub, "POST", "/users", json=[1, 2])
    assert response.code == 400
    assert body["error"] == "invalid_user"


# -- /echo


def test_echo_reports_what_arrived(stub: StubTreq) -> None:
    """/echo/... shows method, path, query, every header value and the body length."""
    response, body = call_json(
        stub,
        "PATCH",
        "/echo/a/b?x=1&x=2&flag",
        headers={"X-Multi": ["one", "two"], "X-Single": "v"},
        data=b"0123456789",
    )
    assert response.code == 200
    assert body["method"] == "PATCH"
    assert body["path"] == "/echo/a/b"
    assert body["query"] == {"x": ["1", "2"], "flag": [""]}
    assert body["query_string"] == "x=1&x=2&flag"
    assert body["headers"]["x-multi"] == ["one", "two"]
    assert body["headers"]["x-single"] == ["v"]
    assert body["headers"]["host"] == ["demo.invalid"]
    assert body["body_length"] == 10
    assert body["http_version"] == "HTTP/1.1"
    assert body["client"] == "127.0.0.1"


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_echo_any_method_bare_path(stub: StubTreq, method: str) -> None:
    """/echo itself takes any method, with an empty query and no body."""
    response, body = call_json(stub, method, "/echo")
    assert response.code == 200
    assert (body["method"], body["path"], body["query"], body["body_length"]) == (method, "/echo", {}, 0)


# -- /bytes/{n}


@pytest.mark.parametrize("size", [0, 1, 100, 64 * 1024, 200_001])
def test_bytes_length_and_content(stub: StubTreq, size: int) -> None:
    """GET /bytes/{n} sends exactly n pattern bytes with Content-Length n."""
    response, body = call(stub, "GET", f"/bytes/{size}")
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/octet-stream"]
    assert response.length == size
    assert body == pattern_bytes(size)


def test_bytes_head_has_length_only(clock: Clock) -> None:
    """HEAD /bytes/{n} announces the length without producing anything."""
    head, body = raw_exchange(clock, b"HEAD /bytes/%d HTTP/1.1\r\nHost: demo\r\n\r\n" % MAX_BYTES)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: %d\r\n" % MAX_BYTES in head
    assert body == b""


@pytest.mark.parametrize("segment", [str(MAX_BYTES + 1), "ten", "1e3"])
def test_bytes_bad_size_is_400(stub: StubTreq, segment: str) -> None:
    """A size that is not a number, or above the cap, is a JSON 400."""
    response, body = call_json(stub, "GET", f"/bytes/{segment}")
    assert response.code == 400
    assert body["error"] == "bad_size"


def test_bytes_streams_under_back_pressure(clock: Clock) -> None:
    """/bytes/{n} writes one chunk per resume while the transport is full, never the whole body."""
    size = 1024 * 1024 + 7
    channel, transport = _connect(clock)
    channel.dataReceived(b"GET /bytes/%d HTTP/1.1\r\nHost: demo\r\n\r\n" % size)
    head, _, body = transport.drain().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Length: %d" % size in head
    resumes = 0
    while len(body) < size:
        assert len(body) <= size
        resumes += 1
        assert resumes < 100, "the producer stopped before the end"
        transport.producer.resumeProducing()  # what a socket does once its buffer drains
        chunk = transport.drain()
        assert 0 < len(chunk) <= 64 * 1024
        body += chunk
    assert body == pattern_bytes(size)
    assert resumes >= size // (64 * 1024)


def test_bytes_stops_when_client_goes_away(clock: Clock) -> None:
    """After the connection is lost mid-body, resuming writes nothing more."""
    channel, transport = _connect(clock)
    channel.dataReceived(b"GET /bytes/%d HTTP/1.1\r\nHost: demo\r\n\r\n" % MAX_BYTES)
    assert transport.drain()
    producer = transport.producer
    channel.connectionLost(Failure(ConnectionDone()))
    producer.resumeProducing()
    assert transport.value() == b""


# -- /slow/{ms}


def test_slow_answers_only_after_the_delay(stub: StubTreq, clock: Clock) -> None:
    """/slow/{ms} answers once the clock has advanced ms milliseconds, not before."""
    d = stub.get(BASE + "/slow/250")
    fired: List[Any] = []
    d.addBoth(fired.append)
    clock.advance(0.249)
    stub.flush()
    assert fired == []
    clock.advance(0.001)
    stub.flush()
    assert len(fired) == 1
    response = fired[0]
    assert response.code == 200
    assert result_of(stub.json_content(response)) == {"delayed_ms": 250}
    assert clock.getDelayedCalls() == []


def test_slow_zero(stub: StubTreq, clock: Clock) -> None:
    """/slow/0 answers on the next clock tick."""
    d = stub.get(BASE + "/slow/0")
    clock.advance(0)
    stub.flush()
    assert result_of(d).code == 200


def test_slow_cancels_its_timer_when_client_goes_away(stub: StubTreq, clock: Clock) -> None:
    """A client that disconnects while waiting cancels the pending answer."""
    d = stub.get(BASE + "/slow/5000")
    assert len(clock.getDelayedCalls()) == 1
    d.cancel()
    stub.flush()
    with pytest.raises(ResponseNeverReceived):
        result_of(d)
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("segment", [str(MAX_SLOW_MS + 1), "soon"])
def test_slow_bad_delay_is_400(stub: StubTreq, clock: Clock, segment: str) -> None:
    """A delay that is not a number, or above the cap, is a JSON 400 and sets no timer."""
    response, body = call_json(stub, "GET", f"/slow/{segment}")
    assert response.code == 400
    assert body["error"] == "bad_delay"
    assert clock.getDelayedCalls() == []
