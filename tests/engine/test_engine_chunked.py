"""The strict chunked decoder on its own."""

from __future__ import annotations

from typing import List

import pytest

from twistgate.engine.chunked import ChunkedDecoder
from twistgate.errors import BadRequest, HeadersTooLarge, PayloadTooLarge


def decode(*pieces: bytes, max_body: int = 1000, max_trailer: int = 100):
    decoder = ChunkedDecoder(max_body, max_trailer)
    out: List[bytes] = []
    rest = None
    for piece in pieces:
        if rest is not None:
            rest += piece  # the body ended: what follows is not the decoder's
        else:
            rest = decoder.feed(piece, out.append)
    return b"".join(out), rest


def test_chunks_extensions_and_trailers():
    body, rest = decode(b"3;name=value;q=\"a b\"\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\nNEXT")
    assert body == b"abcde" and rest == b"NEXT"


def test_every_split_point_gives_the_same_result():
    data = b"5\r\nhello\r\nA\r\n0123456789\r\n0\r\n\r\nrest"
    for cut in range(1, len(data)):
        assert decode(data[:cut], data[cut:]) == (b"hello0123456789", b"rest")


def test_unfinished_body_returns_none():
    assert decode(b"5\r\nhel") == (b"hel", None)


@pytest.mark.parametrize(
    "data",
    [b"g\r\n", b"\r\n", b"1 \r\n", b" 1\r\n", b"+1\r\n", b"1\n", b"1\r\nx\n", b"1\r\nxx\r\n", b"1;\r\n", b"1;a=\x01\r\n", b"0\r\nno colon\r\n\r\n"],
)
def test_malformed_framing_is_400(data):
    with pytest.raises(BadRequest):
        decode(data)


def test_size_overflow_is_400():
    with pytest.raises(BadRequest, match="overflow"):
        decode(b"10000000000000001\r\n")


def test_a_declared_chunk_over_the_room_left_is_413_before_its_data():
    with pytest.raises(PayloadTooLarge):
        decode(b"3E9\r\n", max_body=1000)  # 1001
    with pytest.raises(PayloadTooLarge):
        decode(b"1F4\r\n" + b"x" * 500 + b"\r\n1F5\r\n", max_body=1000)


def test_exactly_the_limit_is_fine():
    assert decode(b"3E8\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n", max_body=1000)[1] == b""


def test_trailers_are_bounded():
    with pytest.raises(HeadersTooLarge):
        decode(b"0\r\nX-T: " + b"a" * 200 + b"\r\n\r\n", max_trailer=100)


def test_a_long_size_line_is_refused_before_its_end():
    with pytest.raises(BadRequest):
        decode(b"1;" + b"a" * 5000)
