"""
Issue 14, proof under stress: random framing on the first request of a
connection never desynchronises the request after it, through the real
gateway (``twistd``, its listener, routing and forwarding to a real
upstream) on both HTTP/1.1 engines.

The upstream (twisted.web, in its own process) writes down every request
the gateway forwards.  Whatever the first request's framing (valid or not,
split anywhere), the upstream sees the second request at most once and
exactly as sent, and never a request hidden in the first one's body.  The
engine-level property (tests/engine/test_engine_desync.py) checks the
parser alone; this one checks what actually leaves the gateway.

Bounded in time: ``FRONT_DESYNC_EXAMPLES`` examples per engine (default 40).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.framing_strategies import first_requests
from tests.integration.procs import wait_port
from twistgate.testing_twistd import RunningGateway, free_port

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FRONT_DESYNC_EXAMPLES", "40"))
QUIET = 0.3  # seconds without a byte from the gateway: nothing more is coming for this example

RECORDER = r"""
import json, sys
from twisted.internet import reactor, endpoints
from twisted.web.resource import Resource
from twisted.web.server import Site

log = open(sys.argv[2], "a", buffering=1)

class Record(Resource):
    isLeaf = True
    def render(self, request):
        body = request.content.read()
        log.write(json.dumps({"method": request.method.decode(), "uri": request.uri.decode("latin-1"),
                              "marker": (request.getHeader(b"x-marker") or b"").decode("latin-1"),
                              "body": body.decode("latin-1")}) + "\n")
        return b"ok"

site = Site(Record())
site.log = lambda request: None
endpoints.serverFromString(reactor, "tcp:%s:interface=127.0.0.1" % sys.argv[1]).listen(site)
reactor.run()
"""

class Front:
    """twistd on one engine in front of the recording upstream."""

    def __init__(self, engine: str, tmp: Path) -> None:
        self.log = tmp / f"upstream-{engine}.jsonl"
        self.log.touch()
        port = free_port()
        script = tmp / "recorder.py"
        script.write_text(RECORDER)
        self.upstream = subprocess.Popen([sys.executable, str(script), str(port), str(self.log)])
        wait_port(port, self.upstream, what="the recording upstream")
        self.gateway = RunningGateway(
            f"""
engine: {engine}
limits: {{max_request_body: 1000, header_timeout: 2s, client_body_timeout: 2s}}
upstreams: {{app: {{targets: [{{url: "http://127.0.0.1:{port}"}}]}}}}
routes: [{{name: all, path: "/*", upstream: app}}]
""",
            tmp / engine,
        )

    def seen(self) -> List[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        self.gateway.stop()
        self.upstream.terminate()
        self.upstream.wait(10)



def _front(engine: str, tmp_path_factory: Any) -> Iterator[Front]:
    tmp = tmp_path_factory.mktemp(f"front-{engine}")
    (tmp / engine).mkdir()
    running = Front(engine, tmp)
    yield running
    running.close()


# One fixture and one test per engine: pytest-twisted wraps a hypothesis test
# once per item, so a parametrized one would be wrapped twice.
@pytest.fixture(scope="module")
def httptools_front(tmp_path_factory: Any) -> Iterator[Front]:
    yield from _front("httptools", tmp_path_factory)


@pytest.fixture(scope="module")
def twisted_front(tmp_path_factory: Any) -> Iterator[Front]:
    yield from _front("twisted", tmp_path_factory)


def _responses(data: bytes) -> int:
    """How many complete responses (with Content-Length framing) `data` holds."""
    count, rest = 0, data
    while True:
        head, found, rest = rest.partition(b"\r\n\r\n")
        if not found:
            return count
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        if len(rest) < length:
            return count
        rest = rest[length:]
        if not head.startswith(b"HTTP/1.1 1"):
            count += 1


def _converse(port: int, pieces: List[bytes]) -> bytes:
    """Send the pieces (a moment apart, so they arrive apart); read until closed, two answers, or quiet."""
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:  # refused and closed already (a bare LF, say): read its answer
                break
            time.sleep(0.002)
        sock.settimeout(QUIET)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _responses(received) < 2:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:  # closed with our unread bytes pending: what came before counts
                break
            if not chunk:
                break
            received += chunk
    return received


_numbers = itertools.count(1)


PROPERTY = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
FIRST = first_requests()
CUTS = st.lists(st.integers(min_value=1, max_value=400), max_size=3)


@PROPERTY
@given(first=FIRST, cuts=CUTS)
def test_random_framing_never_desynchronises_the_next_request_httptools(httptools_front: Front, first: Any, cuts: List[int]) -> None:
    check_no_desync(httptools_front, first, cuts)


@PROPERTY
@given(first=FIRST, cuts=CUTS)
def test_random_framing_never_desynchronises_the_next_request_twisted(twisted_front: Front, first: Any, cuts: List[int]) -> None:
    check_no_desync(twisted_front, first, cuts)


def check_no_desync(front: Front, first: "tuple[bytes, str]", cuts: List[int]) -> None:
    n = next(_numbers)
    raw, kind = first
    second = b"GET /second-%d HTTP/1.1\r\nHost: b\r\nX-Marker: %d\r\n\r\n" % (n, n)
    data = raw.replace(b"{n}", b"%d" % n) + second
    pieces, start = [], 0
    for cut in sorted(set(cuts)):
        if start < cut < len(data):
            pieces.append(data[start:cut])
            start = cut
    pieces.append(data[start:])
    answer = _converse(front.gateway.port, pieces)

    seen = [r for r in front.seen() if r["uri"].endswith(f"-{n}") or "smuggled" in r["uri"]]
    uris = [r["uri"] for r in seen]
    assert not any("smuggled" in uri for uri in uris), (kind, data, uris)
    assert uris.count(f"/first-{n}") <= 1 and uris.count(f"/second-{n}") <= 1, (kind, data, uris)
    assert set(uris) <= {f"/first-{n}", f"/second-{n}"}, (kind, data, uris)
    for record in seen:
        if record["uri"] == f"/second-{n}":
            # As sent: its own marker, no body.  (Bytes of a first request without body framing
            # are the start of the next one: twisted.web takes "xGET" as a method, httptools refuses it.)
            assert record["marker"] == str(n) and record["body"] == "", (kind, data, record)
            assert record["method"].endswith("GET"), (kind, data, record)
    if f"/second-{n}" in uris and f"/first-{n}" in uris:
        assert uris.index(f"/first-{n}") < uris.index(f"/second-{n}")
    assert answer.startswith(b"HTTP/1."), (kind, data, answer)  # every example gets an answer, never silence
