"""
The body filter that records a response while it streams to the client,
and stores it only when it arrived whole (RFC 9111 §3: never an incomplete
response): a body that breaks off, outgrows `max_object_size` or does not
match its Content-Length is dropped.  Data passes through unchanged.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from twistgate.policies.cache.entry import Entry


class Capture:
    __slots__ = ("entry", "limit", "expected", "chunks", "size", "_store", "_done")

    def __init__(
        self,
        entry: Entry,
        limit: int,
        expected: Optional[int],
        store: Callable[[Entry], None],
        done: Callable[[], None],
    ) -> None:
        self.entry = entry
        self.limit = limit
        self.expected = expected
        self.chunks: Optional[List[bytes]] = []
        self.size = 0
        self._store = store
        self._done = done  # releases the collapse lease, stored or not

    def write(self, data: bytes) -> bytes:
        chunks = self.chunks
        if chunks is not None:
            self.size += len(data)
            if self.size > self.limit:
                self.chunks = None  # too big: stop recording, let waiters go now
                self._done()
            else:
                chunks.append(data)
        return data

    def finish(self) -> bytes:
        chunks, self.chunks = self.chunks, None
        if chunks is not None and (self.expected is None or self.expected == self.size):
            body = b"".join(chunks)
            self.entry.body = body
            self.entry.size += len(body)
            self._store(self.entry)
        self._done()
        return b""

    def abort(self) -> None:
        self.chunks = None
        self._done()
