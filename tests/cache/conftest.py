"""
An origin that scripts the caching headers under test, a gateway with a
cached route in memory (`GatewayHarness`, a `Clock` for time) and a client
that shows exactly what the gateway sent (no content decoding, no redirects).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.protocol import Protocol
from twistgate.headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from twistgate.policies.cache.dates import format_http_date
from twistgate.config import load_text
from twistgate.testing import GatewayHarness
from twistgate.upstream.body import BytesBody

#: A plausible "now" for the tests' Clock (2027-01-15), so dates are real dates.
EPOCH = 1_800_000_000.0

Reply = Tuple[int, List[Tuple[str, str]], bytes]  # what the origin answers
DROP: Any = ("drop the connection",)  # a reply that breaks the connection instead


class Seen:
    """One request as the origin received it."""

    def __init__(self, request: Any) -> None:
        self.method = request.method.decode()
        self.uri = request.uri.decode()
        self.headers: Dict[str, List[str]] = {
            k.decode().lower(): [v.decode("latin-1") for v in vs] for k, vs in request.requestHeaders.getAllRawHeaders()
        }

    def header(self, name: str) -> Optional[str]:
        values = self.headers.get(name.lower())
        return values[0] if values else None


class Origin(Resource):
    """
    Answers with `reply(seen) -> (status, headers, body)`; a ``Date`` from the
    clock is added unless the reply has one.  `hold()` makes the next answers
    wait until `release()` (for collapsing).
    """

    isLeaf = True

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.seen: List[Seen] = []
        self.reply: Callable[[Seen], Reply] = lambda seen: (200, [("Cache-Control", "max-age=60")], b"body")
        self.held: Optional[List[Tuple[Any, Seen]]] = None

    def answer(self, status: int = 200, headers: Sequence[Tuple[str, str]] = (), body: bytes = b"body") -> None:
        """Every request gets this answer."""
        self.reply = lambda seen: (status, list(headers), body)

    def hold(self) -> None:
        self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for request, seen in held:
            if request._disconnected:
                continue  # the gateway gave up on it
            body = self._head(request, seen)
            request.responseHeaders.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
            request.write(body)
            request.finish()

    def render(self, request: Any) -> Any:
        seen = Seen(request)
        self.seen.append(seen)
        if self.held is not None:
            self.held.append((request, seen))
            return NOT_DONE_YET
        if self.reply(seen) is DROP:
            request.channel.transport.abortConnection()
            return NOT_DONE_YET
        return self._head(request, seen)

    def _head(self, request: Any, seen: Seen) -> bytes:
        status, headers, body = self.reply(seen)
        request.setResponseCode(status)
        request.defaultContentType = None  # only the Content-Type the test asks for
        if "date" not in {name.lower() for name, _ in headers}:
            request.responseHeaders.setRawHeaders(b"Date", [format_http_date(self.clock.seconds())])
        for name, value in headers:
            request.responseHeaders.addRawHeader(name.encode(), value.encode("latin-1"))
        return body


class Got:
    """What the client received."""

    def __init__(self, response: Any, body: bytes) -> None:
        self.status = response.code
        self.headers = response.headers
        self.length = response.length  # Twisted's client moves Content-Length here
        self.body = body

    def header(self, name: str) -> Optional[str]:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> List[str]:
        return [v.decode("latin-1") for v in self.headers.getRawHeaders(name.encode()) or ()]

    @property
    def cache_status(self) -> str:
        return ", ".join(self.all("Cache-Status"))


class _Collect(Protocol):
    def __init__(self, done: "Deferred[bytes]") -> None:
        self.done = done
        self.chunks: List[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.done.callback(b"".join(self.chunks))


class Gateway:
    """A cached route `/*` in front of `origin`, plus a plain client."""

    def __init__(
        self,
        route_cache: Optional[str] = "{}",
        extra: str = "",
        origin: Optional[Origin] = None,
        routes: str = "",
        route_extra: str = "",
    ) -> None:
        self.clock = Clock()
        self.clock.advance(EPOCH)
        self.origin = origin or Origin(self.clock)
        self.origin.clock = self.clock
        cache = "" if route_cache is None else f", cache: {route_cache}"
        config = load_text(
            f"""
listeners: [{{name: p, endpoint: "tcp:0"}}]
upstreams: {{app: {{targets: [{{url: "http://app:80"}}]}}}}
{extra}
routes:
  - {{name: cached, path: "/*", upstream: app{cache}{route_extra}}}
{routes}
"""
        )
        self.harness = GatewayHarness(config, self.origin, clock=self.clock)
        self.agent = RequestTraversalAgent(self.harness.front)
        self.service = self.harness.generation.services.cache

    def flush(self) -> None:
        for _ in range(20):
            self.agent.flush()
            self.harness.flush()

    def start(self, method: str = "GET", path: str = "/r", headers: Sequence[Tuple[str, str]] = (), body: Optional[bytes] = None) -> "Deferred[Got]":
        raw = Headers({b"Host": [b"gw.test"]})
        for name, value in headers:
            raw.addRawHeader(name.encode(), value.encode("latin-1"))
        producer = BytesBody(body) if body is not None else None
        d = self.agent.request(method.encode(), f"http://gw.test{path}".encode(), raw, producer)

        def read(response: Any) -> Any:
            body: Deferred[bytes] = Deferred()
            response.deliverBody(_Collect(body))
            return body.addCallback(lambda data: Got(response, data))

        d.addCallback(read)
        self.flush()
        return d

    def request(self, method: str = "GET", path: str = "/r", headers: Sequence[Tuple[str, str]] = (), body: Optional[bytes] = None) -> Got:
        results: List[Any] = []
        self.start(method, path, headers, body).addBoth(results.append)
        self.flush()
        assert results, "no answer"
        if not isinstance(results[0], Got):
            results[0].raiseException()
        return results[0]

    def get(self, path: str = "/r", *headers: Tuple[str, str]) -> Got:
        return self.request("GET", path, headers)

    def later(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def date(self, offset: float = 0.0) -> str:
        return format_http_date(self.clock.seconds() + offset).decode()


@pytest.fixture
def gateway() -> Callable[..., Gateway]:
    return Gateway
