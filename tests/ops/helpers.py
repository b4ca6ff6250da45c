"""Helpers for the operations tests: in-memory gateways with an admin service, an upstream recording trace headers."""

from __future__ import annotations

import textwrap
from typing import Any, List

from twisted.web.resource import Resource


class EchoTrace(Resource):
    """An upstream that records the trace headers it received."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: List[Any] = []

    def render(self, request: Any) -> bytes:
        self.seen.append(
            (request.requestHeaders.getRawHeaders(b"traceparent"), request.requestHeaders.getRawHeaders(b"tracestate"))
        )
        return b"ok"


def yaml(text: str) -> str:
    return textwrap.dedent(text)


class AdminGateway:
    """A gateway service in memory: the gateway's client, the admin API's client, the config file."""

    def __init__(self, path: Any, text: str, upstream: Any, *, plugins: Any = None) -> None:
        from treq.testing import StubTreq
        from twisted.internet.testing import MemoryReactorClock

        from twistgate.config import load_file
        from twistgate.ops.admin import AdminResource
        from twistgate.service import GatewayService
        from twistgate.testing import GatewayHarness, TwistedWebFront

        self.path = path
        self.upstream = upstream
        path.write_text(yaml(text))
        config = load_file(str(path))
        self.gw = GatewayHarness(config, upstream, clock=MemoryReactorClock(), plugins=plugins)
        self.clock = self.gw.clock
        self.service = GatewayService(config, self.clock, self.gw.generation, handle_signals=False)
        self.gw.resource = self.service.resource
        self.gw.client = StubTreq(TwistedWebFront(self.service.resource))
        self.admin_client = StubTreq(AdminResource(self.service))

    def rewrite(self, text: str) -> None:
        self.path.write_text(yaml(text))

    def admin(self, method: str, path: str, token: Any = "s3cret", **kwargs: Any) -> Any:
        import json

        from twistgate.testing import result_of

        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        d = self.admin_client.request(method, "http://admin" + path, headers=headers, **kwargs)
        self.admin_client.flush()
        response = result_of(d)
        body = result_of(response.content())
        data = json.loads(body) if response.headers.getRawHeaders(b"content-type", [b""])[0].startswith(b"application/json") else body
        return response, data


def access_record(**changes: Any) -> Any:
    """An access-log record (`twistgate.record.ExchangeRecord`) of plain values, with ``changes``."""
    from twistgate.record import ExchangeRecord

    fields = dict(
        request_id="r-1", method="GET", path="/p", route="r", status=200, error=None, started=1700000000.25,
        finished=1700000000.2625, upstream="app", target="http://app", attempts=1, upstream_head_seconds=0.0101,
        bytes_in=0, bytes_out=10, client_ip="203.0.113.9", consumer="alice", client_gone=False, state={},
        protocol="HTTP/1.1", grpc_status=None,
    )  # fmt: skip
    fields.update(changes)
    return ExchangeRecord(**fields)
