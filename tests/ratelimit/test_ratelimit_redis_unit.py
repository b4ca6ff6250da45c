"""
The Redis backend's own logic without a Redis (a fake connection and a
`Clock`): one EVALSHA per decision once the script is known, a slow reply
times out into BackendUnavailable (and a late reply is dropped), no
connection fails at once, outages and recoveries are logged once, never the
password.  The real server is exercised in tests/integration.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher

from twistgate.policies.ratelimit.algorithms import FIXED_WINDOW, Limit
from twistgate.policies.ratelimit.redis_backend import BackendUnavailable, RedisBackend
from twistgate.policies.ratelimit.script import SCRIPT_BYTES, SCRIPT_SHA
from twistgate.testing import result_of

LIMIT = [Limit(FIXED_WINDOW, 10, 60_000_000, 10)]


class FakeConnection:
    """Stands for a connected txredisapi protocol; records the commands."""

    connected = 1

    def __init__(self) -> None:
        self.script_hashes = set()
        self.calls: List[Any] = []
        self.pending: List[Deferred] = []

    def _reply(self) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def eval(self, script, keys, args):
        self.calls.append(("EVAL", script, keys, args))
        self.script_hashes.add(SCRIPT_SHA)
        return self._reply()

    def evalsha(self, sha, keys, args):
        self.calls.append(("EVALSHA", sha, keys, args))
        return self._reply()


@pytest.fixture
def logged():
    events: List[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def make(clock, connected=True):
    backend = RedisBackend(clock, host="10.0.0.7", port=6379, password="hunter2", timeout=0.1)
    connection = FakeConnection()
    if connected:
        backend._factory.pool.append(connection)
    return backend, connection


REPLY = ["1700000000000000", "1", "9", "60000000", "0"]


def test_first_decision_sends_the_script_then_only_its_sha():
    clock = Clock()
    backend, connection = make(clock)
    d1 = backend.decide(["k"], LIMIT)
    connection.pending[0].callback(REPLY)
    decision = result_of(d1)
    assert decision.allowed and decision.outcomes[0].remaining == 9
    d2 = backend.decide(["k"], LIMIT, now_us=5)
    connection.pending[1].callback(REPLY)
    result_of(d2)
    (eval_call, evalsha_call) = connection.calls
    assert eval_call[0] == "EVAL" and eval_call[1] == SCRIPT_BYTES
    assert evalsha_call[:3] == ("EVALSHA", SCRIPT_SHA, ["k"])
    assert evalsha_call[3] == ["5", str(FIXED_WINDOW), "10", "60000000", "10"]  # time override, then the limit
    assert eval_call[3][0] == ""  # production: the server's clock


def test_a_slow_reply_times_out_and_the_late_reply_is_dropped():
    clock = Clock()
    backend, connection = make(clock)
    d = backend.decide(["k"], LIMIT)
    clock.advance(0.099)
    assert not d.called
    clock.advance(0.001)
    with pytest.raises(BackendUnavailable):
        result_of(d)
    connection.pending[0].callback(REPLY)  # arrives late: nothing happens, nothing is logged as unhandled
    assert backend.healthy is False


def test_no_connection_fails_at_once():
    clock = Clock()
    backend, _ = make(clock, connected=False)
    d = backend.decide(["k"], LIMIT)
    with pytest.raises(BackendUnavailable):
        result_of(d)
    assert clock.getDelayedCalls() == []


def test_error_replies_are_backend_failures():
    clock = Clock()
    backend, connection = make(clock)
    d = backend.decide(["k"], LIMIT)
    connection.pending[0].errback(RuntimeError("OOM command not allowed"))
    with pytest.raises(BackendUnavailable):
        result_of(d)


def test_outage_and_recovery_are_logged_once_each_without_the_password(logged):
    clock = Clock()
    backend, connection = make(clock, connected=False)
    for _ in range(5):
        backend.decide(["k"], LIMIT).addErrback(lambda f: None)
    backend._factory.pool.append(connection)
    for i in range(3):
        d = backend.decide(["k"], LIMIT)
        connection.pending[i].callback(REPLY)
        result_of(d)
    texts = [e.get("log_format", "").format(**e) for e in logged if "rate limiting" in e.get("log_format", "")]
    assert len(texts) == 2
    assert "unavailable" in texts[0] and "available again" in texts[1]
    assert all("redis://10.0.0.7:6379/0" in t for t in texts)
    assert not any("hunter2" in t for t in texts)
    assert backend.failures == 5 and backend.healthy is True


def test_a_flushed_script_is_sent_again():
    """After SCRIPT FLUSH (or a failover) Redis answers NOSCRIPT: the backend falls back to EVAL."""
    import txredisapi

    clock = Clock()
    backend, connection = make(clock)
    connection.script_hashes.add(SCRIPT_SHA)
    d = backend.decide(["k"], LIMIT)
    connection.pending[0].errback(txredisapi.ScriptDoesNotExist("NOSCRIPT"))
    assert connection.calls[-1][0] == "EVAL"
    connection.pending[1].callback(REPLY)
    assert result_of(d).allowed


def test_malformed_replies_are_failures_not_crashes():
    clock = Clock()
    backend, connection = make(clock)
    d = backend.decide(["k"], LIMIT)
    connection.pending[0].callback(["1", "2"])
    with pytest.raises(BackendUnavailable):
        result_of(d)
