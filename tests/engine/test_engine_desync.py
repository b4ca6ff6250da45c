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
from twistgate.engine import ServerLimits
from twistgate.headers import Headers

# More for a soak: ENGINE_DESYNC_EXAMPLES=10000 pytest tests/engine/test_engine_desync.py
EXAMPLES = int(os.environ.get("ENGINE_DESYNC_EXAMPLES", "400"))
SECOND = b"GET /second HTTP/1.1\r\nHost: b\r\nX-Marker: 1\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"


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


payloads = st.sampled_from([b"", b"x", b"hello", SMUGGLED, b"0\r\n\r\n" + SMUGGLED, b"5\r\nhello\r\n0\r\n\r\n"])


@st.composite
def first_requests(draw: Any) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r"]))
    body = draw(payloads)
    fields = [b"Host: a"]
    kind = draw(
        st.sampled_from(
            ["none", "cl", "cl_short", "cl_long", "cl_dup", "cl_te", "te", "te_bad", "te_gzip", "te_case", "te_space", "fold", "space_colon", "cl_junk"]
        )
    )
    if kind == "none":
        # Without framing there is no body: whatever follows *is* the next request, so no hidden one here.
        body = draw(st.sampled_from([b"", b"x", b"0\r\n\r\n"]))
    elif kind == "cl":
        fields.append(b"Content-Length: %d" % len(body))
    elif kind == "cl_short":
        fields.append(b"Content-Length: %d" % max(len(body) - 3, 0))
    elif kind == "cl_long":
        fields.append(b"Content-Length: %d" % (len(body) + 3))
    elif kind == "cl_dup":
        fields += [b"Content-Length: %d" % len(body), b"Content-Length: %d" % len(body)]
    elif kind == "cl_te":
        fields += [b"Content-Length: %d" % len(body), b"Transfer-Encoding: chunked"]
    elif kind == "te":
        fields.append(b"Transfer-Encoding: chunked")
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    elif kind == "te_bad":
        fields.append(b"Transfer-Encoding: chunked")
        body = draw(st.sampled_from([b"zz\r\n", b"10000000000000001\r\n", b"1\r\nxx\r\n", b"-1\r\n"])) + body
    elif kind == "te_gzip":
        fields.append(b"Transfer-Encoding: gzip, chunked")
    elif kind == "te_case":
        fields.append(b"transfer-encoding: ChUnKeD")
        body = b"0\r\n\r\n"
    elif kind == "te_space":
        fields.append(draw(st.sampled_from([b"Transfer-Encoding : chunked", b"Transfer-Encoding:\x0bchunked", b"Transfer-Encoding: xchunked"])))
    elif kind == "fold":
        fields.append(b"X-A: a" + eol + b" folded")
    elif kind == "space_colon":
        fields.append(b"Content-Length : %d" % len(body))
    elif kind == "cl_junk":
        fields.append(draw(st.sampled_from([b"Content-Length: +1", b"Content-Length: 1,1", b"Content-Length: 0x1", b"Content-Length: 1 1"])))
    head = method + b" /first " + version + eol + eol.join(fields) + eol + eol
    return head + body


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=first_requests(), cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=4))
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
