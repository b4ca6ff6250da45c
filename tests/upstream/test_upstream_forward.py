"""
`Upstream.forward` end to end against a scripted agent on a Clock: retries,
breakers, ejection, budgets, timeouts, and the bookkeeping the admin reads.
"""

from __future__ import annotations

import json

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseFailed

from twistgate.errors import UpstreamTimeout, UpstreamUnavailable
from twistgate.upstream.body import StreamingBody
from twistgate.upstream.failures import CircuitOpen, NoHealthyUpstream

from tests.upstream.fakes import FakeResponse, ScriptedAgent, forward, make_upstream, outcome, proxy_request

TWO = "targets: [{url: 'http://a'}, {url: 'http://b'}]\n"


def error_of(d):
    result = outcome(d)
    assert isinstance(result, Failure), f"expected a failure, got {result!r}"
    return result.value


def test_one_attempt_without_retry_maps_failures():
    upstream, agent, _ = make_upstream("targets: [{url: 'http://a'}]")
    d, call = forward(upstream)
    agent.sent[0].refuse()
    assert isinstance(error_of(d), UpstreamUnavailable)
    assert call.attempts == 1 and len(agent.sent) == 1


def test_connect_failure_is_retried_on_the_other_target():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 100ms}")
    d, call = forward(upstream)
    first = agent.sent[0]
    first.refuse()
    assert len(agent.sent) == 1  # waiting out the backoff
    clock.advance(0.1)
    assert len(agent.sent) == 2 and agent.sent[1].host != first.host
    agent.sent[1].answer(200)
    assert outcome(d).code == 200
    assert call.attempts == 2 and call.target.url == "http://" + agent.sent[1].host.decode()
    assert call.head_at == clock.seconds()


def test_retries_stop_after_attempts_with_the_last_error():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10ms}", agent=ScriptedAgent(auto={b"a": "refuse", b"b": "refuse"}))
    d, call = forward(upstream)
    clock.pump([0.01] * 10)
    assert isinstance(error_of(d), UpstreamUnavailable)
    assert call.attempts == 3 and agent.hosts() in ([b"a", b"b", b"a"], [b"b", b"a", b"b"])


def test_post_is_never_resent_after_it_may_have_arrived():
    """A reset after sending: the POST is not retried (the upstream may have acted on it)."""
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10ms}")
    d, call = forward(upstream, proxy_request(b"POST"))
    agent.sent[0].reset()
    clock.advance(1)
    assert isinstance(error_of(d), UpstreamUnavailable)
    assert len(agent.sent) == 1 and call.attempts == 1


def test_post_is_retried_when_it_never_left():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10ms}")
    d, _ = forward(upstream, proxy_request(b"POST"))
    agent.sent[0].refuse()
    clock.advance(1)
    agent.sent[1].answer(201)
    assert outcome(d).code == 201


def test_idempotency_key_or_route_opt_in_allow_resending():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 2, backoff: 10ms}")
    d, _ = forward(upstream, proxy_request(b"PATCH", headers={b"Idempotency-Key": [b"k"]}))
    agent.sent[0].reset()
    clock.advance(1)
    agent.sent[1].answer(200)
    assert outcome(d).code == 200

    from twistgate.upstream.settings import RouteRetryConfig

    class Route:
        name = "r"
        policies = {"retry": RouteRetryConfig(non_idempotent=True)}

    d, _ = forward(upstream, proxy_request(b"POST"), route=Route())
    agent.sent[2].reset()
    clock.advance(1)
    agent.sent[3].answer(200)
    assert outcome(d).code == 200


def test_listed_status_is_retried_and_the_response_discarded():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 2, backoff: 10ms, on: [503]}")
    d, call = forward(upstream)
    busy = agent.sent[0].answer(503, b"busy")
    assert busy.transport.stopped  # its body is not wanted
    clock.advance(1)
    agent.sent[1].answer(200)
    assert outcome(d).code == 200 and call.attempts == 2


def test_last_attempts_status_reaches_the_client_as_is():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 2, backoff: 10ms, on: [503]}", agent=ScriptedAgent(auto={b"a": 503, b"b": 503}))
    d, call = forward(upstream)
    clock.advance(1)
    assert outcome(d).code == 503 and call.attempts == 2


