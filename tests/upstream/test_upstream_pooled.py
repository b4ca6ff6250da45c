"""
`Upstream.forward` through the HTTP/1.1 engine's pool, in memory: the call's
`Forwarding` is the pool's request itself, so the pool's own rules (the
stale-connection resend) and the call's (read timeout, cancellation,
retries) must hold together on one object.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from tests.engine.engine_fakes import BodyCollector, FakeEndpoint
from tests.upstream.fakes import forward, outcome, proxy_request, upstream_config
from twistgate.engine.pool import UpstreamPool
from twistgate.engine.upstream_client import PooledClient
from twistgate.errors import UpstreamTimeout
from twistgate.upstream.group import Upstream, UpstreamCall

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def pooled(text: str = "targets: [{url: 'http://a'}]\ntimeouts: {read: 5s}") -> Tuple[Upstream, FakeEndpoint, Clock, List[str]]:
    clock = Clock()
    events: List[str] = []
    pool = UpstreamPool(clock, on_event=lambda name, key: events.append(name))
    upstream = Upstream(upstream_config(text), clock, client=PooledClient(pool))
    endpoint = FakeEndpoint()
    for target in upstream.targets:
        target.endpoint = endpoint
    return upstream, endpoint, clock, events


def read(response: Any) -> BodyCollector:
    body = BodyCollector()
    response.deliverBody(body)
    return body


def lose(endpoint: FakeEndpoint, index: int) -> None:
    endpoint.connections[index][0].connectionLost(Failure(ConnectionDone()))


def test_a_request_goes_through_the_pool_and_its_connection_is_reused():
    upstream, endpoint, clock, _ = pooled()
    d, call = forward(upstream)
    protocol, wire = endpoint.connections[0]
    assert wire.value().startswith(b"GET /x HTTP/1.1\r\n") and b"\r\nHost: a\r\n" in wire.value()
    protocol.dataReceived(OK)
    assert read(outcome(d)).data == b"ok"
    assert call.attempts == 1 and call.head_at == clock.seconds()
    assert upstream.targets[0].in_flight == 0
    wire.clear()
    d, _ = forward(upstream)
    assert len(endpoint.connections) == 1 and wire.value().startswith(b"GET /x HTTP/1.1\r\n")
    protocol.dataReceived(OK)
    assert read(outcome(d)).data == b"ok"
    assert len(upstream.timers) == 0  # the read timeouts of both: over


def test_a_stale_pooled_connection_is_resent_on_a_fresh_one_within_the_same_attempt():
    upstream, endpoint, clock, events = pooled()
    d, _ = forward(upstream)
    endpoint.connections[0][0].dataReceived(OK)
    read(outcome(d))
    d, call = forward(upstream)  # on the pooled connection...
    lose(endpoint, 0)  # ...which the upstream had closed: nothing came back
    assert len(endpoint.connections) == 2 and events == ["stale_retry"]
    endpoint.connections[1][0].dataReceived(OK)
    assert read(outcome(d)).data == b"ok"
    assert call.attempts == 1  # the pool's resend is not a retry of the call
    assert upstream.targets[0].breaker is None and upstream.targets[0].last_error is None


def test_no_head_within_the_read_timeout_aborts_the_pooled_connection():
    upstream, endpoint, clock, _ = pooled()
    d, _ = forward(upstream)
    settled: List[Any] = []
    d.addBoth(settled.append)
    wire = endpoint.connections[0][1]
    clock.advance(4.9)
    assert settled == []
    clock.advance(0.1)
    assert settled[0].check(UpstreamTimeout) and wire.disconnecting
    assert upstream.targets[0].in_flight == 0 and len(upstream.timers) == 0


def test_a_timed_out_attempt_is_retried_through_the_pool():
    upstream, endpoint, clock, _ = pooled("targets: [{url: 'http://a'}]\ntimeouts: {read: 1s}\nretry: {attempts: 2, backoff: 10ms, on: [timeout]}")
    d, call = forward(upstream)
    clock.advance(1)
    assert endpoint.connections[0][1].disconnecting
    clock.advance(0.01)  # the backoff
    assert len(endpoint.connections) == 2
    endpoint.connections[1][0].dataReceived(OK)
    assert read(outcome(d)).data == b"ok" and call.attempts == 2


def test_cancelling_the_call_aborts_the_pooled_request():
    upstream, endpoint, clock, _ = pooled()
    failed: List[Failure] = []
    forwarding = upstream.start_forward(proxy_request(), None, UpstreamCall(), False, None, lambda response: None, failed.append)
    forwarding.cancel()
    assert failed[0].check(CancelledError) and endpoint.connections[0][1].disconnecting
    endpoint.connections[0][0].dataReceived(OK)  # too late: nobody hears it
    assert len(failed) == 1 and upstream.targets[0].in_flight == 0 and len(upstream.timers) == 0
