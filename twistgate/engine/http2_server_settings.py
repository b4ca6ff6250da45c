"""
The HTTP/2 server's numbers: what it announces in SETTINGS, how wide it
opens its receive windows, how much answer it queues per stream, and the
budgets of the flood guards (`twistgate.engine.http2_floods`); and
`H2Settings`, the limits a listener's `LimitsConfig` gives each connection.
"""

from __future__ import annotations

from twistgate.config.model import LimitsConfig

__all__ = [
    "CONNECTION_WINDOW",
    "CONTROL_BURST",
    "CONTROL_RATE",
    "H2Settings",
    "MAX_CONCURRENT_STREAMS",
    "MAX_CONTINUATIONS",
    "RESET_BURST",
    "RESET_RATE",
    "STREAM_HIGH_WATER",
    "STREAM_WINDOW",
]

#: Concurrent streams a client may open (SETTINGS_MAX_CONCURRENT_STREAMS); nginx 128, Envoy 100.
MAX_CONCURRENT_STREAMS = 128
#: Each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE).
STREAM_WINDOW = 256 * 1024
#: The connection's receive window, opened right after the preface.
CONNECTION_WINDOW = 16 * STREAM_WINDOW
#: Response bytes queued on one stream (window closed) before its producer is paused.
STREAM_HIGH_WATER = 128 * 1024
#: A rapid-reset client: streams it cancels before their answer, as a token bucket.
RESET_BURST, RESET_RATE = 200, 50.0
#: Frames that carry no request (PING, SETTINGS, empty DATA...), as a token bucket.
CONTROL_BURST, CONTROL_RATE = 1000, 500.0
#: A header block may not take more CONTINUATION frames than this.
MAX_CONTINUATIONS = 32


class H2Settings:
    """The engine's limits, from the gateway's `LimitsConfig`."""

    __slots__ = ("max_concurrent_streams", "max_header_bytes", "max_headers", "max_body", "idle_timeout")

    def __init__(self, limits: LimitsConfig, max_concurrent_streams: int = MAX_CONCURRENT_STREAMS) -> None:
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_bytes = limits.max_header_bytes
        self.max_headers = limits.max_headers
        self.max_body = limits.max_request_body
        self.idle_timeout = limits.idle_timeout
