"""
Listening sockets shared by the workers.

The supervisor binds each listener once (any ``tcp:``, ``tcp6:`` or
``unix:`` endpoint string, with its options) and never accepts on it; every
worker inherits the descriptor and adopts it (`reactor.adoptStreamPort`).
All workers then wait on one accept queue: whichever is free takes the next
connection, a busy or stalled worker leaves its share to the others, and a
worker that dies takes no queued connection with it.  Each worker accepts
one connection per wakeup (nginx's ``multi_accept off``), and a worker
holding clearly more connections than the others lets a wakeup pass
(`twistgate.workers.fairness`), so a burst of new connections is spread
over the workers instead of going to the first one woken.  (SO_REUSEPORT gives
each worker a queue of its own, filled by a hash of the client's address:
better spread under short connections, but a slow worker's queue waits for
it and a dead worker's queue is reset; docs/operations.md has the
measurements behind this choice.)

TLS stays in the worker: a listener's ``tls`` block wraps the adopted port
exactly as it wraps a port the worker bound itself (`twistgate.listeners`).
"""

from __future__ import annotations

import os
import socket
from typing import Any, List, Optional

import attrs
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from twistgate._twisted_compat import accept_one_at_a_time

from twistgate.config.endpoints import with_default_backlog
from twistgate.config.model import ConfigIssue, GatewayConfig

#: Endpoint types a supervisor can bind and hand to its workers.
ADOPTABLE = ("tcp", "tcp6", "unix")


def endpoint_type(text: str) -> str:
    return text.split(":", 1)[0].strip().lower()


def check_endpoints(config: GatewayConfig) -> List[ConfigIssue]:
    """With more than one worker (or ``auto``), each listener must be a socket the workers can share."""
    settings = config.sections.get("workers")
    if settings is None or settings.count == 1:
        return []
    issues = []
    for index, listener in enumerate(config.listeners):
        kind = endpoint_type(listener.endpoint)
        if kind not in ADOPTABLE:
            hint = " (put TLS in the listener's tls block)" if kind == "ssl" else ""
            issues.append(
                ConfigIssue(
                    location=settings.location,
                    message=(
                        f"listeners[{index}].endpoint: with workers > 1 a listener must be tcp:, tcp6: or unix: "
                        f"so the workers can share its socket, got {kind}:{hint}"
                    ),
                )
            )
    return issues


class _NeverAccepts(Factory):
    """The supervisor's port never reads, so this factory is never asked for a protocol."""

    protocol = Protocol
    noisy = False


@attrs.define
class BoundSocket:
    """One listener's socket in the supervisor: its descriptor and address family."""

    name: str
    endpoint: str
    port: Any  # the supervisor's IListeningPort (not reading)

    @property
    def fd(self) -> int:
        return int(self.port.fileno())

    @property
    def family(self) -> int:
        return int(self.port.addressFamily)

    def close(self) -> "defer.Deferred[Any]":
        return defer.maybeDeferred(self.port.stopListening)


def bind(reactor: Any, name: str, text: str) -> BoundSocket:
    """Bind and listen on ``text`` now; raises (port in use, permission) like a single process would."""
    endpoint = serverFromString(reactor, with_default_backlog(text))
    if not isinstance(endpoint, (TCP4ServerEndpoint, TCP6ServerEndpoint, UNIXServerEndpoint)):
        raise ValueError(f"listener {name!r}: {text!r} cannot be shared by workers")
    result: List[Any] = []
    failures: List[Any] = []
    endpoint.listen(_NeverAccepts()).addCallbacks(result.append, failures.append)
    if failures:
        failures[0].raiseException()
    if not result:  # these endpoints listen synchronously
        raise RuntimeError(f"listener {name!r}: {text!r} did not listen at once")
    port = result[0]
    port.stopReading()  # the workers accept; the supervisor only holds the socket open
    return BoundSocket(name=name, endpoint=text, port=port)


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """In a worker: a listening descriptor inherited from the supervisor, served with any factory."""

    def __init__(self, reactor: Any, fd: int, family: int, fair: Any = None) -> None:
        """:param fair: a `twistgate.workers.fairness.FairShare` (``allow()``), or None."""
        self.reactor = reactor
        self.fd = fd
        self.family = family
        self.fair = fair

    def listen(self, factory: Any) -> "defer.Deferred[Any]":
        return defer.execute(self._adopt, factory)

    def _adopt(self, factory: Any) -> Any:
        port = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        os.close(self.fd)  # adoptStreamPort works on a duplicate
        allow = self.fair.allow if self.fair is not None else None
        return accept_one_at_a_time(port, allow, self.reactor)  # no worker takes a whole burst of connections


def family_name(family: int) -> str:
    return {socket.AF_INET: "inet", socket.AF_INET6: "inet6", socket.AF_UNIX: "unix"}.get(family, str(family))


def family_from_name(name: str) -> Optional[int]:
    return {"inet": socket.AF_INET, "inet6": socket.AF_INET6, "unix": socket.AF_UNIX}.get(name)
