"""
Fakes for driving an `Upstream` by hand: an agent whose requests the test
answers or fails, responses with bodies, and a scripted DNS resolver.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock
from twisted.names import dns
from twisted.python.failure import Failure
from twisted.web._newclient import ResponseNeverReceived
from twisted.web.client import ResponseDone
from twistgate.headers import Headers

from twistgate.config import load_text
from twistgate.messages import ProxyRequest
from twistgate.upstream.group import Upstream, UpstreamCall


class FakeTransport:
    def __init__(self) -> None:
        self.paused = 0
        self.resumed = 0
        self.stopped = False

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        self.resumed += 1

    def stopProducing(self) -> None:
        self.stopped = True


class FakeResponse:
    """An IResponse whose body the test streams with `send` / `end` (or all at once)."""

    version = (b"HTTP", 1, 1)
    phrase = b"OK"

    def __init__(self, code: int = 200, body: Optional[bytes] = b"ok", headers: Optional[Headers] = None) -> None:
        self.code = code
        self.headers = headers or Headers()
        self.length = len(body) if body is not None else None
        self._body = body
        self.protocol: Any = None
        self.transport = FakeTransport()

    def deliverBody(self, protocol: Any) -> None:
        self.protocol = protocol
        protocol.makeConnection(self.transport)
        if self._body is not None and not self.transport.stopped:
            if self._body:
                protocol.dataReceived(self._body)
            self.end()
        elif self.transport.stopped:
            self.end(Failure(ConnectionRefusedError("stopped")))

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def end(self, reason: Optional[Failure] = None) -> None:
        self.protocol.connectionLost(reason or Failure(ResponseDone()))


class Sent:
    """One request the agent received; `answer` / `refuse` / `reset` settle it."""

    def __init__(self, method: bytes, uri: bytes, headers: Any, body: Any) -> None:
        self.method = method
        self.uri = uri
        self.host = headers.getRawHeaders(b"Host", [b""])[0] if headers is not None else b""
        self.headers = headers
        self.body = body
        self.cancelled = False
        self.deferred: Deferred[Any] = Deferred(self._cancel)

    def _cancel(self, _: Any) -> None:
        self.cancelled = True

    def answer(self, code: int = 200, body: Optional[bytes] = b"ok") -> FakeResponse:
        response = FakeResponse(code, body)
        self.deferred.callback(response)
        return response

    def refuse(self) -> None:
        self.deferred.errback(Failure(ConnectionRefusedError("refused")))

    def reset(self) -> None:
        self.deferred.errback(Failure(ResponseNeverReceived([Failure(ConnectionRefusedError("reset"))])))


class ScriptedAgent:
    """An IAgent that records requests for the test to settle; `auto` answers them at once."""

    def __init__(self, auto: Optional[Dict[bytes, Any]] = None) -> None:
        self.sent: List[Sent] = []
        self.auto = auto or {}  # host -> "refuse" | "reset" | status code

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred:
        sent = Sent(method, uri, headers, bodyProducer)
        self.sent.append(sent)
        action = self.auto.get(uri.split(b"/")[2])
        if action == "refuse":
            sent.refuse()
        elif action == "reset":
            sent.reset()
        elif isinstance(action, int):
            sent.answer(action)
        return sent.deferred

    def hosts(self) -> List[bytes]:
        return [s.uri.split(b"/")[2] for s in self.sent]


HEAD = 'listeners: [{name: p, endpoint: "tcp:0"}]\n'


def upstream_config(text: str, name: str = "app") -> Any:
    """An UpstreamConfig from the YAML under ``upstreams.<name>``."""
    body = "\n".join("    " + line for line in text.strip("\n").splitlines())
    config = load_text(f"{HEAD}upstreams:\n  {name}:\n{body}\n")
    return config.upstreams[name]


def make_upstream(text: str, *, clock: Optional[Clock] = None, agent: Any = None, seed: int = 1, **kwargs: Any):
    from random import Random

    clock = clock or Clock()
    agent = agent if agent is not None else ScriptedAgent()
    upstream = Upstream(upstream_config(text), clock, agent, rng=Random(seed), **kwargs)
    return upstream, agent, clock


def proxy_request(method: bytes = b"GET", path: str = "/x", headers: Optional[Dict[bytes, List[bytes]]] = None, client_ip: str = "10.0.0.1") -> ProxyRequest:
    return ProxyRequest(method=method, path=path, headers=Headers(headers or {}), client_ip=client_ip, request_id="r1")


def forward(upstream: Upstream, request: Optional[ProxyRequest] = None, body: Any = None, route: Any = None) -> Tuple[Deferred, UpstreamCall]:
    call = UpstreamCall()
    d = upstream.forward(request or proxy_request(), body, call, False, route)
    return d, call


def outcome(d: Deferred) -> Any:
    """The result or Failure of a fired Deferred (None if it has not fired)."""
    box: List[Any] = []
    d.addBoth(box.append)
    return box[0] if box else None


# -- DNS ---------------------------------------------------------------------


def a(name: str, address: str) -> dns.RRHeader:
    return dns.RRHeader(name=name, type=dns.A, payload=dns.Record_A(address))


def aaaa(name: str, address: str) -> dns.RRHeader:
    return dns.RRHeader(name=name, type=dns.AAAA, payload=dns.Record_AAAA(address))


def srv(name: str, target: str, port: int, priority: int = 0, weight: int = 1) -> dns.RRHeader:
    return dns.RRHeader(name=name, type=dns.SRV, payload=dns.Record_SRV(priority, weight, port, target))


class ScriptedResolver:
    """Answers from dicts the test edits: name -> list of RRHeaders, or an exception to fail with."""

    def __init__(self) -> None:
        self.a: Dict[str, Any] = {}
        self.aaaa: Dict[str, Any] = {}
        self.srv: Dict[str, Any] = {}
        self.additional: Dict[str, List[Any]] = {}
        self.queries: List[Tuple[str, str]] = []

    def _answer(self, table: Dict[str, Any], kind: str, name: str) -> Deferred:
        self.queries.append((kind, name))
        value = table.get(name)
        if value is None:
            return fail(DNSLookupError(name))
        if isinstance(value, Exception):
            return fail(value)
        return succeed((list(value), [], list(self.additional.get(name, []))))

    def lookupAddress(self, name: str, timeout: Any = None) -> Deferred:
        return self._answer(self.a, "A", name)

    def lookupIPV6Address(self, name: str, timeout: Any = None) -> Deferred:
        return self._answer(self.aaaa, "AAAA", name)

    def lookupService(self, name: str, timeout: Any = None) -> Deferred:
        return self._answer(self.srv, "SRV", name)
