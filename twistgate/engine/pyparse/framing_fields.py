"""
What a message's framing fields (Content-Length, Transfer-Encoding,
Connection, Upgrade) say, and llhttp's refusals of them.  llhttp checks
these byte by byte: a conflict at the colon or at the value's first byte, a
bad Content-Length digit at once.  So a field line is noted once it is
complete, and a line still arriving is refused as far as llhttp would have
(an upstream's head that stops there is refused by both parsers alike).
"""

from __future__ import annotations

from typing import Dict, List

from twistgate.engine.pyparse.grammar import TOKEN, HttpParserError, content_length

__all__ = ["KNOWN_NAMES", "SPECIAL", "SPECIAL_LENGTHS", "FramingFields", "name_kind"]

# what a field means to framing (names compared case-insensitively)
SPECIAL = {
    b"content-length": 1,
    b"transfer-encoding": 2,
    b"connection": 3,
    b"proxy-connection": 3,
    b"upgrade": 4,
}
SPECIAL_LENGTHS = frozenset(len(name) for name in SPECIAL)

#: Field names found valid -> what they mean to framing (`SPECIAL`'s kind, 0 for none): a head's usual
#: names cost a lookup each instead of a pattern and a ``lower()``.  Bounded: a flood of new names costs
#: the pattern each, never memory.
KNOWN_NAMES: Dict[bytes, int] = {}
_KNOWN_MAX = 512


def name_kind(name: bytes) -> int:
    """`SPECIAL`'s kind of a field name (0 for none), or -1 when the name is not a token."""
    kind = KNOWN_NAMES.get(name)
    if kind is None:
        if TOKEN.fullmatch(name) is None:
            return -1
        kind = SPECIAL.get(name.lower(), 0)
        if len(KNOWN_NAMES) < _KNOWN_MAX:
            KNOWN_NAMES[name] = kind
    return kind


def _codings(transfer_encoding: bytes) -> List[bytes]:
    return [coding.strip(b" \t").lower() for coding in transfer_encoding.split(b",")]


class FramingFields:
    """The part of `MessageParser` that notes framing fields (it resets these attributes as a message begins)."""

    _request: bool
    _noted: int
    _length: int
    _te: bool
    _chunked: bool
    _close: bool
    _keep: bool
    _conn_upgrade: bool
    _has_upgrade: bool

    def _note(self, block: bytes) -> None:
        """Note what the complete field lines of an incomplete head say about framing, to refuse a conflict at once."""
        lines = block.split(b"\r\n")
        for line in lines[self._noted :]:
            name, _, value = line.partition(b":")
            if len(name) in SPECIAL_LENGTHS:
                kind = SPECIAL.get(name.lower())
                if kind is not None:
                    self._special(kind, value.lstrip(b" \t"))
        self._noted = len(lines)

    def _check_arriving(self, line: bytes) -> None:
        """Refuse the framing field line still arriving as far as llhttp, reading it byte by byte, has (`_refuse`)."""
        name, colon, value = line.partition(b":")
        if colon and len(name) in SPECIAL_LENGTHS:
            kind = SPECIAL.get(name.lower())
            if kind is not None:
                value = value.strip(b" \t\r\n")
                self._refuse(kind, value)
                if kind == 1 and value:
                    content_length(value)  # a bad digit or an overflow is refused at once too

    def _refuse(self, kind: int, value: bytes) -> None:
        """
        What llhttp refuses in a framing field before its line ends: a conflict
        at the colon, or at the value's first byte; ``value`` may be the start
        of one still arriving (`_check_arriving`).
        """
        if kind == 1:
            if self._te:
                raise HttpParserError("Content-Length can't be present with Transfer-Encoding")
            if value and self._length >= 0:
                raise HttpParserError("Duplicate Content-Length")
        elif kind == 2:
            if self._length >= 0:
                raise HttpParserError("Transfer-Encoding can't be present with Content-Length")
            if value and self._request and (self._chunked or b"chunked" in _codings(value)[:-1]):
                raise HttpParserError("Invalid `Transfer-Encoding` header value")

    def _special(self, kind: int, value: bytes) -> None:
        """Note what a complete framing field (``value`` without leading whitespace) says, or refuse it."""
        if kind == 1:
            self._refuse(kind, value)
            self._length = content_length(value)
        elif kind == 2:
            self._refuse(kind, value)
            codings = _codings(value)
            if codings == [b""]:
                raise HttpParserError("Empty Transfer-Encoding")
            self._te = True
            self._chunked = codings[-1] == b"chunked"
        elif kind == 3:
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token == b"close":
                    self._close = True
                elif token == b"keep-alive":
                    self._keep = True
                elif token == b"upgrade":
                    self._conn_upgrade = True
        else:
            self._has_upgrade = True
