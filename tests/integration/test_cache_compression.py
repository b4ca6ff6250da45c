"""Compression over real sockets, behind the cache: identity stored, each client its coding."""

from __future__ import annotations

import gzip
from typing import Any

import brotli
import pytest_twisted
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from tests.integration.test_cache import Scripted, always, get

CONFIG = """
listeners: [{name: public, endpoint: "tcp:0"}]
upstreams:
  app: {targets: [{url: "http://127.0.0.1:{up}"}]}
routes:
  - {name: api, path: /*, upstream: app, cache: {}, compression: {min_size: 100}}
"""
BODY = b'{"rows": [' + b'{"id": 1, "name": "row"}, ' * 500 + b"{}]}"


@pytest_twisted.inlineCallbacks
def test_compressed_per_client_over_one_cached_identity_copy(servers, reactor):
    origin = Scripted(reactor)
    origin.on("/rows", always(200, [("Cache-Control", "max-age=600"), ("Content-Type", "application/json")], BODY))
    gw, _ = servers.gateway(CONFIG, up=servers.upstream(origin))
    zipped = yield get(gw, "/rows", ("Accept-Encoding", "gzip"))
    squeezed = yield get(gw, "/rows", ("Accept-Encoding", "br"))
    plain = yield get(gw, "/rows")
    assert gzip.decompress(zipped.body) == BODY and zipped.header("Content-Encoding") == "gzip"
    assert brotli.decompress(squeezed.body) == BODY and squeezed.header("Cache-Status").startswith("twistgate; hit")
    assert plain.body == BODY and plain.header("Content-Encoding") is None
    assert {r.header("Vary") for r in (zipped, squeezed, plain)} == {"Accept-Encoding"}
    assert zipped.header("Transfer-Encoding") == "chunked"  # length unknown once compressed
    assert len(origin.hits("/rows")) == 1


class Streaming(Resource):
    """Sends its body in chunks, 10 ms apart, without Content-Length (chunked)."""

    isLeaf = True

    def __init__(self, reactor: Any) -> None:
        super().__init__()
        self.reactor = reactor

    def render(self, request: Any) -> Any:
        request.setHeader(b"Content-Type", b"application/x-ndjson")
        chunks = [b'{"n": %d, "pad": "%s"}\n' % (n, b"p" * 100) for n in range(20)]

        def send(rest: list) -> None:
            request.write(rest[0])
            if rest[1:]:
                self.reactor.callLater(0.01, send, rest[1:])
            else:
                request.finish()

        send(chunks)
        return NOT_DONE_YET


@pytest_twisted.inlineCallbacks
def test_a_chunked_upstream_body_is_compressed_as_it_streams(servers, reactor):
    gw, _ = servers.gateway(CONFIG, up=servers.upstream(Streaming(reactor)))
    got = yield get(gw, "/stream", ("Accept-Encoding", "gzip"))
    assert got.header("Content-Encoding") == "gzip"
    assert gzip.decompress(got.body).count(b"\n") == 20