def test_a_streamed_body_beyond_the_replay_buffer_is_not_retried():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10ms, replay_buffer: 4B}")
    body = StreamingBody(None, None)
    d, _ = forward(upstream, proxy_request(b"PUT"), body)
    sink = []
    producer = agent.sent[0].body
    producer.startProducing(type("C", (), {"write": lambda self, data: sink.append(data)})())
    body.write(b"hello world")  # 11 bytes went upstream, more than the 4 kept
    producer.stopProducing()
    agent.sent[0].reset()
    clock.advance(1)
    assert isinstance(error_of(d), UpstreamUnavailable) and len(agent.sent) == 1


def test_a_kept_body_is_replayed_whole_on_the_next_attempt():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10ms}")
    body = StreamingBody(None, None)
    d, _ = forward(upstream, proxy_request(b"PUT"), body)
    first_sink, second_sink = [], []
    first = agent.sent[0].body
    first.startProducing(type("C", (), {"write": lambda self, data: first_sink.append(data)})())
    body.write(b"part one, ")
    first.stopProducing()
    agent.sent[0].reset()
    body.write(b"part two")  # arrives between the attempts: kept too
    clock.advance(1)
    second = agent.sent[1].body
    done = second.startProducing(type("C", (), {"write": lambda self, data: second_sink.append(data)})())
    first.stopProducing()  # a stale call from the first attempt changes nothing
    body.finish()
    assert b"".join(second_sink) == b"part one, part two" and done.called


def test_budget_stops_a_retry_storm():
    upstream, agent, clock = make_upstream(
        TWO + "retry: {attempts: 3, backoff: 1ms, budget: 10%, budget_min_per_second: 0}",
        agent=ScriptedAgent(auto={b"a": "refuse", b"b": "refuse"}),
    )
    results = [forward(upstream)[0] for _ in range(50)]
    clock.pump([0.01] * 20)
    assert all(isinstance(error_of(d), UpstreamUnavailable) for d in results)
    assert len(agent.sent) == 50 + 5  # 10% of 50 requests may be retried


def test_read_timeout_is_504_and_cancels_the_attempt():
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\ntimeouts: {read: 2s}")
    d, _ = forward(upstream)
    clock.advance(2)
    assert agent.sent[0].cancelled
    assert isinstance(error_of(d), UpstreamTimeout)


def test_total_timeout_bounds_every_attempt_and_backoff():
    upstream, agent, clock = make_upstream(TWO + "timeouts: {read: 2s, total: 3s}\nretry: {attempts: 5, backoff: 10ms}")
    d, call = forward(upstream)
    clock.advance(2)  # first attempt times out, retried
    clock.advance(0.01)
    assert len(agent.sent) == 2
    clock.advance(0.99)
    assert isinstance(error_of(d), UpstreamTimeout)
    assert agent.sent[1].cancelled and call.attempts == 2
    assert upstream.targets[0].in_flight == upstream.targets[1].in_flight == 0


def test_cancelling_cancels_the_attempt_or_the_backoff():
    upstream, agent, clock = make_upstream(TWO + "retry: {attempts: 3, backoff: 10s}")
    d, _ = forward(upstream)
    d.cancel()
    assert agent.sent[0].cancelled and outcome(d).check(CancelledError)
    d, _ = forward(upstream)
    agent.sent[1].refuse()
    d.cancel()
    clock.advance(20)
    assert len(agent.sent) == 2 and clock.getDelayedCalls() == []


def test_open_breaker_answers_at_once_without_touching_the_target():
    upstream, agent, clock = make_upstream(
        "targets: [{url: 'http://a'}]\ncircuit_breaker: {failure_threshold: 2, recovery_timeout: 30s}",
        agent=ScriptedAgent(auto={b"a": "refuse"}),
    )
    for _ in range(2):
        forward(upstream)
    d, call = forward(upstream)
    error = error_of(d)
    assert isinstance(error, CircuitOpen) and error.status == 503 and error.code == "circuit_open"
    assert (b"Retry-After", b"30") in error.headers
    assert len(agent.sent) == 2 and call.attempts == 0
    clock.advance(30)  # half-open by the timer: the next request is a probe
    agent.auto = {b"a": 200}
    d, _ = forward(upstream)
    response = outcome(d)
    assert upstream.targets[0].breaker.state == "half_open"  # decided when the body is over
    response.deliverBody(type("P", (), {"makeConnection": lambda s, t: None, "dataReceived": lambda s, d: None, "connectionLost": lambda s, r: None})())
    assert upstream.targets[0].breaker.state == "closed"


