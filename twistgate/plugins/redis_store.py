"""
The ``redis://`` plugin store backend: one Redis shared by every gateway
process and node (see `twistgate.plugins.store`).

One round trip per operation; ``incr`` is one Lua script (INCRBY, and the
expiry of a new counter), so counters are exact under any concurrency.
Connecting is lazy: an operation made before the connection is up waits for
it, up to ``timeout``, like any reply; then it fails with
`StoreUnavailable`, and the plugin decides.  txredisapi reconnects by
itself; the outage and the recovery are logged once each, never the
password.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from twistgate.plugins.store import StoreUnavailable

__all__ = ["RedisStore"]

_log = Logger(namespace="twistgate.plugins.store")

INCR_SCRIPT = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if ARGV[2] ~= '' and redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""


class RedisStore:
    """Plugin state in Redis, under ``key_prefix``."""

    name = "redis"

    def __init__(
        self,
        reactor: Any,
        *,
        host: str,
        port: int,
        db: int = 0,
        username: Optional[str] = None,
        password: Optional[str] = None,
        timeout: float = 0.1,
        key_prefix: str = "twistgate:plugins:",
        connect_timeout: float = 2.0,
    ) -> None:
        import txredisapi  # only a Redis backend needs it

        self._txredisapi = txredisapi
        self._reactor = reactor
        self.host, self.port, self.db = host, port, db
        self.timeout = timeout
        self.key_prefix = key_prefix
        self._connect_timeout = connect_timeout
        factory = txredisapi.RedisFactory(
            f"{host}:{port}", db, 1, isLazy=True, password=password, username=username,
            replyTimeout=max(1.0, timeout * 10), convertNumbers=False,
        )  # fmt: skip
        factory.reconnect = True
        factory.initialDelay = 0.1
        factory.maxDelay = 2.0
        self._factory = factory
        self._started = False
        self.healthy: Optional[bool] = None
        self.failures = 0

    def where(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    def start(self) -> None:
        if not self._started:
            self._started = True
            endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self._connect_timeout)
            self._factory.startConnecting(endpoint)

    def stop(self) -> "Deferred[Any]":
        self._started = False
        return self._factory.disconnect()

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

        connection = next((c for c in self._factory.pool if c.connected), None)
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
        self.failures += 1
        if self.healthy is not False:
            self.healthy = False
            _log.warn("plugin store: {where} is unavailable ({reason})", where=self.where(), reason=reason)
        result.errback(Failure(StoreUnavailable(f"{self.where()}: {reason}")))

    def _recovered(self) -> None:
        if self.healthy is False:
            _log.info("plugin store: {where} is available again", where=self.where())
        self.healthy = True

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", self.where()), ("healthy", self.healthy), ("failures", self.failures))


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
