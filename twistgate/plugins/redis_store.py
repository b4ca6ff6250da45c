"""
The ``redis://`` plugin store backend: one Redis shared by every gateway
process and node (see `twistgate.plugins.store`).

One round trip per operation; ``incr`` is one Lua script (INCRBY, and the
expiry of a new counter), so counters are exact under any concurrency.
Connecting is lazy: an operation made before the connection is up waits for
it, up to ``timeout``, like any reply; then it fails with
`StoreUnavailable`, and the plugin decides.  txredisapi reconnects by
itself; the outage and the recovery are logged once each, never the
password (`twistgate.redis_connection`, shared with the rate limiter).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from twistgate.plugins.store import StoreUnavailable
from twistgate.redis_connection import RedisConnection

__all__ = ["RedisStore"]

INCR_SCRIPT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class RedisStore(RedisConnection):
    """Plugin state in Redis, under ``key_prefix``."""

    name = "redis"
    log_namespace = "twistgate.plugins.store"
    unavailable_message = "plugin store: {where} is unavailable ({reason})"
    recovered_message = "plugin store: {where} is available again"

    def __init__(self, reactor: Any, *, key_prefix: str = "twistgate:plugins:", **connection: Any) -> None:
        """:param connection: where Redis is and how long to wait for it (`RedisConnection`)."""
        super().__init__(reactor, **connection)
        self.key_prefix = key_prefix

    def start(self) -> None:
        if not self._started:
            self._start_connecting()

    # -- the operations ---------------------------------------------------------

    def get(self, key: str) -> "Deferred[Optional[str]]":
        return self._run(lambda c: c.get(self.key_prefix + key), _text)

    def set(self, key: str, value: str, ttl: Optional[float]) -> "Deferred[None]":
        full = self.key_prefix + key
        if ttl is None:
            return self._run(lambda c: c.set(full, value), lambda reply: None)
        return self._run(lambda c: c.set(full, value, pexpire=max(1, int(ttl * 1000))), lambda reply: None)

    def incr(self, key: str, amount: int, ttl: Optional[float]) -> "Deferred[int]":
        args = [str(amount), "" if ttl is None else str(max(1, int(ttl * 1000)))]
        return self._run(lambda c: c.eval(INCR_SCRIPT, [self.key_prefix + key], args), int)

    def delete(self, key: str) -> "Deferred[bool]":
        return self._run(lambda c: c.delete(self.key_prefix + key), lambda count: int(count) > 0)

    # -- one round trip, bounded ---------------------------------------------------

    def _run(self, command: Callable[[Any], "Deferred[Any]"], parse: Callable[[Any], Any]) -> "Deferred[Any]":
        result: "Deferred[Any]" = Deferred()
        timer = self._reactor.callLater(self.timeout, self._give_up, result)

        def reply(value: Any) -> None:
            if result.called:
                return  # timed out already: a late reply is dropped
            if timer.active():
                timer.cancel()
            if isinstance(value, Failure):
                if value.check(self._txredisapi.ResponseError):  # Redis refused the command: the caller's mistake
                    result.errback(Failure(ValueError(value.getErrorMessage())))
                else:
                    self._failed(result, value.getErrorMessage())
                return
            try:
                parsed = parse(value)
            except Exception:
                self._failed(result, f"unexpected reply {value!r}")
                return
            self._recovered()
            result.callback(parsed)

        def send(connection: Any) -> "Deferred[Any]":
            return command(connection)

        connection = self._connection()
        if connection is not None:
            pending = _call(send, connection)
        elif not self._started:
            pending = _failed_now(StoreUnavailable("the store is not started"))
        else:  # connecting: wait for it, within the same bound
            pending = self._factory.getConnection(peek=True).addCallback(send)
        pending.addBoth(reply)
        return result

    def _give_up(self, result: "Deferred[Any]") -> None:
        if not result.called:
            self._failed(result, f"no reply within {self.timeout:g}s")

    def _failed(self, result: "Deferred[Any]", reason: str) -> None:
        self._unavailable(reason)
        result.errback(Failure(StoreUnavailable(f"{self.where()}: {reason}")))


def _text(reply: Any) -> Optional[str]:
    if reply is None:
        return None
    return reply.decode("utf-8") if isinstance(reply, bytes) else str(reply)


def _call(send: Callable[[Any], "Deferred[Any]"], connection: Any) -> "Deferred[Any]":
    try:
        return send(connection)
    except Exception:
        return _failed_now(Failure())


def _failed_now(error: Any) -> "Deferred[Any]":
    d: "Deferred[Any]" = Deferred()
    d.errback(error if isinstance(error, Failure) else Failure(error))
    return d
