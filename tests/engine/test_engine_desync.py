"""
Property: whatever framing the first request on a connection uses (valid or
not, split anywhere), the request after it is either parsed exactly as sent
or never parsed because the connection was refused and closed (or the first
request's own framing still claims the bytes as its body).  Nothing hidden
in a body ever becomes a request.
"""

from __future__ import annotations

import os
from typing import Any, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.engine_fakes import Served
from tests.framing_strategies import first_requests
from twistgate.engine import ServerLimits
from twistgate.headers import Headers

# More for a soak: ENGINE_DESYNC_EXAMPLES=10000 pytest tests/engine/test_engine_desync.py
EXAMPLES = int(os.environ.get("ENGINE_DESYNC_EXAMPLES", "400"))
SECOND = b"GET /second HTTP/1.1\r\nHost: b\r\nX-Marker: 1\r\n\r\n"


class _Sink:
    def write(self, data: bytes) -> None:
        pass


def answer_after_body(request: Any) -> None:
    """Answer once the whole body arrived, so the next request can be parsed."""

    def respond(_: Any = None) -> None:
        request.respond(200, None, Headers(), b"ok")

    if request.body is None:
        respond()
    else:
        request.body.startProducing(_Sink()).addCallbacks(respond, lambda _: None)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=first_requests(path=b"/first").map(lambda made: made[0]), cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=4))
def test_random_framing_never_desynchronises_the_next_request(first: bytes, cuts: List[int]) -> None:
    served = Served(answer_after_body, limits=ServerLimits(max_request_body=1000))
    data = first + SECOND
    start = 0
    for cut in sorted(set(cuts)):
        if start < cut < len(data):
            served.send(data[start:cut])
            start = cut
    served.send(data[start:])
    targets = [request.target for request in served.requests]
    assert set(targets) <= {b"/first", b"/second"}, targets
    assert targets.count(b"/second") <= 1
    if b"/second" in targets:
        second = served.requests[-1]
        assert second.method == b"GET" and second.version == b"HTTP/1.1"
        assert second.headers.raw == {b"Host": [b"b"], b"X-Marker": [b"1"]}
        assert second.body is None
        return
    if served.closed:
        statuses = [reply.status for reply in served.responses()]
        assert statuses and (statuses[-1] >= 400 or not served.requests[0].keep_alive), statuses
    else:
        # The first request's own framing still claims the bytes as its body (a longer Content-Length).
        assert served.requests and not served.requests[0].body_complete
