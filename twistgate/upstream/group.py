"""
An upstream group at run time: its targets, balancer, pool and agent, and
`forward()`, the one way a request is sent to it.

The forwarded hop uses a bare `Agent` over the group's own sized
`HTTPConnectionPool`: no cookie jar, no content decoding, no redirects (see
PITFALLS: treq's client would add all three).  Side calls (health checks and
the like) get a treq `HTTPClient` over the same pool.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectingCancelledError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import URI, Agent, HTTPConnectionPool

from twistgate.config.model import TargetConfig, UpstreamConfig
from twistgate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from twistgate.exchange import ProxyRequest
from twistgate.upstream.balancer import RoundRobin

_log = Logger()


class Target:
    """One upstream server: the bytes the hot path needs, computed once."""

    __slots__ = ("config", "url", "base", "host_header", "uri", "key", "endpoint")

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        default_port = 443 if config.scheme == "https" else 80
        host = f"[{config.host}]" if ":" in config.host else config.host
        authority = host if config.port == default_port else f"{host}:{config.port}"
        self.url = f"{config.scheme}://{authority}"
        self.base = self.url.encode("ascii")
        self.host_header = authority.encode("ascii")
        self.uri = URI.fromBytes(self.base + b"/")
        self.key = (self.uri.scheme, self.uri.host, self.uri.port)
        self.endpoint: Any = None  # set by the Upstream that owns the agent

    def __repr__(self) -> str:
        return f"<Target {self.url}>"


class UpstreamCall:
    """
    One request's dealings with an upstream: the target(s) tried and when the
    response head arrived.  The exchange keeps it for cancellation and for
    its record (access log, metrics).
    """

    __slots__ = ("target", "attempts", "head_at")

    def __init__(self) -> None:
        self.target: Optional[Target] = None
        self.attempts = 0
        self.head_at: Optional[float] = None


def describe_failure(failure: Failure) -> GatewayError:
    """Map a failure of an upstream attempt to the error the client sees."""
    if failure.check(GatewayError):
        return failure.value
    if failure.check(ConnectTimeoutError):
        return UpstreamTimeout("Connecting to the upstream service timed out.")
    if failure.check(ConnectError):
        return UpstreamUnavailable()
    return UpstreamUnavailable("The upstream service failed to answer.")


class Upstream:
    """A named group of targets behind one balancer, pool and agent."""

    def __init__(self, config: UpstreamConfig, reactor: Any, agent: Any = None) -> None:
        self.config = config
        self.name = config.name
        self.clock = reactor
        self.targets: Tuple[Target, ...] = tuple(Target(t) for t in config.targets)
        self._balancer = RoundRobin(self.targets, [t.weight for t in config.targets])
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = config.pool.max_idle_per_target
        self.pool.cachedConnectionTimeout = config.pool.idle_timeout
        self.pool.retryAutomatically = True
        self.read_timeout = config.timeouts.read
        # `agent` lets tests put an in-memory agent in place of the network.
        self.agent = agent if agent is not None else Agent(reactor, connectTimeout=config.timeouts.connect, pool=self.pool)
        if isinstance(self.agent, Agent):
            # Agent.request() parses the URL and builds an endpoint (IDNA
            # encoding included) on every call: about a third of its cost.
            # Targets are fixed, so both are made once here.
            for target in self.targets:
                target.endpoint = self.agent._getEndpoint(target.uri)
            self.send = self._send_prepared
        else:
            self.send = self._send_generic
        self.http_client = HTTPClient(Agent(reactor, connectTimeout=config.timeouts.connect, pool=self.pool))

    def choose(self, request: ProxyRequest) -> Target:
        """The target for this request (the balancer's choice)."""
        return self._balancer.choose()

    def forward(
        self, request: ProxyRequest, body: Any, call: UpstreamCall, preserve_host: bool = False
    ) -> "Deferred[Any]":
        """
        Send `request` to a target; fires with the upstream's `IResponse` once
        its head arrived, or fails with a `GatewayError` (502/503/504).
        Cancelling the Deferred cancels the upstream request.
        """
        target = self.choose(request)
        call.target = target
        call.attempts += 1
        if not preserve_host:
            request.headers._rawHeaders[b"Host"] = [target.host_header]
        d = self.send(target, request.method, request.target, request.headers, body)
        timer = self.clock.callLater(self.read_timeout, d.cancel)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
                if isinstance(result, Failure):
                    if result.check(CancelledError, ResponseNeverReceived) and _cancelled(result):
                        return result  # cancelled by the caller: not ours to map
                    _log.info(
                        "upstream {target} failed for {request_id}: {reason}",
                        target=target.url,
                        request_id=request.request_id,
                        reason=result.getErrorMessage(),
                    )
                    return Failure(describe_failure(result))
                call.head_at = self.clock.seconds()
                return result
            # The read timer fired and cancelled the attempt.
            if isinstance(result, Failure):
                return Failure(UpstreamTimeout())
            return result  # pragma: no cover - a response that raced the timer

        return d.addBoth(settled)

    def _send_prepared(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        return self.agent._requestWithEndpoint(target.key, target.endpoint, method, target.uri, headers, body, path)

    def _send_generic(self, target: Target, method: bytes, path: bytes, headers: Any, body: Any) -> Any:
        return self.agent.request(method, target.base + path, headers, body)

    def close(self) -> Any:
        """Close idle pooled connections (returns a Deferred)."""
        return self.pool.closeCachedConnections()


def _cancelled(failure: Failure) -> bool:
    """A cancellation, directly or as ResponseNeverReceived([CancelledError]) (see PITFALLS)."""
    if failure.check(CancelledError, ConnectingCancelledError):
        return True
    reasons = getattr(failure.value, "reasons", ())
    return any(r.check(CancelledError) for r in reasons)
