"""The limits one HTTP/1.1 listener enforces on its clients."""

from __future__ import annotations

import attrs

__all__ = ["ServerLimits"]

KiB = 1024
MiB = 1024 * KiB


@attrs.frozen(kw_only=True)
class ServerLimits:
    """
    Edge limits of the HTTP/1.1 server, each with the answer it leads to.

    :ivar max_request_line: bytes in the request line (414).
    :ivar max_header_bytes: bytes in the whole request head, request line
        included (431).
    :ivar max_headers: header fields in one request (431).
    :ivar max_request_body: bytes of one request body (413), checked on the
        declared length and on every chunk size before it is read.
    :ivar header_timeout: seconds from a request head's first byte to its end
        (408, then close).
    :ivar body_timeout: seconds without a request-body byte while the engine
        is reading one (408, then close).
    :ivar idle_timeout: seconds a keep-alive connection may wait for its next
        request; then it is closed without an answer.
    """

    max_request_line: int = 8 * KiB
    max_header_bytes: int = 64 * KiB
    max_headers: int = 100
    max_request_body: int = 10 * MiB
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    idle_timeout: float = 300.0
