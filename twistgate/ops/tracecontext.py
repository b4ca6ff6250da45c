"""
W3C Trace Context (https://www.w3.org/TR/trace-context/): parsing and
formatting of ``traceparent`` and ``tracestate``.

Strict where the recommendation is: a version-00 ``traceparent`` is exactly
55 lowercase hex characters and dashes; future versions may carry more after
a dash; ``ff``, all-zero ids, several ``traceparent`` fields or any other
malformation mean "start a new trace" and the ``tracestate`` is then
discarded.  An invalid ``tracestate`` (bad key or value, a duplicate key, more
than 32 members) is discarded whole; the ``traceparent`` still holds.
"""

from __future__ import annotations

import binascii
import os
import re
import struct
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import attrs

_OWS = " \t"
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ZERO_TRACE_FIELD = b"-" + b"0" * 32 + b"-"
_ZERO_SPAN_FIELD = b"-" + b"0" * 16 + b"-"
_KEY = re.compile(
    r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})\Z"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")
MAX_MEMBERS = 32


@attrs.frozen
class TraceParent:
    trace_id: str  # 32 lowercase hex
    parent_id: str  # 16 lowercase hex
    flags: int  # bit 0: sampled

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def header(self) -> bytes:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags:02x}".encode("ascii")


_is_hex_match = re.compile(r"[0-9a-f]*\Z").match


def _is_hex(text: str) -> bool:
    return _is_hex_match(text) is not None


def parse_traceparent(values: Optional[Sequence[bytes]]) -> Optional[TraceParent]:
    """The one ``traceparent`` field's value, or None if absent, repeated or invalid."""
    if not values or len(values) != 1:
        return None
    try:
        text = values[0].decode("ascii").strip(_OWS)
    except UnicodeDecodeError:
        return None
    if len(text) < 55:
        return None
    version = text[:2]
    if not _is_hex(version) or version == "ff":
        return None
    if version == "00" and len(text) != 55:
        return None
    if len(text) > 55 and text[55] != "-":
        return None
    if text[2] != "-" or text[35] != "-" or text[52] != "-":
        return None
    trace_id, parent_id, flags = text[3:35], text[36:52], text[53:55]
    if not (_is_hex(trace_id) and _is_hex(parent_id) and _is_hex(flags)):
        return None
    if trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, parent_id, int(flags, 16))


def parse_tracestate(values: Optional[Sequence[bytes]]) -> Optional[bytes]:
    """
    Every ``tracestate`` field combined (in order), validated and with
    whitespace normalised; None when absent, empty or invalid.
    """
    if not values:
        return None
    members: List[str] = []
    keys = set()
    for value in values:
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            return None
        for member in text.split(","):
            member = member.strip(_OWS)
            if not member:
                continue  # empty list members are allowed and dropped
            key, eq, val = member.partition("=")
            if not eq or not _KEY.match(key) or not _VALUE.match(val) or key in keys:
                return None
            keys.add(key)
            members.append(f"{key}={val}")
    if not members or len(members) > MAX_MEMBERS:
        return None
    return ",".join(members).encode("ascii")


class HexPool:
    """
    Random lowercase hex digits from `os.urandom`, fetched 4 KiB at a time:
    ids cost a slice instead of a system call each (a request takes two
    draws: its request id, and a trace id with its span id).
    """

    __slots__ = ("_digits", "_at")

    def __init__(self) -> None:
        self._digits = ""
        self._at = 0

    def take(self, nbytes: int) -> str:
        """``nbytes`` random bytes as ``2 * nbytes`` hex digits."""
        width = nbytes + nbytes
        at = self._at
        if at + width > len(self._digits):
            self._digits = os.urandom(max(4096, nbytes)).hex()
            at = 0
        self._at = at + width
        return self._digits[at : at + width]


#: The process's pool of random digits (ids only: nothing here is a secret).
HEX = HexPool()


def random_hex(nbytes: int, source: Optional[Callable[[int], bytes]] = None) -> str:
    """A random non-zero id of ``nbytes`` bytes, as lowercase hex (from `HEX`, or `source` when given)."""
    while True:
        value = HEX.take(nbytes) if source is None else source(nbytes).hex()
        if value.strip("0"):
            return value


def new_trace_ids() -> Tuple[str, str]:
    """
    A new trace's id and its first span's id (both random and non-zero), in
    one draw from `HEX`: every request without a ``traceparent`` needs both.
    """
    while True:
        digits = HEX.take(24)
        trace_id, span_id = digits[:32], digits[32:]
        if trace_id != _ZERO_TRACE and span_id != _ZERO_SPAN:
            return trace_id, span_id


def new_traceparents(count: int) -> List[bytes]:
    """
    ``count`` version-00 ``traceparent`` values of new sampled traces
    (``00-<trace id>-<span id>-01``), random and non-zero, from one draw
    (the trace ids from its first ``16 * count`` bytes, the span ids from
    the rest), with no per-trace work in Python: see `_fill`.
    """
    while True:
        values = _fill(os.urandom(24 * count), count)
        # Between dashes, only a trace id has 32 digits and only a span id 16: all-zero ids show as such.
        if _ZERO_TRACE_FIELD not in values and _ZERO_SPAN_FIELD not in values:
            return list(_unpacker(count).unpack(values))


_BLANK = b"00-" + b"0" * 32 + b"-" + b"0" * 16 + b"-01 "  # one value and a separator: 56 bytes, 7 words


def _fill(draw: bytes, count: int) -> bytearray:
    """
    ``count`` blank values, their ids copied in from the draw's hex digits
    as 8-byte words (a trace id is 4, a span id 2; a value and its
    separator 7): six strided copies in C for the whole batch, where
    slicing the digits into ids and formatting them took three objects and
    a format per trace.
    """
    size = len(_BLANK) * count
    values = bytearray(_BLANK * count)
    trace_ids = memoryview(binascii.hexlify(draw[: 16 * count])).cast("Q")
    span_ids = memoryview(binascii.hexlify(draw[16 * count :])).cast("Q")
    # From the first id's first digit to the last id's last: whole words.
    into_trace = memoryview(values)[3 : size - 21].cast("Q")
    into_span = memoryview(values)[36 : size - 4].cast("Q")
    for word in range(4):
        into_trace[word::7] = trace_ids[word::4]
    for word in range(2):
        into_span[word::7] = span_ids[word::2]
    return values


_UNPACKERS: Dict[int, struct.Struct] = {}


def _unpacker(count: int) -> struct.Struct:
    """Cuts ``count`` values (55 bytes, each followed by its separator) out of `_fill`'s buffer."""
    unpacker = _UNPACKERS.get(count)
    if unpacker is None:
        unpacker = _UNPACKERS[count] = struct.Struct("55sx" * count)
    return unpacker


def ratio_sampled(trace_id: str, ratio: float) -> bool:
    """Deterministic by trace id (like OpenTelemetry's TraceIdRatioBased): same id, same decision."""
    if ratio >= 1.0:
        return True
    if ratio <= 0.0:
        return False
    return int(trace_id[16:], 16) < int(ratio * (1 << 64))
