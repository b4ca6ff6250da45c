"""The passive frame reader: boundaries, message sizes and close codes, across any split of the bytes."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twistgate.websocket.frames import ABNORMAL, NO_STATUS, FrameScanner, close_frame, close_label


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    head = bytes(((0x80 if fin else 0) | opcode,))
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes((bit | n,))
    elif n < 65536:
        head += bytes((bit | 126,)) + struct.pack("!H", n)
    else:
        head += bytes((bit | 127,)) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


STREAM = (
    frame(0x1, b"hello")
    + frame(0x2, b"x" * 300, fin=False)
    + frame(0x9, b"ping")  # a control frame inside a fragmented message
    + frame(0x0, b"y" * 70000)
    + frame(0x8, struct.pack("!H", 4001) + b"bye")
)


def feed_in_pieces(scanner: FrameScanner, data: bytes, cuts: list) -> bytes:
    out = b""
    last = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += scanner.feed(data[last:cut])
        last = cut
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_split_forwards_every_byte_and_finds_the_close_code(cuts):
    """Without a limit every byte is forwarded at once, in order, whatever the reads."""
    scanner = FrameScanner()
    assert feed_in_pieces(scanner, STREAM, cuts) == STREAM
    assert scanner.close_code == 4001
    assert scanner.at_boundary


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_with_a_limit_an_oversized_message_is_cut_at_its_first_frame(cuts):
    """The fragmented message (300 + 70000 bytes) is over 64 KiB: only the frame before it is forwarded."""
    scanner = FrameScanner(limit=65536)
    out = feed_in_pieces(scanner, STREAM, cuts)
    assert scanner.too_big
    # The message's first fragment passed (300 bytes is under the limit) with the ping; its second did not.
    assert out == STREAM[: len(STREAM) - len(frame(0x0, b"y" * 70000)) - len(frame(0x8, b"\x0f\xa1bye"))]


def test_a_message_at_the_limit_passes():
    scanner = FrameScanner(limit=5)
    data = frame(0x1, b"hello") + frame(0x1, b"hel", fin=False) + frame(0x0, b"lo")
    assert scanner.feed(data) == data and not scanner.too_big
    assert scanner.feed(frame(0x1, b"hello!")) == b"" and scanner.too_big


def test_close_codes_unmasked_empty_and_one_byte():
    server = FrameScanner()
    server.feed(frame(0x8, struct.pack("!H", 1000), masked=False))
    assert server.close_code == 1000
    empty = FrameScanner()
    empty.feed(frame(0x8, b""))
    assert empty.close_code == NO_STATUS
    odd = FrameScanner()
    odd.feed(frame(0x8, b"\x03"))
    assert odd.close_code == -1


def test_mid_frame_is_no_boundary():
    scanner = FrameScanner()
    data = frame(0x2, b"z" * 1000)
    scanner.feed(data[:500])
    assert not scanner.at_boundary
    scanner.feed(data[500:])
    assert scanner.at_boundary


@pytest.mark.parametrize("masked", [False, True])
def test_the_gateways_close_frame_reads_back(masked):
    data = close_frame(1001, b"going away", masked=masked)
    scanner = FrameScanner()
    assert scanner.feed(data) == data
    assert scanner.close_code == 1001
    assert (data[1] & 0x80 == 0x80) is masked


def test_close_labels_are_bounded():
    assert [close_label(c) for c in (None, 1000, 1006, 1015, 1016, 3001, 4999, 5000, -1, ABNORMAL)] == [
        "none", "1000", "1006", "1015", "invalid", "3xxx", "4xxx", "invalid", "invalid", "1006",
    ]
