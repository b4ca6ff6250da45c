"""
`twistgate.engine.pyparse` against httptools (llhttp, every leniency off):
the same bytes, cut anywhere, give the same callbacks with the same
arguments, and the same accept / refuse / upgrade outcome.  Runs on CPython
(CI), where httptools is there to compare with.
"""

from __future__ import annotations

import os
from typing import Any, List

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine.pyparse_corpus import REQUESTS, RESPONSES
from tests.engine.pyparse_differential import compare
from tests.framing_strategies import first_requests

# More for a soak: PYPARSE_EXAMPLES=20000 pytest tests/engine/test_pyparse_differential.py
EXAMPLES = int(os.environ.get("PYPARSE_EXAMPLES", "300"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_same(data: bytes, response: bool, cuts: Any = ()) -> None:
    llhttp, python = compare(data, response, cuts)
    assert python == llhttp, (data, list(cuts))


def _every_cut(data: bytes, response: bool) -> None:
    assert_same(data, response)
    for cut in range(1, len(data)):
        assert_same(data, response, [cut])
    assert_same(data, response, range(1, len(data)))  # one byte at a time


@pytest.mark.parametrize("data", REQUESTS)
def test_hand_picked_requests_split_at_every_offset(data: bytes) -> None:
    _every_cut(data, response=False)


@pytest.mark.parametrize("data", RESPONSES)
def test_hand_picked_responses_split_at_every_offset(data: bytes) -> None:
    _every_cut(data, response=True)


def test_the_comparison_sees_a_difference() -> None:
    """The harness itself: a parser that disagrees is caught (so a pass means something)."""
    llhttp, python = compare(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab", True, [20])
    assert python == llhttp
    assert llhttp[1][-2:] == [("body", b"ab"), ("message_complete",)]
    other, _ = compare(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab", True)
    assert other != llhttp


# -- generated messages ------------------------------------------------------------

_CRLF = st.sampled_from([b"\r\n"] * 8 + [b"\n", b"\r", b""])
_NAMES = st.sampled_from(
    [b"Host", b"X-A", b"Content-Length", b"content-LENGTH", b"Transfer-Encoding", b"transfer-encoding",
     b"Connection", b"Proxy-Connection", b"Upgrade", b"Expect", b"", b"X A", b"X\x00", b" X", b"X{"]
)
_VALUES = st.one_of(
    st.sampled_from(
        [b"0", b"5", b"3", b"1 ", b" 3", b"+1", b"", b" ", b"1,1", b"18446744073709551615", b"18446744073709551616",
         b"chunked", b"gzip, chunked", b"chunked, gzip", b"CHUNKED", b" chunked ", b"chunked,", b",chunked", b"gzip",
         b"close", b"keep-alive", b"Keep-Alive, Upgrade", b"upgrade", b"close, upgrade", b"websocket",
         b"a\x7fb", b"a\rb", b"a\x80", b"a\tb\t", b"x\x00"]
    ),
    st.binary(max_size=5),
)
_FIELD = st.builds(lambda n, sep, v, eol: n + sep + v + eol, _NAMES, st.sampled_from([b":", b": ", b":\t", b" :", b""]), _VALUES, _CRLF)
_FIELDS = st.lists(_FIELD, max_size=5).map(b"".join)
_VERSIONS = st.sampled_from(
    [b"HTTP/1.1"] * 4 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.2", b"RTSP/1.0", b"ICE/1.0", b"HTTP/11", b"http/1.1", b""]
)
_TARGETS = st.one_of(
    st.sampled_from([b"/", b"*", b"/a?b#c", b"http://h:1/p?q", b"h:443", b"http://u@@h/", b"a", b"", b"/a b"]),
    st.binary(max_size=6).map(lambda b: b"/" + b),
)
_METHODS = st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"PUT", b"get", b"GETX", b"DESCRIBE", b"PRI", b"M-SEARCH", b""])
_SPACES = st.sampled_from([b" ", b" ", b"  ", b"\t"])


@st.composite
def _chunked(draw: Any) -> bytes:
    parts = []
    for payload in draw(st.lists(st.binary(min_size=1, max_size=6), max_size=3)) + [b""]:
        size = len(payload) + draw(st.sampled_from([0] * 6 + [1, -1]))
        digits = draw(st.sampled_from([b"%x", b"%X", b"0%x", b"%x "])) % max(size, 0)
        ext = draw(st.sampled_from([b""] * 4 + [b";a", b";a=b", b';a="x\\"y"', b"; a", b";", b";a=", b";a=b;c"]))
        parts.append(digits + ext + draw(_CRLF) + payload + (draw(_CRLF) if payload else b""))
    return b"".join(parts) + draw(_FIELDS) + draw(_CRLF)


_BODIES = st.one_of(st.just(b""), _chunked(), st.binary(max_size=8))


@st.composite
def _requests(draw: Any) -> bytes:
    version = draw(_VERSIONS)
    line = draw(_METHODS) + draw(_SPACES) + draw(_TARGETS) + (draw(_SPACES) + version if version else b"")
    return line + draw(_CRLF) + draw(_FIELDS) + b"\r\n" + draw(_BODIES)


@st.composite
def _responses(draw: Any) -> bytes:
    code = draw(st.sampled_from([b"200", b"200", b"101", b"100", b"103", b"204", b"304", b"404", b"099", b"2000", b"20"]))
    reason = draw(st.sampled_from([b" OK", b" OK", b"", b" ", b" O\x00K", b" a b"]))
    line = draw(_VERSIONS) + b" " + code + reason
    return line + draw(_CRLF) + draw(_FIELDS) + b"\r\n" + draw(_BODIES)


def _mutated(messages: Any) -> Any:
    """One or two messages in a row, sometimes with one byte inserted, replaced or removed."""

    @st.composite
    def build(draw: Any) -> bytes:
        data = b"".join(draw(st.lists(messages, min_size=1, max_size=2)))
        edit = draw(st.sampled_from(["none", "none", "insert", "replace", "delete"]))
        if edit != "none" and data:
            at = draw(st.integers(0, len(data) - 1))
            byte = bytes([draw(st.integers(0, 255))])
            data = data[:at] + (byte + data[at:] if edit == "insert" else (byte if edit == "replace" else b"") + data[at + 1 :])
        return data

    return build()


_CUTS = st.lists(st.integers(min_value=1, max_value=200), max_size=4)


@PROPERTY
@given(data=_mutated(_requests()), cuts=_CUTS)
def test_generated_requests_give_the_same_callbacks_and_outcome(data: bytes, cuts: List[int]) -> None:
    assert_same(data, False, cuts)


@PROPERTY
@given(data=_mutated(_responses()), cuts=_CUTS)
def test_generated_responses_give_the_same_callbacks_and_outcome(data: bytes, cuts: List[int]) -> None:
    assert_same(data, True, cuts)


@PROPERTY
@given(first=first_requests(path=b"/first"), cuts=_CUTS)
def test_the_smuggling_corpus_gives_the_same_callbacks_and_outcome(first: Any, cuts: List[int]) -> None:
    """The first requests of the desynchronisation properties (tests/framing_strategies.py), each framing an attacker tries."""
    assert_same(first[0] + b"GET /second HTTP/1.1\r\nHost: b\r\n\r\n", False, cuts)