def test_breaker_routes_around_one_target():
    upstream, agent, _ = make_upstream(TWO + "circuit_breaker: {failure_threshold: 1}", agent=ScriptedAgent(auto={b"a": "refuse", b"b": 200}))
    for _ in range(6):
        forward(upstream)
    assert agent.hosts().count(b"a") == 1


def test_failing_statuses_count_for_breaker_and_ejection():
    upstream, agent, clock = make_upstream(
        TWO + "outlier_detection: {consecutive_failures: 2, base_ejection_time: 10s}",
        agent=ScriptedAgent(auto={b"a": 502, b"b": 200}),
    )
    for _ in range(4):
        forward(upstream)
    a = upstream.targets[0]
    assert a.outlier.ejected_until == 10 and a.last_error == "answered 502"
    for _ in range(4):
        forward(upstream)
    assert agent.hosts()[4:] == [b"b"] * 4
    clock.advance(10)
    forward(upstream)
    forward(upstream)
    assert b"a" in agent.hosts()[8:]


def test_no_healthy_upstream_when_everything_is_out():
    upstream, agent, _ = make_upstream("targets: [{url: 'http://a'}]")
    upstream.targets[0].healthy = False
    upstream._refresh()
    d, _ = forward(upstream)
    error = error_of(d)
    assert isinstance(error, NoHealthyUpstream) and error.code == "no_healthy_upstream"
    assert agent.sent == []


def test_in_flight_counts_until_the_body_is_over_and_snapshot_is_json():
    upstream, agent, clock = make_upstream(TWO + "balance: least_connections")
    d1, _ = forward(upstream)
    d2, _ = forward(upstream)
    assert sorted(agent.hosts()) == [b"a", b"b"]  # least connections spreads
    clock.advance(0.25)
    upstream_response = FakeResponse(200, None)
    agent.sent[0].deferred.callback(upstream_response)
    response = outcome(d1)
    snapshot = upstream.snapshot()
    json.dumps(snapshot)
    assert [t["in_flight"] for t in snapshot] == [1, 1]
    assert snapshot[0]["ewma_ms"] == 250.0
    assert set(snapshot[0]) >= {"url", "weight", "healthy", "breaker", "in_flight", "ejected", "ejected_until", "ewma_ms", "last_error"}
    sink = []
    response.deliverBody(type("P", (), {"makeConnection": lambda s, t: None, "dataReceived": lambda s, data: sink.append(data), "connectionLost": lambda s, r: sink.append("end")})())
    upstream_response.send(b"abc")
    upstream_response.end()
    assert sink == [b"abc", "end"]
    assert upstream.targets[0].in_flight == 0


def test_a_body_that_stalls_is_cut_after_the_read_timeout():
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\ntimeouts: {read: 5s}\noutlier_detection: {consecutive_failures: 1, max_ejected: 100%}")
    d, _ = forward(upstream)
    upstream_response = FakeResponse(200, None)
    agent.sent[0].deferred.callback(upstream_response)
    response = outcome(d)
    lost = []
    response.deliverBody(type("P", (), {"makeConnection": lambda s, t: None, "dataReceived": lambda s, data: None, "connectionLost": lambda s, r: lost.append(r)})())
    clock.advance(4)
    upstream_response.send(b"x")  # each chunk restarts the timer
    clock.advance(4)
    assert not upstream_response.transport.stopped
    clock.advance(1)
    assert upstream_response.transport.stopped
    upstream_response.end(Failure(ResponseFailed([])))
    assert lost[0].check(UpstreamTimeout)
    assert upstream.targets[0].outlier.ejected_until is not None  # a stalled body is a failure


