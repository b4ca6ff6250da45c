"""
The part of a Redis-backed service that is the connection, the same for
the rate-limit backend (`twistgate.policies.ratelimit.redis_backend`) and
the plugin store (`twistgate.plugins.redis_store`): one txredisapi
connection, made lazily and remade by txredisapi itself after an outage
with a short backoff; the service's health as its commands find it, with
the outage and the recovery logged once each; and where it points, for
logs and the admin API, never with the password.

Each service subclasses `RedisConnection`, adds its commands, and names
what its log lines are about (`log_namespace`) and what an outage means for
it (`unavailable_message`, `recovered_message`).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

__all__ = ["RedisConnection"]


class RedisConnection:
    """
    A lazily made, self-healing connection to one Redis, and the health of
    the service using it.

    :param timeout: how long the service's commands wait for a reply; a
        stuck server is cut off (and reconnected) after ten times that.
    :param connect_timeout: how long one connection attempt may take.
    :param max_retry_delay: the longest wait between reconnection attempts.
    """

    #: The namespace the service logs its outages and recoveries under, and
    #: its words for an outage (``where`` and ``reason`` are filled in) and
    #: for the recovery (``where``).
    log_namespace: str
    unavailable_message: str
    recovered_message: str

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
        connect_timeout: float = 2.0,
        max_retry_delay: float = 2.0,
    ) -> None:
        import txredisapi  # imported here: only a Redis-backed service needs it

        self._txredisapi = txredisapi
        self._reactor = reactor
        self._log = Logger(namespace=self.log_namespace)
        self.host, self.port, self.db = host, port, db
        self.timeout = timeout
        self._connect_timeout = connect_timeout
        factory = txredisapi.RedisFactory(
            f"{host}:{port}",
            db,
            1,  # one connection: replies are pipelined on it
            isLazy=True,
            password=password,
            username=username,
            # A stuck server is cut off (and reconnected) after a while;
            # commands give up much sooner, after `timeout`.
            replyTimeout=max(1.0, timeout * 10),
            convertNumbers=False,
        )
        factory.reconnect = True
        factory.initialDelay = 0.1
        factory.maxDelay = max_retry_delay
        self._factory = factory
        self._started = False
        self.healthy: Optional[bool] = None  # None until the first command
        self.failures = 0

    def where(self) -> str:
        """For logs and admin output: never the password."""
        return f"redis://{self.host}:{self.port}/{self.db}"

    # -- lifetime -------------------------------------------------------

    def _start_connecting(self) -> None:
        self._started = True
        endpoint = HostnameEndpoint(self._reactor, self.host, self.port, timeout=self._connect_timeout)
        self._factory.startConnecting(endpoint)

    def stop(self) -> "Deferred[Any]":
        self._started = False
        return self._factory.disconnect()

    def _connection(self) -> Any:
        """The connected txredisapi protocol, or None while there is none."""
        for connection in self._factory.pool:
            if connection.connected:
                return connection
        return None

    # -- health ---------------------------------------------------------

    def _unavailable(self, reason: str) -> None:
        """A command failed for want of Redis: counted, and logged when the outage starts."""
        self.failures += 1
        if self.healthy is not False:
            self.healthy = False
            self._log.warn(self.unavailable_message, where=self.where(), reason=reason)

    def _recovered(self) -> None:
        if self.healthy is False:
            self._log.info(self.recovered_message, where=self.where())
        self.healthy = True

    def describe(self) -> Tuple[Tuple[str, Any], ...]:
        return (("backend", self.where()), ("healthy", self.healthy), ("failures", self.failures))

