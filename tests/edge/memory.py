"""A `Downstream` in memory: what any engine hands the exchange, without an engine."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred

from twistgate.headers import Headers


class FakeDownstream:
    """Implements `twistgate.engine.api.Downstream`; records the answer."""

    def __init__(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Optional[Dict[bytes, List[bytes]]] = None,
        *,
        version: bytes = b"HTTP/1.1",
        listener: str = "",
        client: Tuple[str, int] = ("127.0.0.1", 40000),
    ) -> None:
        self.method = method
        self.target = target
        self.path, _, self.query = target.partition(b"?")
        self.version = version
        self.headers = Headers(headers or {})
        self.client = client
        self.secure = False
        self.transport = None
        self.keep_alive = True
        self.expects_continue = False
        self.body: Any = None
        self.body_complete = True
        self.received_bytes = 0
        self.sent_bytes = 0
        self.code = 0
        self.started_writing = False
        self.finished = False
        self.listener = listener
        self.max_body = 1 << 30
        self.answer: Optional[Tuple[int, Headers, bytes]] = None
        self._finish: Deferred[None] = Deferred()

    def notify_finish(self) -> "Deferred[None]":
        return self._finish

    def respond(self, status: int, reason: Any, headers: Headers, body: bytes) -> None:
        self.code = status
        self.answer = (status, headers, body)
        self.finished = True
        self._finish.callback(None)

    def send_interim(self, status: int, headers: Headers) -> None:
        pass

    def write_head(self, status: int, reason: Any, headers: Headers) -> None:
        self.code = status
        self.answer = (status, headers, b"")
        self.started_writing = True

    def write(self, data: bytes) -> None:
        status, headers, body = self.answer  # type: ignore[misc]
        self.answer = (status, headers, body + data)
        self.sent_bytes += len(data)

    def finish(self) -> None:
        self.finished = True
        self._finish.callback(None)

    def abort(self) -> None:
        self.finished = True

    def register_producer(self, producer: Any) -> None:
        pass

    def unregister_producer(self) -> None:
        pass


def serve(generation: Any, downstream: FakeDownstream) -> FakeDownstream:
    """Run one request through the generation's resource; the answer is on the downstream."""
    from twistgate.resource import GatewayResource

    GatewayResource(generation).render(downstream)
    return downstream