def test_a_body_asked_for_with_its_head_is_timed_from_then_not_from_the_send():
    """The head's read timer carries on for the body: the gap still runs from the head, a whole read timeout."""
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\ntimeouts: {read: 5s}")
    d, _ = forward(upstream)
    clock.advance(4)  # the head comes late, within the read timeout
    lost = []
    reader = type("P", (), {"makeConnection": lambda s, t: None, "dataReceived": lambda s, data: None, "connectionLost": lambda s, r: lost.append(r)})()
    d.addCallback(lambda response: response.deliverBody(reader))  # in the head's callback, as the exchange does
    upstream_response = FakeResponse(200, None)
    agent.sent[0].deferred.callback(upstream_response)
    clock.advance(4.5)  # past the send's read timeout: not the body's
    assert not upstream_response.transport.stopped
    clock.advance(0.5)
    assert upstream_response.transport.stopped
    upstream_response.end(Failure(ResponseFailed([])))
    assert lost[0].check(UpstreamTimeout)
    assert len(upstream.timers) == 0


def test_a_body_read_whole_leaves_no_timer_behind():
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\ntimeouts: {read: 5s}")
    d, _ = forward(upstream)
    sink = []
    reader = type("P", (), {"makeConnection": lambda s, t: None, "dataReceived": lambda s, data: sink.append(data), "connectionLost": lambda s, r: sink.append("end")})()
    d.addCallback(lambda response: response.deliverBody(reader))
    agent.sent[0].deferred.callback(FakeResponse(200, b"abc"))
    assert sink == [b"abc", "end"]
    assert len(upstream.timers) == 0 and clock.getDelayedCalls() == []
    assert upstream.targets[0].in_flight == 0


def test_back_pressure_suspends_the_body_timer():
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\ntimeouts: {read: 5s}")
    d, _ = forward(upstream)
    upstream_response = FakeResponse(200, None)
    agent.sent[0].deferred.callback(upstream_response)
    response = outcome(d)
    seen = {}
    response.deliverBody(type("P", (), {"makeConnection": lambda s, t: seen.setdefault("t", t), "dataReceived": lambda s, data: None, "connectionLost": lambda s, r: None})())
    seen["t"].pauseProducing()  # a slow client
    clock.advance(60)
    assert not upstream_response.transport.stopped
    seen["t"].resumeProducing()
    clock.advance(5)
    assert upstream_response.transport.stopped


def test_a_lone_target_taken_without_asking_the_balancer_follows_the_serving_tier():
    """The one-target shortcut is recomputed with the candidates: drained, it is no longer chosen; back, it is."""
    upstream, agent, _ = make_upstream("targets: [{url: 'http://a'}]")
    upstream.drained.add("http://a")
    upstream.refresh()
    d, _ = forward(upstream)
    assert isinstance(error_of(d), NoHealthyUpstream) and agent.sent == []
    upstream.drained.clear()
    upstream.refresh()
    d, call = forward(upstream)
    agent.sent[0].answer(200)
    assert outcome(d).code == 200 and call.target.url == "http://a"


def test_a_lone_target_with_a_breaker_still_asks_it():
    """No shortcut past a breaker: an open one refuses the lone target (503), as the balancer's way would."""
    upstream, agent, _ = make_upstream(
        "targets: [{url: 'http://a'}]\ncircuit_breaker: {failure_threshold: 1, recovery_timeout: 30s}"
    )
    d, _ = forward(upstream)
    agent.sent[0].refuse()
    error_of(d)
    d, _ = forward(upstream)
    assert isinstance(error_of(d), (CircuitOpen, NoHealthyUpstream)) and len(agent.sent) == 1


def test_a_retry_on_a_lone_target_goes_to_it_again():
    """The tried targets are noted as a retry starts: with one target, the retry is on that one."""
    upstream, agent, clock = make_upstream("targets: [{url: 'http://a'}]\nretry: {attempts: 2, backoff: 10ms}")
    d, call = forward(upstream)
    agent.sent[0].refuse()
    clock.advance(0.01)
    agent.sent[1].answer(200)
    assert outcome(d).code == 200 and call.attempts == 2 and agent.hosts() == [b"a", b"a"]
