"""
The shared rate-limit backend: one Redis, any number of gateway processes.

Each decision is one round trip: ``EVALSHA`` of `twistgate.policies.ratelimit.script`
(``EVAL`` once per connection, when Redis does not know the script yet),
which decides against every limit of the route atomically, on the Redis
server's clock.  So N gateway processes sharing the Redis allow exactly what
one would.

Failures never hang a request: with no live connection a decision fails at
once, and a reply that takes longer than ``timeout`` fails it (the stage then
applies ``on_backend_error``).  txredisapi reconnects by itself with a short
backoff, so the limits come back with Redis without a restart.  The outage
and the recovery are logged once each, never the password
(`twistgate.redis_connection`, shared with the plugin store).
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistgate.policies.ratelimit.algorithms import Decision, Limit, Outcome
from twistgate.policies.ratelimit.script import SCRIPT_BYTES, SCRIPT_SHA
from twistgate.redis_connection import RedisConnection


class BackendUnavailable(Exception):
    """The backend could not decide (not connected, timed out, or an error reply)."""


class RedisBackend(RedisConnection):
    """Rate-limit state in Redis; decisions on the Redis server's clock."""

    name = "redis"
    log_namespace = __name__
    unavailable_message = (
        "rate limiting: {where} is unavailable ({reason}); applying on_backend_error until it is back"
    )
    recovered_message = "rate limiting: {where} is available again"

    def start(self) -> "Deferred[None]":
        """
        Connect; fires once connected, or after the connect timeout when
        Redis is not there (the gateway starts anyway: decisions then follow
        ``on_backend_error`` until it is).  So a gateway does not open its
        listeners while its limits are still connecting.
        """
        ready: Deferred[None] = Deferred()
        if self._started:
            ready.callback(None)
            return ready
        connected = self._factory.deferred
        self._start_connecting()
        timer = self._reactor.callLater(self._connect_timeout, lambda: ready.called or ready.callback(None))

        def done(_: Any) -> None:
            if timer.active():
                timer.cancel()
            if not ready.called:
                ready.callback(None)

        if connected is not None:
            connected.addBoth(done)
        else:
            done(None)
        return ready

    # -- decisions ------------------------------------------------------

    def decide(
        self, keys: Sequence[str], limits: Sequence[Limit], now_us: Optional[int] = None
    ) -> "Deferred[Decision]":
        """
        :param now_us: decide at this time instead of the server's TIME
            (tests only: it lets both backends replay the same clock).
        :return: a Deferred firing with the `Decision`, or failing with
            `BackendUnavailable`.
        """
        connection = self._connection()  # none before start(): the generation starts services
        if connection is None:
            return self._failed(Failure(BackendUnavailable("not connected")))
        args: List[str] = ["" if now_us is None else str(now_us)]
        for limit in limits:
            args.extend(limit.args())
        try:
            if SCRIPT_SHA in connection.script_hashes:
                pending = connection.evalsha(SCRIPT_SHA, list(keys), args)
                pending.addErrback(self._reload_script, connection, keys, args)
            else:
                pending = connection.eval(SCRIPT_BYTES, list(keys), args)
        except Exception:
            return self._failed(Failure())
        result: "Deferred[Decision]" = Deferred()
        timer = self._reactor.callLater(self.timeout, self._timed_out, result)

        def done(reply: Any) -> None:
            if timer.active():
                timer.cancel()
            if result.called:
                return  # timed out already: the late reply is dropped
            if isinstance(reply, Failure):
                self._failed(reply).addErrback(result.errback)
                return
            try:
                decision = _parse(reply, len(limits))
            except Exception:
                self._failed(Failure(BackendUnavailable(f"unexpected reply {reply!r}"))).addErrback(result.errback)
                return
            self._recovered()
            result.callback(decision)

        pending.addBoth(done)
        return result

    def _reload_script(self, failure: Failure, connection: Any, keys: Sequence[str], args: List[str]) -> Any:
        if failure.check(self._txredisapi.ScriptDoesNotExist):  # Redis restarted: EVAL once
            return connection.eval(SCRIPT_BYTES, list(keys), args)
        return failure

    def _timed_out(self, result: "Deferred[Decision]") -> None:
        if not result.called:
            self._failed(Failure(BackendUnavailable(f"no reply within {self.timeout:g}s"))).addErrback(result.errback)

    def _failed(self, failure: Failure) -> "Deferred[Any]":
        self._unavailable(failure.getErrorMessage())
        if not failure.check(BackendUnavailable):
            failure = Failure(BackendUnavailable(failure.getErrorMessage()))
        d: "Deferred[Any]" = Deferred()
        d.errback(failure)
        return d


def _parse(reply: Any, count: int) -> Decision:
    values = [int(v) for v in reply]
    if len(values) != 1 + 4 * count:
        raise ValueError("wrong length")
    outcomes = []
    for i in range(count):
        allowed, remaining, reset, retry = values[1 + 4 * i : 5 + 4 * i]
        outcomes.append(Outcome(bool(allowed), remaining, reset, retry))
    return Decision(all(o.allowed for o in outcomes), tuple(outcomes))
