"""pyparse.grammar: a status line seen before answers from its cache exactly as the pattern did."""

from __future__ import annotations

import pytest

from twistgate.engine.pyparse import grammar
from twistgate.engine.pyparse.grammar import HttpParserError, content_length, status_line


def test_a_status_line_seen_again_gives_the_same_answer() -> None:
    line = b"HTTP/1.1 203 Fine by me"
    first = status_line(line)
    assert grammar._STATUS_LINES[line] == first == (1, 1, 203, b"Fine by me")
    assert status_line(line) == first
    assert status_line(b"HTTP/1.0 204") == (1, 0, 204, None)


def test_a_refused_status_line_is_never_remembered() -> None:
    with pytest.raises(HttpParserError):
        status_line(b"HTTP/1.1 20x OK")
    assert b"HTTP/1.1 20x OK" not in grammar._STATUS_LINES


def test_status_lines_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(grammar, "_STATUS_LINES", {})
    for code in range(100, 400):
        assert status_line(b"HTTP/1.1 %d X" % code)[2] == code
    assert len(grammar._STATUS_LINES) == 256


@pytest.mark.parametrize(
    "value, length",
    [(b"0", 0), (b"100", 100), (b"0000000000000000003", 3), (b"18446744073709551615", 2**64 - 1), (b"7 \t", 7)],
)
def test_content_length_values(value: bytes, length: int) -> None:
    assert content_length(value) == length


@pytest.mark.parametrize("value", [b"18446744073709551616", b"1a", b"", b"+1", b"\xd9\xa1"])
def test_content_length_refusals(value: bytes) -> None:
    with pytest.raises(HttpParserError):
        content_length(value)
