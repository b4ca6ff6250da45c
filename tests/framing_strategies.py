"""
The first requests of the desynchronisation properties (the engine's,
tests/engine/test_engine_desync.py, and the gateway's,
tests/integration/test_front_desync.py): a request head with every framing
an attacker tries (valid or not), and body bytes that may hide a request.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"

payloads = st.sampled_from([b"", b"x", b"hello", SMUGGLED, b"0\r\n\r\n" + SMUGGLED, b"5\r\nhello\r\n0\r\n\r\n"])


@st.composite
def first_requests(draw: Any, path: bytes = b"/first-{n}") -> "tuple[bytes, str]":
    """A first request (its head and body bytes) and the kind of framing it tries."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
    eol = draw(st.sampled_from([b"\r\n"] * 6 + [b"\n", b"\r"]))
    body = draw(payloads)
    fields = [b"Host: a"]
    kind = draw(
        st.sampled_from(
            ["none", "cl", "cl_short", "cl_long", "cl_dup", "cl_te", "te", "te_bad", "te_gzip", "te_case",
             "te_space", "fold", "space_colon", "cl_junk", "host_dup"]
        )
    )  # fmt: skip
    if kind == "none":
        body = draw(st.sampled_from([b"", b"x", b"0\r\n\r\n"]))  # no framing: what follows *is* the next request
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
        body = draw(st.sampled_from([b"zz\r\n", b"10000000000000001\r\n", b"1\r\nxx\r\n", b"-1\r\n", b"5\nhello\n"])) + body
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
    elif kind == "host_dup":
        fields.append(b"Host: b")
    return method + b" " + path + b" " + version + eol + eol.join(fields) + eol + eol + body, kind
